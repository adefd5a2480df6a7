"""Virtual-time simulation: run a real study against tabulated learning curves.

A :class:`Simulator` stands in for the trainable: pass it to :class:`~atune.Tuner` where a
function or ``Trainable`` class would go, and ``fit()`` runs the *real* controller core,
driver, search algorithm, scheduler, stopper, callbacks and journal, while every trial is
answered from learning curves instead of being computed::

    from atune import TuneConfig, Tuner
    from atune.schedulers import ASHAScheduler
    from atune.simulator import LearningCurves, Simulator

    curves = LearningCurves.from_csv("curves.csv", config_keys=["lr", "width"])
    tuner = Tuner(
        Simulator(curves, workers=8, seed=0),
        param_space=curves.param_space(),
        tune_config=TuneConfig(metric="loss", mode="min", num_samples=200,
                               scheduler=ASHAScheduler(max_t=100)),
    )
    grid = tuner.fit()  # hours of simulated training in (milliseconds to) seconds

Learning curves map ``(config, iteration)`` to the metrics that iteration reports and the
seconds it takes (:class:`LearningCurves`: a dict, rows, a CSV file, a pandas
``DataFrame`` or a Parquet file), or come from a function ``curve(config, iteration)``
that returns ``(metrics, seconds)`` (or None past the curve's end).

**Virtual time.** The experiment runs on a virtual clock (trio's ``MockClock`` idea): an
iteration "takes" its seconds by waiting on that clock, and the clock jumps to the next
deadline whenever every task waits, so nothing sleeps in real time. The time stamps of
events, ``timestamp``/``date``/``time_total_s`` in results, ``TuneConfig.time_budget_s``
and retry back-off are all in virtual seconds; time starts at 2024-01-01 00:00:00 UTC.

**Determinism.** With the same curves, search space, configuration, ``seed`` and
experiment path, two runs write byte-identical journals (``events.jsonl``). The seed
fixes what the simulator controls: trial ids, the default experiment name and the default
search algorithm (``BasicVariantGenerator(random_state=seed)`` when
``TuneConfig.search_alg`` is unset). Searchers and schedulers that you pass must be seeded
by you (``ASHAScheduler(seed=...)``, ``OptunaSearch(seed=...)``). Real runs are not
changed by any of this.

**What it simulates.** Each trial holds one CPU of a cluster of ``workers`` CPUs; a trial
starts (after ``launch_s``), reports its curve one iteration at a time, and ends with
``done=True`` at the curve's last iteration (or when the scheduler or a stopper ends it).
A simulated trial is a class trainable: checkpoints are taken as for one (scheduler
pauses, ``checkpoint_frequency``, ``checkpoint_at_end``, which is on by default), each
written as a tiny directory holding the iteration it was taken at, so a trial restored
from a checkpoint (after a pause, a PBT exploit or ``Tuner.restore``) continues its curve
from there. A trial restored with a new config (PBT) continues along the new config's
curve (with a table, the new config must be in it; a curve function answers any config). A missing table entry or an exception raised by a curve function fails the trial,
as a user error would.

Why a trainable stand-in rather than a separate ``simulate()`` function: everything a
user already writes around ``Tuner`` (``TuneConfig``, ``RunConfig``, callbacks,
``Tuner.restore``, ``tuner.start()``, ``await tuner.fit()``, the ``ResultGrid``) works
unchanged, and the only new thing to learn is where the curves go.
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from atune._flatten import flatten_dict
from atune.trainable._trainable import Trainable

if TYPE_CHECKING:
    import pandas

__all__ = ["Curve", "LearningCurves", "Simulator", "config_key"]

Curve = Callable[[dict[str, Any], int], tuple[Mapping[str, Any], float] | None]
"""A learning curve as a function: ``curve(config, iteration) -> (metrics, seconds)``,
or None when ``config``'s curve has no such iteration (it ended before)."""

#: The start of virtual time: 2024-01-01 00:00:00 UTC.
_EPOCH = 1_704_067_200.0


