"""Population Based Training (PBT), Ray Tune's rule, with its known defects fixed.

Per result of a trial (``synch=False``):

1. A result without ``time_attr`` or a numeric ``metric`` fails the trial with a
   :class:`~atune.errors.MetricError` naming the key (``require_attrs=True``), or is
   skipped with one warning (``require_attrs=False``).
2. ``t < burn_in_period``, or ``t - last_perturbation_time < perturbation_interval``:
   CONTINUE.
3. The trial's score (``+metric`` for ``"max"``, ``-metric`` for ``"min"``) and time are
   recorded and ``last_perturbation_time = t``.
4. Quantiles: the unfinished trials with a (non-NaN) recorded score, sorted ascending (ties
   in creation order); ``q = ceil(n * quantile_fraction)``, at most ``floor(n / 2)``;
   ``n <= 1`` gives none. The lower quantile is the first ``q``, the upper the last ``q``.
5. A trial in the lower quantile *exploits*: the donor is drawn uniformly (seeded) among
   the upper-quantile trials **that have a checkpoint** (none: skipped, one log line); the
   new config is :func:`~atune.schedulers._explore.explore` of the donor's config; then
   ``tune_controller.exploit_trial(trial, donor=donor, config=new_config,
   experiment_tag="<orig_tag>@perturbed[...]")``: the core continues the trial from the
   donor's *latest* checkpoint (pinned against ``num_to_keep``) with the new config. The
   trial's recorded time becomes the checkpoint's ``time_attr``. Decision: NOOP.
6. Otherwise PAUSE if another trial is PENDING or PAUSED (time-slicing a population larger
   than the cluster), else CONTINUE.

``synch=True``: a trial at its perturbation point PAUSEs until every unfinished trial has
reached ``next_sync``; the last one to arrive perturbs them all (upper, middle, then lower
quantile) and moves ``next_sync`` to ``max(next_sync + interval, latest time)``.
:meth:`choose_trial_to_run` picks the PENDING/PAUSED trial that has trained least (in
synch mode, only those below ``next_sync``).

Every random choice (initial values of missing keys, donors, explore) comes from the
scheduler's ``random.Random(seed)``; its whole state, RNG included, is JSON data
(:meth:`get_state`/:meth:`set_state`).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from atune._flatten import flatten_dict
from atune._log import get_logger
from atune.errors import MetricError
from atune.schedulers._common import (
    check_mode,
    check_number,
    check_type,
    decode_float,
    encode_float,
    metric_op,
)
from atune.schedulers._explore import (
    check_mutations,
    explore,
    fill_config,
    make_experiment_tag,
)
from atune.schedulers._pbt_policy import policy_line, write_policy_files
from atune.schedulers._pbt_replay import PopulationBasedTrainingReplay
from atune.schedulers._trial_scheduler import TrialScheduler

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay"]

_log = get_logger(__name__)

_FINISHED = ("TERMINATED", "ERROR")
_WAITING = ("PENDING", "PAUSED")


class _TrialState:
    """What PBT keeps per trial (Ray Tune's ``_PBTTrialState``, minus the checkpoint)."""

    __slots__ = ("last_perturbation_time", "last_score", "last_train_time", "orig_tag")

    def __init__(self, orig_tag: str) -> None:
        self.orig_tag = orig_tag
        self.last_score: float | None = None
        self.last_perturbation_time = 0.0
        self.last_train_time = 0.0

    def to_data(self) -> list[Any]:
        score = None if self.last_score is None else encode_float(self.last_score)
        times = (self.last_perturbation_time, self.last_train_time)
        return [self.orig_tag, score, *(encode_float(t) for t in times)]

    @classmethod
    def from_data(cls, data: list[Any]) -> _TrialState:
        state = cls(str(data[0]))
        state.last_score = None if data[1] is None else decode_float(data[1])
        state.last_perturbation_time = decode_float(data[2])
        state.last_train_time = decode_float(data[3])
        return state


def _is_number(value: Any) -> bool:
    """A real number, numpy scalars included; not a bool."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, Real)


class PopulationBasedTraining(TrialScheduler):
    """PBT: the worst trials continue from the best ones' checkpoints with explored configs.

    Args:
        time_attr: The monotone result key that measures progress.
        metric: The result key to optimise (or set it in ``TuneConfig``).
        mode: ``"min"`` or ``"max"`` (or set it in ``TuneConfig``).
        perturbation_interval: A trial is considered for exploitation every this much
            ``time_attr`` (> 0).
        burn_in_period: No perturbation before ``time_attr`` reaches this (>= 0).
        hyperparam_mutations: What to explore: per key a list/tuple, a search-space domain,
            a function of no arguments or a nested dict (see
            :mod:`atune.schedulers._explore`). Keys missing from a trial's config are
            sampled into it when the trial is added.
        quantile_fraction: The fraction of trials in each of the top and bottom quantiles,
            in ``[0, 0.5]`` (0: never exploit).
        resample_probability: The probability, in ``[0, 1]``, of resampling a value
            instead of perturbing it.
        perturbation_factors: The factors a numeric value is multiplied by (one drawn per
            perturbation); a non-empty sequence of numbers.
        custom_explore_fn: Applied to the explored config; must return a dict.
        log_config: Keep the policy log (``pbt_global.txt``, ``pbt_policy_<id>.txt``) for
            :class:`PopulationBasedTrainingReplay`.
        require_attrs: A result without ``time_attr`` or ``metric`` fails the trial
            (True) or is skipped with a warning (False).
        synch: Synchronous PBT (all trials perturb together).
        clip: Keep perturbed values inside their domain (atune's addition; Ray Tune's
            behaviour, False, lets ``0.9 * 1.2`` leave ``uniform(0, 0.9)``).
        seed: Seeds the scheduler's RNG (atune's addition).

    Raises:
        TypeError: a mutation of the wrong type, or a non-numeric argument; the message
            names the parameter (or key) and the value.
        ValueError: ``quantile_fraction`` outside ``[0, 0.5]``, ``perturbation_interval
            <= 0``, ``resample_probability`` outside ``[0, 1]``, ``tune.sample_from`` as a
            mutation, a bad ``mode``, or neither ``hyperparam_mutations`` nor
            ``custom_explore_fn``.
    """

    requires_metric = True
    _policy_prefix = "pbt"

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Mapping[str, Any] | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Sequence[float] = (1.2, 0.8),
        custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        clip: bool = False,
        seed: int | None = None,
    ) -> None:
        mutations = {} if hyperparam_mutations is None else hyperparam_mutations
        check_mutations(mutations)
        if not mutations and custom_explore_fn is None:
            raise ValueError(
                "PopulationBasedTraining needs hyperparam_mutations or custom_explore_fn, "
                f"got hyperparam_mutations={hyperparam_mutations!r} and custom_explore_fn=None"
            )
        if custom_explore_fn is not None and not callable(custom_explore_fn):
            raise TypeError(f"custom_explore_fn must be callable, got {custom_explore_fn!r}")
        check_number("perturbation_interval", perturbation_interval, positive=True)
        check_number("burn_in_period", burn_in_period)
        check_number("quantile_fraction", quantile_fraction)
        check_number("resample_probability", resample_probability)
        check_mode(mode)
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must be in [0, 0.5], got {quantile_fraction!r}")
        if not 0 <= resample_probability <= 1:
            raise ValueError(
                f"resample_probability must be in [0, 1], got {resample_probability!r}"
            )
        if burn_in_period < 0:
            raise ValueError(f"burn_in_period must be >= 0, got {burn_in_period!r}")
        if isinstance(perturbation_factors, (str, bytes)) or not isinstance(
            perturbation_factors, Sequence
        ):
            raise TypeError(
                f"perturbation_factors must be a sequence of numbers, got {perturbation_factors!r}"
            )
        if not perturbation_factors:
            raise ValueError(
                f"perturbation_factors must not be empty, got {perturbation_factors!r}"
            )
        for factor in perturbation_factors:
            check_number("perturbation_factors", factor)
        check_type("time_attr", time_attr, str, "str")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        super().__init__(metric, mode)
        self._time_attr = time_attr
        self._interval = float(perturbation_interval)
        self._burn_in = float(burn_in_period)
        self._mutations = mutations
        self._quantile_fraction = float(quantile_fraction)
        self._resample_probability = float(resample_probability)
        self._factors = list(perturbation_factors)
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._clip = clip
        self._seed = seed
        self._rng = random.Random(seed)
        self._trial_state: dict[str, _TrialState] = {}
        self._next_sync = max(self._interval, self._burn_in)
        self._num_perturbations = 0
        self._num_skipped = 0
        self._experiment_path: str | None = None
        self._global_lines: list[str] = []
        self._policies: dict[str, list[str]] = {}
        self._changed: set[str] = set()
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ as data
    def init_args(self) -> dict[str, Any] | None:
        """The constructor arguments as JSON data (for ``experiment.json``), or None.

        None when they are not data: a ``custom_explore_fn``, or a mutation that is a
        function; such a scheduler is not rebuilt by ``Tuner.restore``.
        """
        from atune.search._codec import encode_space

        if self._custom_explore_fn is not None:
            return None
        encoded, failures = encode_space(dict(self._mutations))
        if failures:
            return None
        return {
            "time_attr": self._time_attr,
            "metric": self._metric,
            "mode": self._mode,
            "perturbation_interval": self._interval,
            "burn_in_period": self._burn_in,
            "hyperparam_mutations": encoded,
            "quantile_fraction": self._quantile_fraction,
            "resample_probability": self._resample_probability,
            "perturbation_factors": list(self._factors),
            "log_config": self._log_config,
            "require_attrs": self._require_attrs,
            "synch": self._synch,
            "clip": self._clip,
            "seed": self._seed,
        }

    @classmethod
    def from_init_args(cls, **args: Any) -> PopulationBasedTraining:
        """Build the scheduler from :meth:`init_args` data."""
        from atune.search._codec import decode_space

        args["hyperparam_mutations"] = decode_space(args["hyperparam_mutations"])
        return cls(**args)

    # ------------------------------------------------------------------ hooks
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Start tracking the trial; sample the mutation keys its config lacks into it."""
        if trial.trial_id not in self._trial_state:
            self._trial_state[trial.trial_id] = _TrialState(trial.experiment_tag)
        if self._experiment_path is None:
            self._experiment_path = getattr(trial, "experiment_path", None)
        self._fill(trial.config)

    def _fill(self, config: dict[str, Any]) -> None:
        fill_config(config, self._mutations, self._rng)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """PAUSE, NOOP (exploited) or CONTINUE; see the module docstring."""
        checked = self._check_result(trial, result)
        if checked is None:
            return self.CONTINUE
        t, value = checked
        state = self._state(trial)
        if t < self._burn_in or t - state.last_perturbation_time < self._interval:
            return self.CONTINUE
        state.last_score = metric_op(self._mode) * value
        state.last_train_time = t
        self._on_record(trial, t, state.last_score)
        if not self._synch:
            state.last_perturbation_time = t
            lower, upper = self._quantiles(tune_controller)
            decision = self.CONTINUE
            for other in tune_controller.get_trials():
                if other is not trial and other.status in _WAITING:
                    decision = self.PAUSE
                    break
            if self._exploit(tune_controller, trial, lower, upper, result):
                return self.NOOP
            return decision
        return self._synch_step(tune_controller, trial, t, result)

    def _synch_step(
        self, tune_controller: Any, trial: Trial, t: float, result: dict[str, Any]
    ) -> str:
        live = [x for x in tune_controller.get_trials() if x.status not in _FINISHED]
        if any(x is not trial and self._state(x).last_train_time < self._next_sync for x in live):
            return self.PAUSE
        lower, upper = self._quantiles(tune_controller)
        ranked = {x.trial_id for x in lower} | {x.trial_id for x in upper}
        middle = [x for x in live if x.trial_id not in ranked]
        exploited_self = False
        for other in [*upper, *middle, *lower]:
            self._state(other).last_perturbation_time = t
            own = result if other is trial else None
            if self._exploit(tune_controller, other, lower, upper, own) and other is trial:
                exploited_self = True
        latest = max(self._state(x).last_train_time for x in tune_controller.get_trials())
        self._next_sync = max(self._next_sync + self._interval, latest)
        return self.NOOP if exploited_self else self.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """Nothing to do: finished trials leave the quantiles by their status."""

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Nothing to do: removed trials leave the quantiles by their status."""

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The PENDING or PAUSED trial with the least training (in synch mode, below the
        next sync point); ties in creation order. Idempotent."""
        candidates = [
            x
            for x in tune_controller.get_trials()
            if x.status in _WAITING
            and (not self._synch or self._state(x).last_train_time < self._next_sync)
        ]
        if not candidates:
            return None
        chosen: Trial = min(candidates, key=lambda x: self._state(x).last_train_time)
        return chosen

    # ------------------------------------------------------------------ the rule
    def _check_result(self, trial: Trial, result: dict[str, Any]) -> tuple[float, float] | None:
        """``(time, metric value)``, or None to skip; raises MetricError when required."""
        assert self._metric is not None
        for key in (self._time_attr, self._metric):
            value = result.get(key)
            if _is_number(value):
                continue
            if key in result:
                problem = f"holds {type(value).__name__} {value!r}, not a number"
            else:
                problem = f"is missing; it reported {sorted(map(str, result))[:40]}"
            what = "time_attr" if key == self._time_attr else "metric"
            message = (
                f"{type(self).__name__}: the {what} {key!r} of trial {trial.trial_id}'s "
                f"result {problem}"
            )
            if self._require_attrs:
                raise MetricError(
                    message + f". Report it in every result, or pass "
                    f"{type(self).__name__}(require_attrs=False) to skip such results",
                    metric=key,
                    trial_id=trial.trial_id,
                )
            if key not in self._warned:
                self._warned.add(key)
                _log.warning(message + "; results without it are skipped", key=key)
            return None
        return float(result[self._time_attr]), float(result[self._metric])

    def _state(self, trial: Trial) -> _TrialState:
        if self._experiment_path is None:  # e.g. restored: trials are not added again
            self._experiment_path = getattr(trial, "experiment_path", None)
        state = self._trial_state.get(trial.trial_id)
        if state is None:  # not added (e.g. a result replayed on restore)
            state = self._trial_state[trial.trial_id] = _TrialState(trial.experiment_tag)
        return state

    def _on_record(self, trial: Trial, t: float, score: float) -> None:
        """A score was recorded at a perturbation point (PB2 keeps its data here)."""

    def _quantiles(self, tune_controller: Any) -> tuple[list[Trial], list[Trial]]:
        """The lower and upper quantiles (step 4 of the module docstring)."""
        scored = []
        for x in tune_controller.get_trials():
            state = self._trial_state.get(x.trial_id)
            if x.status in _FINISHED or state is None or state.last_score is None:
                continue
            if math.isnan(state.last_score):
                continue
            scored.append(x)
        scored.sort(key=lambda x: self._trial_state[x.trial_id].last_score or 0.0)
        if len(scored) <= 1:
            return [], []
        q = min(math.ceil(len(scored) * self._quantile_fraction), len(scored) // 2)
        return scored[:q], scored[len(scored) - q :]

    def _exploit(
        self,
        tune_controller: Any,
        trial: Trial,
        lower: list[Trial],
        upper: list[Trial],
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Exploit a donor if ``trial`` is in the lower quantile; True if it did.

        ``result`` is the result being decided on when ``trial`` reported it (the
        trial's ``last_result`` is the one before).
        """
        if not any(x is trial for x in lower):
            return False
        donors = [x for x in upper if x is not trial and x.checkpoints]
        if not donors:
            self._num_skipped += 1
            _log.info(
                f"[{self._policy_prefix}]: no trial of the upper quantile has a checkpoint; "
                f"skip exploit for trial {trial.trial_id}",
                trial_id=trial.trial_id,
                upper=[x.trial_id for x in upper],
            )
            return False
        donor = self._rng.choice(donors)
        new_config = self._new_config(trial, donor)
        if self._custom_explore_fn is not None:
            new_config = self._custom_explore_fn(new_config)
            if not isinstance(new_config, dict):
                raise TypeError(
                    f"custom_explore_fn must return the config dict, got {new_config!r}"
                )
        state, donor_state = self._state(trial), self._state(donor)
        checkpoint = donor.checkpoints[-1]
        tag = make_experiment_tag(state.orig_tag, new_config, self._mutations)
        if self._log_config:
            latest = result if result is not None else trial.last_result
            iteration = latest.get("training_iteration", 0)
            self._log_policy(trial, donor, iteration, checkpoint.training_iteration, new_config)
        tune_controller.exploit_trial(trial, donor=donor, config=new_config, experiment_tag=tag)
        self._num_perturbations += 1
        at = flatten_dict(checkpoint.metrics).get(self._time_attr)
        if isinstance(at, Real) and _is_number(at):
            state.last_perturbation_time = state.last_train_time = float(at)
        else:
            state.last_perturbation_time = donor_state.last_perturbation_time
            state.last_train_time = donor_state.last_train_time
        self._on_exploit(trial, donor, new_config)
        return True

    def _new_config(self, trial: Trial, donor: Trial) -> dict[str, Any]:
        """The donor's config, explored (PB2 overrides this)."""
        new_config, operations = explore(
            donor.config,
            self._mutations,
            rng=self._rng,
            resample_probability=self._resample_probability,
            perturbation_factors=self._factors,
            clip=self._clip,
        )
        _log.info(
            f"[{self._policy_prefix}] trial {trial.trial_id} exploits trial {donor.trial_id}",
            operations=operations,
        )
        return new_config

    def _on_exploit(self, trial: Trial, donor: Trial, new_config: dict[str, Any]) -> None:
        """A trial was exploited (PB2 records its new starting point here)."""

    # ------------------------------------------------------------------ policy log
    def _log_policy(
        self,
        trial: Trial,
        donor: Trial,
        iteration: Any,
        donor_iteration: int,
        new_config: dict[str, Any],
    ) -> None:
        line = policy_line(
            self._state(trial).orig_tag,
            self._state(donor).orig_tag,
            iteration,
            donor_iteration,
            donor.config,
            new_config,
        )
        self._global_lines.append(line)
        self._policies[trial.trial_id] = [*self._policies.get(donor.trial_id, []), line]
        self._changed.add(trial.trial_id)

    def policy(self, trial_id: str) -> list[str]:
        """The policy lines of a trial (its ``pbt_policy_<id>.txt``), a copy."""
        return list(self._policies.get(trial_id, []))

    def files_to_write(self) -> Callable[[], None] | None:
        """The writing of the policy log files changed since the last call, or None.

        Called on the event loop (it copies the lines); the returned function does the
        blocking I/O and is run in a worker thread by the driver at each flush.
        """
        path = self._experiment_path
        if not self._log_config or path is None or not self._changed:
            return None
        global_lines = list(self._global_lines)
        policies = {k: list(self._policies[k]) for k in self._changed if k in self._policies}
        self._changed = set()
        return functools.partial(
            write_policy_files, path, global_lines, policies, prefix=self._policy_prefix
        )

    def write_files(self, experiment_path: str | None = None) -> None:
        """Write every policy log file now (blocking).

        Args:
            experiment_path: Where to write; by default the experiment directory of the
                trials seen.
        """
        path = experiment_path or self._experiment_path
        if not self._log_config or path is None:
            return
        write_policy_files(path, self._global_lines, self._policies, prefix=self._policy_prefix)
        self._changed = set()

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """Per-trial state, the RNG, the sync point, the policy log, as JSON data."""
        version, internal, gauss = self._rng.getstate()
        return {
            "trials": {k: s.to_data() for k, s in self._trial_state.items()},
            "rng": [version, list(internal), gauss],
            "next_sync": self._next_sync,
            "num_perturbations": self._num_perturbations,
            "num_skipped": self._num_skipped,
            "global_lines": list(self._global_lines),
            "policies": {k: list(v) for k, v in self._policies.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data (of a scheduler built with the same args)."""
        self._trial_state = {str(k): _TrialState.from_data(v) for k, v in state["trials"].items()}
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._next_sync = float(state["next_sync"])
        self._num_perturbations = int(state["num_perturbations"])
        self._num_skipped = int(state["num_skipped"])
        self._global_lines = [str(x) for x in state["global_lines"]]
        self._policies = {str(k): [str(x) for x in v] for k, v in state["policies"].items()}
        self._changed = set(self._policies)  # rewritten at the next flush

    def debug_string(self) -> str:
        """One line: perturbations made and exploits skipped for want of a checkpoint."""
        return (
            f"{type(self).__name__}: {self._num_perturbations} perturbs, "
            f"{self._num_skipped} skipped (no donor checkpoint)"
        )
