"""``Result`` (one trial's outcome) and ``ResultGrid`` (every trial's), as ``fit()`` returns them.

These are Ray Tune's ``ray.tune.Result`` and ``ray.tune.ResultGrid``, read from atune's
trial directories (``result.json``, ``progress.csv``, ``checkpoint_*``, ``error.txt``).
Nothing here unpickles anything: an error read back from disk is a
:class:`~atune.errors.TrialError` that keeps the original type name, message and
traceback.

Histories (``Result.metrics_dataframe``, the non-``"last"`` scopes of
:meth:`ResultGrid.get_best_result`, :meth:`ResultGrid.get_dataframe`) are read lazily from
the trial directory on first use and then cached; a grid whose results are only looked at
through ``metrics`` never touches the disk.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from atune._flatten import flatten_dict
from atune.errors import ConfigError, StorageError, TrialError
from atune.storage._layout import ERROR_FILE, parse_checkpoint_name, parse_error_records
from atune.storage._trial_files import read_result_rows
from atune.trainable._checkpoint import Checkpoint

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Result", "ResultGrid"]

_MODES = ("min", "max")
_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")
_STATUSES = frozenset({"TERMINATED", "ERROR", "PENDING", "RUNNING", "PAUSED"})

# Keys atune (like Ray Tune) fills in on every result; left out of ``repr(result)``.
_AUTO_KEYS = frozenset(
    {
        "config",
        "date",
        "done",
        "experiment_tag",
        "hostname",
        "iterations_since_restore",
        "node_ip",
        "pid",
        "should_checkpoint",
        "checkpoint_dir_name",
        "time_since_restore",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "timesteps_since_restore",
        "timesteps_total",
        "episodes_total",
        "training_iteration",
        "trial_id",
    }
)


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real)


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", value=mode)


class Result:
    """The outcome of one trial: its last metrics, latest checkpoint, error and directory.

    Attributes:
        metrics: The trial's last result, unflattened, including ``config``; ``None`` or
            ``{}`` when it never reported.
        checkpoint: The latest checkpoint the trial kept, or None.
        error: ``None`` for a trial that did not fail; otherwise the exception (the
            user's own type when it could be rebuilt, else a
            :class:`~atune.errors.TrialError`).
        path: The trial directory.
        best_checkpoints: ``(checkpoint, metrics)`` for every checkpoint still kept, as
            Ray Tune orders them: by ``checkpoint_score_attribute``, worst first and best
            last (oldest first without one); None when unknown.
    """

    def __init__(
        self,
        metrics: dict[str, Any] | None,
        checkpoint: Checkpoint | None,
        error: BaseException | None,
        path: str | os.PathLike[str],
        metrics_dataframe: pd.DataFrame | None = None,
        best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] | None = None,
    ) -> None:
        """Creates a result; ``metrics_dataframe`` is read from ``path`` when not given."""
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.error = error
        self.path = os.fspath(path)
        self.best_checkpoints = best_checkpoints
        self._metrics_dataframe = metrics_dataframe
        self._history: list[dict[str, Any]] | None = None
        self._dataframe_loaded = metrics_dataframe is not None
        # How many results the journal knew of when this result was built: rows the trial
        # files gained since (a trial still running in another process) are left out.
        self._row_limit: int | None = None

    @property
    def config(self) -> dict[str, Any] | None:
        """The trial's config (``metrics["config"]``); None if it never reported."""
        if not self.metrics:
            return None
        config = self.metrics.get("config")
        return config if isinstance(config, dict) else None

    @property
    def filesystem(self) -> None:
        """Always None: atune trial directories are on the local (or a mounted) filesystem."""
        return None

    @property
    def metrics_dataframe(self) -> pd.DataFrame | None:
        """Every result the trial reported, one row each, columns flattened with ``/``.

        Read on first access from ``<path>/result.json`` (or ``progress.csv``, which has
        no ``config`` columns) and cached. None when the trial has neither file or wrote
        no row. A result of a grid holds no row newer than its ``metrics``: rows a trial
        still running elsewhere wrote after the grid was built are left out.
        """
        if not self._dataframe_loaded:
            import pandas as pd

            rows = self._flat_history()
            self._metrics_dataframe = pd.DataFrame(rows) if rows else None
            self._dataframe_loaded = True
        return self._metrics_dataframe

    def _flat_history(self) -> list[dict[str, Any]]:
        """Every reported result, flattened with ``/``, in report order; cached.

        Read from the trial directory; when neither ``result.json`` nor ``progress.csv``
        exists but a ``metrics_dataframe`` was given, its rows are used, with NaN cells
        taken as "not reported".

        Returns:
            The rows (empty when there are none). Do not mutate them.
        """
        if self._history is None:
            rows = read_result_rows(Path(self.path))
            if rows is not None and self._row_limit is not None:
                rows = rows[: self._row_limit]
            if rows is not None:
                self._history = [flatten_dict(row, delimiter="/") for row in rows]
            elif self._metrics_dataframe is not None:
                self._history = [
                    {str(k): v for k, v in record.items() if not _is_nan(v)}
                    for record in self._metrics_dataframe.to_dict("records")
                ]
            else:
                self._history = []
        return self._history

    def _metric_values(self, metric: str) -> list[float]:
        """The numeric values ``metric`` (a flattened key) took, in report order."""
        values = [row[metric] for row in self._flat_history() if _is_number(row.get(metric))]
        if not values and self.metrics:
            last = flatten_dict(self.metrics, delimiter="/").get(metric)
            if _is_number(last):
                values = [last]
        return values

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint:
        """The kept checkpoint whose metrics are best by ``metric`` and ``mode``.

        Args:
            metric: A metric name; nested metrics as ``"a/b/c"``.
            mode: ``"min"`` or ``"max"``.

        Returns:
            The first best checkpoint in :attr:`best_checkpoints` order.

        Raises:
            ValueError: ``mode`` is not ``"min"`` or ``"max"`` (a
                :class:`~atune.errors.ConfigError`).
            RuntimeError: There are no checkpoints, or none has ``metric``.
        """
        _check_mode(mode)
        if not self.best_checkpoints:
            raise RuntimeError(f"no checkpoint exists for the trial in {self.path}")
        scored = []
        for checkpoint, metrics in self.best_checkpoints:
            value = flatten_dict(metrics, delimiter="/").get(metric)
            if value is not None:
                scored.append((value, checkpoint))
        if not scored:
            known = sorted(flatten_dict(self.best_checkpoints[-1][1], delimiter="/"))
            raise RuntimeError(
                f"no checkpoint of the trial in {self.path} has metric {metric!r}; "
                f"its metrics are {known}"
            )
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[0])[1]

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Result:
        """Rebuilds a trial's result from its directory.

        ``metrics`` is the last row of ``result.json`` (or ``progress.csv``; ``{}`` when
        the trial wrote neither), ``best_checkpoints`` lists every ``checkpoint_<N>``
        directory by ``N`` with the result whose ``checkpoint_dir_name`` names it (``{}``
        if none does), ``checkpoint`` is the last of them, and ``error`` is read from
        ``error.txt`` (the last failure in it) as a :class:`~atune.errors.TrialError`.

        Args:
            path: The trial directory.

        Returns:
            The rebuilt result.

        Raises:
            StorageError: ``path`` is not a directory, or a result file cannot be read.
        """
        trial_dir = Path(path)
        if not trial_dir.is_dir():
            raise StorageError(f"trial directory {os.fspath(path)!r} does not exist")
        rows = read_result_rows(trial_dir) or []
        metrics: dict[str, Any] = rows[-1] if rows else {}
        by_name: dict[str, dict[str, Any]] = {}
        for row in rows:
            name = row.get("checkpoint_dir_name")
            if isinstance(name, str):
                by_name[name] = row
        numbered = []
        for child in trial_dir.iterdir():
            index = parse_checkpoint_name(child.name)
            if index is not None and child.is_dir():
                numbered.append((index, child))
        best = [
            (Checkpoint.from_directory(child), by_name.get(child.name, {}))
            for _, child in sorted(numbered)
        ]
        trial_id = metrics.get("trial_id")
        error = _read_error(trial_dir / ERROR_FILE, trial_id if isinstance(trial_id, str) else "")
        result = cls(
            metrics=metrics,
            checkpoint=best[-1][0] if best else None,
            error=error,
            path=trial_dir,
            best_checkpoints=best,
        )
        result._history = [flatten_dict(row, delimiter="/") for row in rows]
        return result

    def __repr__(self) -> str:
        """A short form: user metrics (auto-filled keys left out), path, checkpoint, error."""
        shown = {k: v for k, v in (self.metrics or {}).items() if k not in _AUTO_KEYS}
        parts = [f"metrics={shown!r}", f"path={self.path!r}"]
        if self.checkpoint is not None:
            parts.append(f"checkpoint={self.checkpoint!r}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        return "Result(\n  " + ",\n  ".join(parts) + "\n)"


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _read_error(error_file: Path, trial_id: str) -> TrialError | None:
    """The last failure recorded in ``error.txt`` as a TrialError; None without the file."""
    try:
        text = error_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {error_file}: {exc}") from exc
    records = parse_error_records(text)
    if not records:
        return TrialError(
            f"trial {trial_id} failed (empty {error_file.name})",
            trial_id=trial_id,
            error_type="",
            error_message="",
            traceback="",
        )
    last = records[-1]
    return TrialError(
        last.last_line,
        trial_id=trial_id,
        error_type=last.error_type,
        error_message=last.error_message,
        traceback=last.traceback,
    )


def _better(candidate: float, best: float, mode: str) -> bool:
    return candidate > best if mode == "max" else candidate < best


def _score(result: Result, metric: str, mode: str, scope: str, finite_only: bool) -> float | None:
    """One trial's score for ``get_best_result``; None when it has no value."""
    if scope == "last":
        if result.metrics:
            last = flatten_dict(result.metrics, delimiter="/").get(metric)
            if _is_number(last):
                return float(last)
        values = result._metric_values(metric)
        return float(values[-1]) if values else None
    values = [float(v) for v in result._metric_values(metric)]
    if scope == "all":
        if finite_only:
            values = [v for v in values if math.isfinite(v)]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)
    window = values if scope == "avg" else values[-(5 if scope == "last-5-avg" else 10) :]
    return sum(window) / len(window) if window else None