def config_key(config: Mapping[str, Any], keys: Iterable[str] | None = None) -> tuple[Any, ...]:
    """The hashable key of ``config`` in a :class:`LearningCurves` table.

    The config is flattened (``{"a": {"b": 1}}`` has the key ``a/b``) and its
    ``(key, value)`` pairs are sorted by key.

    Args:
        config: A trial's config.
        keys: Only these (flattened) keys; default: all of them.

    Raises:
        KeyError: a key of ``keys`` is not in ``config``.
    """
    flat = flatten_dict(dict(config))
    if keys is None:
        return tuple(sorted(flat.items()))
    return tuple(sorted((key, flat[key]) for key in keys))


class LearningCurves:
    """A table of learning curves: ``(config, iteration) -> (metrics, seconds)``.

    Iterations count from 1 (Ray Tune's ``training_iteration``); a config's curve ends at
    its last iteration in the table, and iterations in between must not be missing. Build
    one from a dict, from rows (:meth:`from_rows`), a CSV file (:meth:`from_csv`), a pandas
    ``DataFrame`` (:meth:`from_dataframe`) or a Parquet file (:meth:`from_parquet`).

    Args:
        table: ``{(key, iteration): (metrics, seconds)}`` where ``key`` is a config's
            :func:`config_key` (a tuple of ``(name, value)`` pairs, any order) over the
            table's config keys, ``metrics`` the dict that iteration reports and
            ``seconds`` how long it takes.

    Raises:
        ValueError: a key is not a ``((name, value), ...)`` tuple and an iteration >= 1,
            configs use different keys, a curve has a gap, or seconds are negative.
    """

    def __init__(
        self,
        table: Mapping[tuple[tuple[tuple[str, Any], ...], int], tuple[Mapping[str, Any], float]],
    ) -> None:
        self._table: dict[
            tuple[tuple[tuple[str, Any], ...], int], tuple[dict[str, Any], float]
        ] = {}
        self._length: dict[tuple[tuple[str, Any], ...], int] = {}
        names: tuple[str, ...] | None = None
        for raw_key, value in table.items():
            try:
                pairs, iteration = raw_key
                key = tuple(sorted((str(name), v) for name, v in pairs))
            except (TypeError, ValueError):
                raise ValueError(
                    f"a LearningCurves key must be (((name, value), ...), iteration), got {raw_key!r}"
                ) from None
            if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
                raise ValueError(f"iterations count from 1, got {iteration!r} for {dict(key)!r}")
            these = tuple(name for name, _ in key)
            if names is None:
                names = these
            elif these != names:
                raise ValueError(
                    f"every config of a LearningCurves table needs the keys {list(names)!r}, "
                    f"got {list(these)!r}"
                )
            metrics, seconds = value
            seconds = float(seconds)
            if not seconds >= 0:
                raise ValueError(f"seconds must be >= 0, got {seconds!r} for {dict(key)!r}")
            self._table[(key, iteration)] = (dict(metrics), seconds)
            self._length[key] = max(self._length.get(key, 0), iteration)
        for key, length in self._length.items():
            gaps = [i for i in range(1, length + 1) if (key, i) not in self._table]
            if gaps:
                raise ValueError(f"the curve of {dict(key)!r} has no iterations {gaps[:5]!r}")
        self.config_keys: tuple[str, ...] = names or ()
        """The (flattened) config keys the table is indexed by."""

    # ------------------------------------------------------------------ building
    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        *,
        config_keys: Sequence[str],
        iteration: str = "training_iteration",
        seconds: str = "time_this_iter_s",
    ) -> LearningCurves:
        """A table from rows (one per config and iteration).

        Args:
            rows: Dicts with the config's values (``config_keys``), the iteration, the
                seconds it takes, and the metrics it reports (every other column).
            config_keys: The columns that make up a config (flattened names).
            iteration: The iteration's column (counting from 1).
            seconds: The column of the iteration's duration in seconds.

        Raises:
            ValueError: a row lacks one of the named columns (or see the constructor).
        """
        keys = list(config_keys)
        table: dict[tuple[tuple[tuple[str, Any], ...], int], tuple[Mapping[str, Any], float]] = {}
        for number, row in enumerate(rows, 1):
            missing = [k for k in (*keys, iteration, seconds) if k not in row]
            if missing:
                raise ValueError(f"row {number} of the learning curves has no {missing!r}")
            key = tuple(sorted((k, row[k]) for k in keys))
            metrics = {
                k: v for k, v in row.items() if k not in keys and k not in (iteration, seconds)
            }
            table[(key, int(row[iteration]))] = (metrics, float(row[seconds]))
        return cls(table)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        config_keys: Sequence[str],
        iteration: str = "training_iteration",
        seconds: str = "time_this_iter_s",
    ) -> LearningCurves:
        """A table from a CSV file with a header row (see :meth:`from_rows`).

        Cells that read as numbers become ints or floats, others stay strings; empty cells
        are left out of the metrics.
        """
        with open(path, newline="") as f:
            rows = [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
        return cls.from_rows(rows, config_keys=config_keys, iteration=iteration, seconds=seconds)

    @classmethod
    def from_dataframe(
        cls,
        frame: pandas.DataFrame,
        *,
        config_keys: Sequence[str],
        iteration: str = "training_iteration",
        seconds: str = "time_this_iter_s",
    ) -> LearningCurves:
        """A table from a pandas ``DataFrame`` (see :meth:`from_rows`); NaN cells are left out."""
        rows = [
            {k: _plain(v) for k, v in row.items() if not _is_nan(v)}
            for row in frame.to_dict(orient="records")
        ]
        return cls.from_rows(rows, config_keys=config_keys, iteration=iteration, seconds=seconds)

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike[str],
        *,
        config_keys: Sequence[str],
        iteration: str = "training_iteration",
        seconds: str = "time_this_iter_s",
    ) -> LearningCurves:
        """A table from a Parquet file (needs pandas with pyarrow; see :meth:`from_rows`)."""
        import pandas as pd

        return cls.from_dataframe(
            pd.read_parquet(path), config_keys=config_keys, iteration=iteration, seconds=seconds
        )

    # ------------------------------------------------------------------ reading
    def __call__(
        self, config: dict[str, Any], iteration: int
    ) -> tuple[dict[str, Any], float] | None:
        """The metrics and seconds of ``config``'s ``iteration``; None past its curve's end.

        Raises:
            KeyError: the table has no curve for ``config`` at all.
        """
        try:
            key = config_key(config, self.config_keys)
        except KeyError as exc:
            raise KeyError(
                f"the config {config!r} has no value for {exc.args[0]!r}, a key of the "
                f"learning curves ({list(self.config_keys)!r})"
            ) from None
        if key not in self._length:
            raise KeyError(f"the learning curves have no curve for the config {dict(key)!r}")
        return self._table.get((key, iteration))

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Every config in the table (flattened keys), in the table's order."""
        return [dict(key) for key in self._length]

    def __len__(self) -> int:
        """The number of configs (curves) in the table."""
        return len(self._length)

    def param_space(self) -> dict[str, Any]:
        """A search space over the table: ``choice`` of each config key's values.

        Right for a table that holds every combination of its keys' values (a full grid);
        otherwise a sampled combination the table lacks fails its trial. Keys are the
        flattened names, so a table over ``a/b`` samples a nested ``{"a": {"b": ...}}``.
        """
        from atune.search import choice

        space: dict[str, Any] = {}
        for name in self.config_keys:
            values = sorted({dict(key)[name] for key in self._length}, key=_sort_key)
            node = space
            *parents, leaf = name.split("/")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = choice(values)
        return space


