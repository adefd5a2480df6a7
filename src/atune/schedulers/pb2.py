"""PB2: Population Based Bandits, PBT whose explore step is a GP-bandit (numpy only).

PB2 is :class:`~atune.schedulers.PopulationBasedTraining` (same quantiles, donors with a
checkpoint, ``exploit_trial``, synch mode, policy log as ``pb2_global.txt`` and
``pb2_policy_<id>.txt``) with two changes:

* Each key of ``hyperparam_bounds`` is a ``[low, high]`` range (a nested dict for nested
  keys); a key missing from a trial's config is drawn uniformly from it (seeded).
* At each perturbation point the trial's ``(time, config values, score)`` is recorded.
  To explore, the change of score per unit of time between consecutive records of the
  same trial and config is modelled by a time-varying GP over
  ``(time, score before, config values)`` (:mod:`atune.schedulers._gp`), and the config
  that maximises UCB at the donor's latest ``(time, score before)`` replaces the donor's
  values. Configs chosen since the last new data are added to the variance model, so
  exploiters at the same time get different configs. Without records for the donor the
  config is the donor's unchanged. Then ``custom_explore_fn``.

Values are inside their bounds by construction; an ``int`` in the donor's config stays an
``int`` (rounded).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from atune._flatten import flatten_dict
from atune.schedulers._common import decode_float, encode_float
from atune.schedulers._gp import select_config
from atune.schedulers.pbt import PopulationBasedTraining

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["PB2"]

_MAX_ROWS = 1000


def _flat_bounds(bounds: Any, prefix: str = "") -> dict[str, tuple[float, float]]:
    """``hyperparam_bounds`` flattened to ``{"a/b": (low, high)}``, checked."""
    if not isinstance(bounds, Mapping):
        raise TypeError(f"hyperparam_bounds must be a dict, got {bounds!r}")
    flat: dict[str, tuple[float, float]] = {}
    for key, value in bounds.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_bounds(value, f"{name}/"))
            continue
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"hyperparam_bounds[{name!r}] must be a [low, high] list or tuple, got "
                f"{value!r} ({type(value).__name__})"
            )
        if len(value) != 2:
            raise ValueError(f"hyperparam_bounds[{name!r}] must be [low, high], got {value!r}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, Real):
                raise TypeError(f"hyperparam_bounds[{name!r}] must hold two numbers, got {value!r}")
        low, high = value
        if not low <= high:
            raise ValueError(
                f"hyperparam_bounds[{name!r}] must be [low, high] with low <= high, got {value!r}"
            )
        flat[name] = (float(low), float(high))
    return flat


def _as_lists(bounds: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _as_lists(v) if isinstance(v, Mapping) else list(v) for k, v in bounds.items()}


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split("/")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


class PB2(PopulationBasedTraining):
    """Population Based Bandits: PBT that explores with a time-varying GP-UCB.

    Args:
        time_attr: The monotone result key that measures progress.
        metric: The result key to optimise (or set it in ``TuneConfig``).
        mode: ``"min"`` or ``"max"`` (or set it in ``TuneConfig``).
        perturbation_interval: A trial is considered for exploitation every this much
            ``time_attr`` (> 0).
        hyperparam_bounds: Per key a ``[low, high]`` range (nested dicts allowed).
        quantile_fraction: As for PBT, in ``[0, 0.5]``.
        log_config: Keep the policy log (``pb2_global.txt``, ``pb2_policy_<id>.txt``).
        require_attrs: A result without ``time_attr`` or ``metric`` fails the trial.
        synch: Synchronous mode.
        custom_explore_fn: Applied to the config the GP chose.
        seed: Seeds the scheduler's RNG (atune's addition).

    Raises:
        TypeError: a bound that is not a ``[low, high]`` pair of numbers; a non-numeric
            argument.
        ValueError: no ``hyperparam_bounds``, a pair that is not two items or has
            ``low > high``, and PBT's checks.
    """

    _policy_prefix = "pb2"

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: Mapping[str, Any] | None = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        if not hyperparam_bounds:
            raise ValueError(f"PB2 needs hyperparam_bounds, got {hyperparam_bounds!r}")
        self._bounds = _flat_bounds(hyperparam_bounds)
        self._bounds_arg = _as_lists(hyperparam_bounds)
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations=self._bounds_arg,
            quantile_fraction=quantile_fraction,
            resample_probability=0.0,
            custom_explore_fn=custom_explore_fn,
            log_config=log_config,
            require_attrs=require_attrs,
            synch=synch,
            seed=seed,
        )
        # Rows (trial_id, time, values..., score), in the order they were recorded.
        self._data: list[list[Any]] = []
        self._current: list[list[float]] | None = None
        self._last_exploration_time = 0.0

    def init_args(self) -> dict[str, Any] | None:
        """The constructor arguments as JSON data, or None with a ``custom_explore_fn``."""
        if self._custom_explore_fn is not None:
            return None
        return {
            "time_attr": self._time_attr,
            "metric": self._metric,
            "mode": self._mode,
            "perturbation_interval": self._interval,
            "hyperparam_bounds": self._bounds_arg,
            "quantile_fraction": self._quantile_fraction,
            "log_config": self._log_config,
            "require_attrs": self._require_attrs,
            "synch": self._synch,
            "seed": self._seed,
        }

    @classmethod
    def from_init_args(cls, **args: Any) -> PB2:
        """Build the scheduler from :meth:`init_args` data."""
        return cls(**args)

    @property
    def hyperparam_bounds(self) -> dict[str, tuple[float, float]]:
        """The bounds, flattened (``"a/b"`` keys), a copy."""
        return dict(self._bounds)

    def _fill(self, config: dict[str, Any]) -> None:
        flat = flatten_dict(config)
        for key, (low, high) in self._bounds.items():
            if key not in flat:
                _set(config, key, self._rng.uniform(low, high))

    def _values(self, config: dict[str, Any]) -> list[float]:
        flat = flatten_dict(config)
        return [float(flat[key]) for key in self._bounds]

    def _on_record(self, trial: Trial, t: float, score: float) -> None:
        self._data.append([trial.trial_id, t, *self._values(trial.config), score])

    def _changes(self) -> list[list[Any]]:
        """Rows ``(trial_id, time, score before, values..., change per time)``."""
        n = len(self._bounds)
        rows = sorted(self._data, key=lambda r: r[1])
        last: dict[tuple[Any, ...], list[Any]] = {}
        out = []
        for row in rows:
            group = (row[0], *row[2 : 2 + n])
            before = last.get(group)
            last[group] = row
            if before is None or not row[1] > before[1]:
                continue
            change = row[-1] - before[-1]
            out.append(
                [row[0], row[1], row[-1] - change, *row[2 : 2 + n], change / (row[1] - before[1])]
            )
        return [r for r in out if np.isfinite(r[-1])][-_MAX_ROWS:]

    def _new_config(self, trial: Trial, donor: Trial) -> dict[str, Any]:
        max_time = max((r[1] for r in self._data), default=0.0)
        if max_time > self._last_exploration_time:
            self._current = None
        changes = self._changes()
        donor_rows = [r for r in changes if r[0] == donor.trial_id]
        new_config = copy.deepcopy(donor.config)
        if not donor_rows:
            return new_config
        x = np.array([r[1:-1] for r in changes], dtype=np.float64)
        y = np.array([r[-1] for r in changes], dtype=np.float64)
        bounds = np.array(list(self._bounds.values()), dtype=np.float64).T
        current = None if self._current is None else np.array(self._current, dtype=np.float64)
        np_rng = np.random.default_rng(self._rng.getrandbits(63))
        point = np.array(donor_rows[-1][1:3], dtype=np.float64)
        chosen = select_config(x, y, current, point, bounds, np_rng)
        donor_flat = flatten_dict(donor.config)
        values = []
        for (key, (low, high)), value in zip(self._bounds.items(), chosen, strict=True):
            if isinstance(donor_flat.get(key), int) and not isinstance(donor_flat.get(key), bool):
                new: Any = int(min(max(round(float(value)), low), high))
            else:
                new = float(value)
            _set(new_config, key, new)
            values.append(float(new))
        donor_last = [r for r in self._data if r[0] == donor.trial_id][-1]
        self._data.append([trial.trial_id, donor_last[1], *values, donor_last[-1]])
        max_time = max(r[1] for r in self._data)
        if max_time > self._last_exploration_time:
            self._last_exploration_time = max_time
            self._current = [values]
        else:
            self._current = [*(self._current or []), values]
        return new_config

    def get_state(self) -> dict[str, Any]:
        """PBT's state plus the GP's data, as JSON data."""
        state = super().get_state()
        state["data"] = [[r[0], *(encode_float(v) for v in r[1:])] for r in self._data]
        state["current"] = self._current
        state["last_exploration_time"] = encode_float(self._last_exploration_time)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data."""
        super().set_state(state)
        self._data = [[str(r[0]), *(decode_float(v) for v in r[1:])] for r in state["data"]]
        current = state["current"]
        self._current = None if current is None else [[float(v) for v in r] for r in current]
        self._last_exploration_time = decode_float(state["last_exploration_time"])