class ResultGrid:
    """The results of every trial of an experiment, in trial-creation order.

    Each trial has a status: ``"TERMINATED"`` (finished normally), ``"ERROR"`` (failed for
    good), or, when ``fit()`` was interrupted, ``"PENDING"``, ``"RUNNING"`` or
    ``"PAUSED"``. Without ``statuses`` a result with an error is ``"ERROR"`` and any other
    is ``"TERMINATED"``. Trials still unfinished count as neither in :attr:`num_errors`
    and :attr:`num_terminated`.
    """

    def __init__(
        self,
        results: Sequence[Result],
        *,
        experiment_path: str | os.PathLike[str],
        metric: str | None = None,
        mode: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> None:
        """Creates a grid.

        Args:
            results: One result per trial, in creation order.
            experiment_path: The experiment directory.
            metric: The default metric of :meth:`get_best_result` (``TuneConfig.metric``).
            mode: The default mode of :meth:`get_best_result` (``TuneConfig.mode``).
            statuses: One status per result (see the class docstring), or None.

        Raises:
            ValueError: ``statuses`` has the wrong length or an unknown status (a
                :class:`~atune.errors.ConfigError`).
        """
        self._results = list(results)
        self._experiment_path = os.fspath(experiment_path)
        self._metric = metric
        self._mode = mode
        if statuses is None:
            self._statuses = [
                "ERROR" if result.error is not None else "TERMINATED" for result in results
            ]
        else:
            self._statuses = list(statuses)
            if len(self._statuses) != len(self._results):
                raise ConfigError(
                    f"statuses has {len(self._statuses)} entries for {len(self._results)} results",
                    value=statuses,
                )
            for status in self._statuses:
                if status not in _STATUSES:
                    raise ConfigError(
                        f"unknown trial status {status!r}; expected one of {sorted(_STATUSES)}",
                        value=status,
                    )

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], storage_filesystem: Any = None) -> ResultGrid:
        """The results of the experiment in ``path``, read from its journal.

        Same as :func:`atune.load_results`: works on finished, interrupted and still
        running experiments (a consistent snapshot), needs no trainable, takes no lock
        and writes nothing. ``path`` may be a remote storage URI (or a path on
        ``storage_filesystem``).

        Raises:
            StorageError: ``path`` is not an atune experiment.
            JournalCorruptError: the journal is damaged before its last line.
        """
        from atune._load import load_results

        return load_results(path, storage_filesystem)

    @property
    def experiment_path(self) -> str:
        """The experiment directory."""
        return self._experiment_path

    @property
    def filesystem(self) -> None:
        """Always None: atune experiments are on the local (or a mounted) filesystem."""
        return None

    @property
    def metric(self) -> str | None:
        """The default metric of :meth:`get_best_result` (``TuneConfig.metric``), or None."""
        return self._metric

    @property
    def mode(self) -> str | None:
        """The default mode of :meth:`get_best_result` (``TuneConfig.mode``), or None."""
        return self._mode

    @property
    def statuses(self) -> list[str]:
        """Each trial's status (see the class docstring), in creation order; a copy."""
        return list(self._statuses)

    @property
    def errors(self) -> list[BaseException]:
        """The errors of the trials with status ``"ERROR"``, in creation order."""
        return [
            result.error
            for result, status in zip(self._results, self._statuses, strict=True)
            if status == "ERROR" and result.error is not None
        ]

    @property
    def num_errors(self) -> int:
        """The number of trials with status ``"ERROR"``."""
        return self._statuses.count("ERROR")

    @property
    def num_terminated(self) -> int:
        """The number of trials with status ``"TERMINATED"`` (finished without error)."""
        return self._statuses.count("TERMINATED")

    def __len__(self) -> int:
        """The number of trials."""
        return len(self._results)

    def __getitem__(self, index: int) -> Result:
        """The result of the ``index``-th trial created."""
        return self._results[index]

    def __iter__(self) -> Iterator[Result]:
        """The results in trial-creation order."""
        return iter(self._results)

    def get_pareto_front(self, metrics: Sequence[str], modes: Sequence[str]) -> list[Result]:
        """The results no other result beats in every metric (multi-objective analysis).

        Optuna's ``study.best_trials`` rule: a result is left out when another is at
        least as good in every metric (by ``modes``) and better in one. Results lacking a
        metric or holding NaN are left out; ties are all kept; trial order is kept.

        Args:
            metrics: The metrics, e.g. ``["loss", "latency"]`` (nested as ``"a/b"``).
            modes: ``"min"``/``"max"`` for each metric.

        Raises:
            ValueError: empty or mismatched lists, or a bad mode (a
                :class:`~atune.errors.ConfigError` naming it).
        """
        from atune._pareto import pareto_front

        return pareto_front(self._results, metrics, modes)

    def get_best_result(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """The result of the best trial.

        With exactly one trial, that trial's result is returned whatever the arguments.
        Otherwise each trial that has reported ``metric`` gets a score by ``scope``:

        * ``"last"``: the last value (from :attr:`Result.metrics`);
        * ``"avg"``, ``"last-5-avg"``, ``"last-10-avg"``: the mean of all, the last 5 or
          the last 10 values the trial reported;
        * ``"all"``: the trial's best value by ``mode`` (its best finite value when
          ``filter_nan_and_inf``).

        Scopes other than ``"last"`` read each trial's history from its directory. A trial
        whose score is NaN or infinite is skipped when ``filter_nan_and_inf``; without it,
        infinities compare as usual and a NaN score is picked only when every score is NaN.
        Errored trials count if they reported the metric; errored trials that never
        reported are skipped. Ties go to the trial created first.

        Args:
            metric: The metric; nested metrics as ``"a/b/c"``. Defaults to the grid's.
            mode: ``"min"`` or ``"max"``. Defaults to the grid's.
            scope: One of ``"last"``, ``"avg"``, ``"last-5-avg"``, ``"last-10-avg"``,
                ``"all"``.
            filter_nan_and_inf: Skip trials whose score is NaN or infinite.

        Returns:
            The best trial's result.

        Raises:
            ValueError: No metric or mode was given and the grid has none, or ``mode`` or
                ``scope`` is not one of the allowed values (a
                :class:`~atune.errors.ConfigError` naming it).
            RuntimeError: No trial qualifies.
        """
        if len(self._results) == 1:
            return self._results[0]
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric:
            raise ConfigError(
                "no metric given: pass metric= to get_best_result() or set metric in the "
                "TuneConfig of the Tuner"
            )
        if not mode:
            raise ConfigError(
                "no mode given: pass mode= to get_best_result() or set mode in the "
                "TuneConfig of the Tuner"
            )
        _check_mode(mode)
        if scope not in _SCOPES:
            raise ConfigError(f"scope must be one of {list(_SCOPES)}, got {scope!r}", value=scope)
        best: Result | None = None
        best_score = 0.0
        for result in self._results:
            if not result.metrics and result.error is not None:
                continue
            score = _score(result, metric, mode, scope, filter_nan_and_inf)
            if score is None or (filter_nan_and_inf and not math.isfinite(score)):
                continue
            if (
                best is None
                or _better(score, best_score, mode)
                or (math.isnan(best_score) and not math.isnan(score))
            ):
                best, best_score = result, score
        if best is None:
            message = (
                f"No best trial found for the given metric: {metric}. This means that no "
                "trial has reported this metric"
            )
            if filter_nan_and_inf:
                message += (
                    ", or all values reported for this metric are NaN or infinite. To not "
                    "ignore NaN and infinite values, pass filter_nan_and_inf=False."
                )
            else:
                message += "."
            raise RuntimeError(message)
        return best

    def get_dataframe(
        self, filter_metric: str | None = None, filter_mode: str | None = None
    ) -> pd.DataFrame:
        """One row per trial, columns flattened with ``/``, plus ``logdir`` (the trial path).

        The row is the trial's last result or, with ``filter_metric`` and ``filter_mode``,
        the first of its results with the best value of that metric (its last result if
        it never reported a non-NaN value of it). Config values appear as ``config/...``
        columns. Trials that never reported are left out.

        Args:
            filter_metric: The metric to pick each trial's row by (``"a/b"`` for nested).
            filter_mode: ``"min"`` or ``"max"``; needs ``filter_metric``.

        Returns:
            A DataFrame with one row per trial that reported, in creation order.

        Raises:
            ValueError: ``filter_mode`` is not ``"min"``, ``"max"`` or None, or is given
                without ``filter_metric`` (a :class:`~atune.errors.ConfigError`).
        """
        import pandas as pd

        if filter_mode is not None:
            _check_mode(filter_mode)
            if not filter_metric:
                raise ConfigError(
                    f"filter_mode={filter_mode!r} needs filter_metric", value=filter_mode
                )
        rows = []
        for result in self._results:
            history = result._flat_history()
            if history:
                row = dict(_pick_row(history, filter_metric, filter_mode))
            elif result.metrics:
                row = flatten_dict(result.metrics, delimiter="/")
            else:
                continue
            config = result.config
            if config:
                row.update(flatten_dict({"config": config}, delimiter="/"))
            row["logdir"] = result.path
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        """Every result's short form."""
        inner = ",\n".join("  " + repr(result).replace("\n", "\n  ") for result in self)
        return f"ResultGrid<[\n{inner}\n]>"


def _pick_row(
    history: list[dict[str, Any]], metric: str | None, mode: str | None
) -> dict[str, Any]:
    if metric is None or mode is None:
        return history[-1]
    best: dict[str, Any] | None = None
    best_value = 0.0
    for row in history:
        value = row.get(metric)
        if not _is_number(value) or _is_nan(float(value)):
            continue
        if best is None or _better(float(value), best_value, mode):
            best, best_value = row, float(value)
    return best if best is not None else history[-1]