class Simulator:
    """A trainable stand-in that answers trials from learning curves, in virtual time.

    Pass it to :class:`~atune.Tuner` in place of a trainable (see the module docstring);
    pass the same simulator to ``Tuner.restore(path, simulator)`` to continue a simulated
    experiment.

    Args:
        curves: A :class:`LearningCurves` table, a dict for one (its constructor's
            argument), or a function ``curve(config, iteration) -> (metrics, seconds)``
            that returns None past the curve's end.
        workers: Trials that can run at once (the simulated cluster has this many CPUs,
            and each trial takes one).
        seed: Seeds the trial ids, the default experiment name and the default search
            algorithm, so that equal runs write equal journals.
        max_iterations: End every curve after this many iterations (needed for a curve
            function that never returns None, unless a scheduler or stopper ends trials).
        launch_s: Virtual seconds a trial takes to start (its ``setup``).
        save_s: Virtual seconds a checkpoint takes.
        name: The name of the simulated trainable (trial and experiment names use it).

    Raises:
        TypeError: ``curves`` is neither a table, a dict nor callable.
        ValueError: ``workers`` < 1, ``max_iterations`` < 1, or a negative duration.
    """

    def __init__(
        self,
        curves: LearningCurves | Mapping[Any, Any] | Curve,
        *,
        workers: int = 1,
        seed: int = 0,
        max_iterations: int | None = None,
        launch_s: float = 0.0,
        save_s: float = 0.0,
        name: str = "simulated",
    ) -> None:
        if isinstance(curves, Mapping):
            curves = LearningCurves(curves)
        if not callable(curves):
            raise TypeError(
                f"curves must be LearningCurves, a dict or a function (config, iteration), "
                f"got {curves!r}"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if max_iterations is not None and (
            isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or max_iterations < 1
        ):
            raise ValueError(
                f"max_iterations must be None or an integer >= 1, got {max_iterations!r}"
            )
        for label, value in (("launch_s", launch_s), ("save_s", save_s)):
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a number of seconds >= 0, got {value!r}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be a Python identifier, got {name!r}")
        self.curves: Curve = curves
        self.workers = workers
        self.seed = seed
        self.max_iterations = max_iterations
        self.launch_s = float(launch_s)
        self.save_s = float(save_s)
        self.name = name
        self.epoch = _EPOCH
        # The class the Tuner sees: named like the simulator, a class trainable.
        self._trainable: type[Trainable] = type(
            name, (_SimulatedTrainable,), {"__module__": __name__, "__qualname__": name}
        )

    def __repr__(self) -> str:
        return f"Simulator({self.curves!r}, workers={self.workers}, seed={self.seed})"

    @property
    def uid(self) -> str:
        """The experiment uid (trial ids are ``<uid>_00001``, ...): drawn from ``seed``."""
        return f"{random.Random(self.seed).getrandbits(20):05x}"

    def row(self, config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
        """The metrics and seconds of ``config``'s ``iteration``; None when its curve ended.

        Raises:
            Exception: whatever the curve raises (the trial fails with it).
        """
        if self.max_iterations is not None and iteration > self.max_iterations:
            return None
        answer = self.curves(config, iteration)
        if answer is None:
            return None
        metrics, seconds = answer
        seconds = float(seconds)
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(
                f"the learning curve of {config!r} at iteration {iteration} takes {seconds!r} "
                "seconds; it must be a number >= 0"
            )
        return dict(metrics), seconds


def simulator_of(trainable: Any) -> Simulator | None:
    """``trainable`` if it is a :class:`Simulator` (what ``Tuner`` asks), else None."""
    return trainable if isinstance(trainable, Simulator) else None


class _SimulatedTrainable(Trainable):
    """The class a :class:`Simulator` shows the ``Tuner``; simulated runners replace it."""

    def step(self) -> dict[str, Any]:  # pragma: no cover - never run: trials are simulated
        raise RuntimeError("a simulated trainable runs only through atune.simulator.Simulator")


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars -> Python numbers
    return item() if callable(item) else value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)
