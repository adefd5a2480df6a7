"""The ``Searcher`` extension point and ``SearchGenerator``, which runs one for the controller.

:class:`Searcher` is Ray Tune's interface for optimizers (``ray.tune.search.Searcher``):
subclass it, implement :meth:`Searcher.suggest` and :meth:`Searcher.on_trial_complete`,
and pass an instance as ``TuneConfig(search_alg=...)``. The Tuner wraps it in a
:class:`SearchGenerator`, the :class:`~atune.search.SearchAlgorithm` the controller
drives.

Searcher state is saved as JSON, never pickled: :meth:`Searcher.save` writes
:meth:`Searcher.get_state`, which must therefore return JSON-able data.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

from atune.errors import ConfigError
from atune.search._algorithm import FINISHED, SearchAlgorithm, Suggestion
from atune.search._variant import (
    copy_structure,
    format_vars,
    has_unresolved_values,
    nested_dict_paths,
    validate_param_space,
)

__all__ = ["SearchGenerator", "Searcher"]


class Searcher(ABC):
    """Base class of search algorithms that suggest one config per trial.

    Subclasses that define ``__init__`` must call ``super().__init__(metric, mode)``.
    The controller calls, from one task: ``set_search_properties`` once, then
    ``suggest(trial_id)`` for each new trial, ``on_trial_result`` for intermediate results
    and ``on_trial_complete`` once per suggested trial. Results are flattened (nested keys
    joined with ``/``) and may lack the metric or hold NaN; a searcher must cope.

    Args:
        metric: The result key to optimise, or a list of keys for multi-objective searchers.
        mode: ``"min"``/``"max"``, or for a list of metrics a list of
            ``"min"``/``"max"``/``"obs"`` of the same length.

    Raises:
        ConfigError: ``mode`` is not one of those, or does not match ``metric``.
    """

    FINISHED: ClassVar[Literal["FINISHED"]] = FINISHED
    """What ``suggest`` returns when the search is over (the same object as ``atune.search``'s)."""

    CKPT_FILE_TMPL: ClassVar[str] = "searcher-state-{}.json"

    def __init__(self, metric: str | list[str] | None = None, mode: str | list[str] | None = None):
        self._metric = metric
        self._mode = mode
        if not metric or not mode:
            return
        if isinstance(mode, str):
            if mode not in ("min", "max"):
                raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", value=mode)
            if not isinstance(metric, str):
                raise ConfigError(
                    f"metric and mode must both be str or both lists, got metric={metric!r}, "
                    f"mode={mode!r}",
                    value=metric,
                )
        elif isinstance(mode, list):
            if not isinstance(metric, list) or len(metric) != len(mode):
                raise ConfigError(
                    f"a list mode needs a list metric of the same length, got metric={metric!r}, "
                    f"mode={mode!r}",
                    value=mode,
                )
            bad = [m for m in mode if m not in ("min", "max", "obs")]
            if bad:
                raise ConfigError(
                    f"every mode must be 'min', 'max' or 'obs', got {bad[0]!r}", value=bad[0]
                )
        else:
            raise ConfigError(f"mode must be a str or a list, got {mode!r}", value=mode)

    @property
    def metric(self) -> Any:
        """The result key (or keys) being optimised, or None."""
        return self._metric

    @property
    def mode(self) -> Any:
        """``"min"``, ``"max"`` (or a list of them), or None."""
        return self._mode

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Receive the Tuner's metric, mode and ``param_space``.

        Override to build the search space from ``config``. Return False when the searcher
        already has a space of its own; then ``config`` may only hold constants.

        Args:
            metric: ``TuneConfig.metric``.
            mode: ``TuneConfig.mode``.
            config: The Tuner's ``param_space``.
            **spec: Further experiment settings (``num_samples``), for forward compatibility.

        Returns:
            Whether the properties were taken. The default takes nothing: False.
        """
        return False

    @abstractmethod
    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        """Return the config for trial ``trial_id``, None (ask again later) or FINISHED.

        The returned dict is deep-merged over the constants of ``param_space``.
        """

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:  # noqa: B027
        """Hear an intermediate (flattened) result; not called after a STOP decision."""

    @abstractmethod
    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Hear that a trial ended: its flattened last result, or ``error=True``.

        ``result`` is None for trials removed before they reported (or that errored).
        """

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tell the searcher about a point evaluated elsewhere (warm start). Optional.

        Raises:
            NotImplementedError: The default; the searcher cannot take outside points.
        """
        raise NotImplementedError

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str) -> None:
        """Feed finished trials to :meth:`add_evaluated_point`.

        Args:
            trials_or_analysis: A trial, a list of trials, or an object with ``.trials``;
                a trial is anything with ``config``, ``last_result`` and ``status``.
            metric: The result key holding each trial's score.

        Raises:
            NotImplementedError: The searcher does not implement ``add_evaluated_point``.
        """
        if type(self).add_evaluated_point is Searcher.add_evaluated_point:
            raise NotImplementedError
        if isinstance(trials_or_analysis, (list, tuple)):
            trials = list(trials_or_analysis)
        elif hasattr(trials_or_analysis, "trials"):
            trials = list(trials_or_analysis.trials)
        else:
            trials = [trials_or_analysis]
        for trial in trials:
            last = trial.last_result or {}
            if metric not in last:
                continue
            status = str(trial.status)
            self.add_evaluated_point(
                parameters=trial.config,
                value=last[metric],
                error=status == "ERROR",
                pruned=status == "TERMINATED" and not last.get("done", False),
            )

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Limit concurrency internally; return True if done (``ConcurrencyLimiter`` then
        stops limiting). The default does nothing and returns False."""
        return False

    def get_state(self) -> dict[str, Any]:
        """Return the searcher's state as JSON-able data.

        Raises:
            NotImplementedError: The default; the searcher has no saveable state.
        """
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned.

        Raises:
            NotImplementedError: The default.
        """
        raise NotImplementedError

    def save(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Write :meth:`get_state` to ``checkpoint_path`` as JSON, atomically.

        Blocking file I/O: async callers should run it in a thread.

        Raises:
            NotImplementedError: ``get_state`` is not implemented.
            TypeError: The state is not JSON-able.
        """
        _write_json(Path(checkpoint_path), self.get_state())

    def restore(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Read a file written by :meth:`save` and pass it to :meth:`set_state`."""
        self.set_state(json.loads(Path(checkpoint_path).read_text(encoding="utf-8")))

    def save_to_dir(
        self, checkpoint_dir: str | os.PathLike[str], session_str: str = "default"
    ) -> None:
        """Save to ``<checkpoint_dir>/searcher-state-<session_str>.json``; skip if unsupported."""
        with contextlib.suppress(NotImplementedError):
            self.save(Path(checkpoint_dir) / self.CKPT_FILE_TMPL.format(session_str))

    def restore_from_dir(self, checkpoint_dir: str | os.PathLike[str]) -> None:
        """Restore from the newest ``searcher-state-*.json`` in ``checkpoint_dir``.

        Raises:
            RuntimeError: There is no such file.
        """
        found = sorted(Path(checkpoint_dir).glob(self.CKPT_FILE_TMPL.format("*")))
        if not found:
            raise RuntimeError(f"no searcher state found in {os.fspath(checkpoint_dir)!r}")
        self.restore(found[-1])


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SearchGenerator(SearchAlgorithm):
    """Run a :class:`Searcher` as the experiment's :class:`~atune.search.SearchAlgorithm`.

    Each suggestion is deep-merged over a copy of ``param_space`` (so its constants reach
    the trial) and tagged ``"{n}_{key}={value},..."``, ``n`` counting from 1 and the pairs
    taken from every leaf of the merged config (see ``BasicVariantGenerator`` for the
    format). At most ``num_samples`` trials are suggested; FINISHED from the searcher ends
    the search early.

    Args:
        searcher: The searcher to run.

    Raises:
        ConfigError: ``searcher`` is not a :class:`Searcher`.
    """

    needs_intermediate_results = True

    def __init__(self, searcher: Searcher) -> None:
        if not isinstance(searcher, Searcher):
            raise ConfigError(
                f"SearchGenerator needs a Searcher, got {type(searcher).__name__}: {searcher!r}",
                value=searcher,
            )
        self.searcher = searcher
        self._space: dict[str, Any] = {}
        self._total: int | None = 1
        self._counter = 0
        self._finished = False

    @property
    def metric(self) -> Any:
        """The searcher's metric."""
        return self.searcher.metric

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        param_space: dict[str, Any],
        num_samples: int,
    ) -> bool:
        """Pass metric, mode and ``param_space`` to the searcher; remember ``num_samples``.

        Returns:
            What the searcher's ``set_search_properties`` returned.

        Raises:
            ConfigError: the searcher and ``TuneConfig`` set different metrics (or modes),
                naming both; ``param_space``/``num_samples`` are invalid, or the searcher kept
                its own space (returned False) while ``param_space`` holds domains that
                would then be ignored.
        """
        validate_param_space(param_space, num_samples=num_samples)
        inner: Any = self.searcher
        while isinstance(getattr(inner, "searcher", None), Searcher):  # name the wrapped one
            inner = inner.searcher
        for name, mine, theirs in (
            ("metric", self.searcher.metric, metric),
            ("mode", self.searcher.mode, mode),
        ):
            if mine is not None and theirs is not None and mine != theirs:
                raise ConfigError(
                    f"{name} is set both on {type(inner).__name__} ({name}={mine!r}) "
                    f"and on TuneConfig ({name}={theirs!r}); set it in one place",
                    value=theirs,
                )
        self._space = dict(param_space or {})
        self._total = None if num_samples == -1 else num_samples
        spec_samples = sys.maxsize if num_samples == -1 else num_samples
        try:
            accepted = self.searcher.set_search_properties(
                metric, mode, self._space, num_samples=spec_samples
            )
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            accepted = self.searcher.set_search_properties(metric, mode, self._space)
        if not accepted and self._space and has_unresolved_values(self._space):
            raise ConfigError(
                f"param_space holds search domains, but {type(self.searcher).__name__} "
                "already has a search space of its own and ignores them; define the space "
                "in one place only",
                value=self._space,
            )
        return bool(accepted)

    @property
    def total_samples(self) -> int | None:
        """``num_samples``; None when unbounded (``-1``)."""
        return self._total

    def next_trial(self, trial_id: str) -> Suggestion | Literal["FINISHED"] | None:
        """Ask the searcher for a config; FINISHED once ``num_samples`` were suggested."""
        if self._finished or (self._total is not None and self._counter >= self._total):
            self._finished = True
            return FINISHED
        suggested = self.searcher.suggest(trial_id)
        if suggested is None:
            return None
        if isinstance(suggested, str) and suggested == FINISHED:
            self._finished = True
            return FINISHED
        if not isinstance(suggested, dict):
            raise ConfigError(
                f"{type(self.searcher).__name__}.suggest returned {suggested!r}; expected a "
                "dict, None or Searcher.FINISHED",
                value=suggested,
            )
        config = _merge(copy_structure(self._space), copy_structure(suggested))
        self._counter += 1
        tag = f"{self._counter}_{format_vars(nested_dict_paths(config))}"
        params = {"/".join(map(str, p)): v for p, v in nested_dict_paths(suggested).items()}
        return Suggestion(config=config, experiment_tag=tag, evaluated_params=params)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Forward to the searcher."""
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Forward to the searcher."""
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict[str, Any]:
        """JSON-able progress: ``counter``, ``finished`` and the searcher's ``get_state()``
        (None if it has none)."""
        try:
            searcher_state: Any = self.searcher.get_state()
        except NotImplementedError:
            searcher_state = None
        return {"counter": self._counter, "finished": self._finished, "searcher": searcher_state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output, the searcher's state included if saved.

        Raises:
            ConfigError: ``state`` lacks the keys this class writes.
        """
        try:
            self._counter = int(state["counter"])
            self._finished = bool(state["finished"])
            searcher_state = state["searcher"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a SearchGenerator state: {state!r}", value=state) from exc
        if searcher_state is not None:
            self.searcher.set_state(searcher_state)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` deep-merged with ``update`` (dicts merge, anything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out
