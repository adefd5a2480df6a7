"""Asynchronous successive halving (ASHA): Ray Tune's stopping variant, and a promotion one.

Semantics (Ray Tune's rung rule, exactly):

* Bracket ``s`` (``0 <= s < brackets``) has ``K_s = int(np.log(max_t / grace_period) /
  np.log(reduction_factor) - s + 1)`` rungs at milestones ``grace_period *
  reduction_factor ** (k + s)``, ``k = 0..K_s-1``. The float expression is Ray's: with
  ``max_t=243, reduction_factor=3`` the log ratio is 4.999..., so the rung at 243 is
  dropped (it only matters with ``stop_last_trials=False``).
* A new trial joins bracket ``s`` with probability proportional to ``e^(K_s - max K)``,
  drawn from the scheduler's own ``random.Random(seed)`` (Ray uses the global numpy RNG).
* Per result: without ``time_attr`` or a numeric metric, CONTINUE. If ``result[time_attr]
  >= max_t`` and ``stop_last_trials``, STOP. Otherwise the milestones are walked from the
  highest: the highest one the trial reached and is not yet recorded at is evaluated:
  ``cutoff`` is the ``(1 - 1/reduction_factor)`` quantile (linear interpolation, NaNs
  ignored) of the scores already recorded there; the trial stops iff its score is
  strictly below the cutoff; its score is recorded either way. A rung with no (non-NaN)
  records has no cutoff.
* ``on_trial_complete`` records the last result the same way (this fills the rung at
  ``max_t``); the trial is then forgotten.

The stopping variant never pauses. ``promotion=True`` (atune's addition; Ray Tune has only
the stopping variant) pauses trials at the rungs and promotes the top ``1/reduction_factor``
instead, over the same rungs and brackets (its rules are in ``_asha_promotion.py``).

The whole state (rung records, bracket of each live trial, RNG, and the promotion
variant's) is JSON data (:meth:`get_state`/:meth:`set_state`), journaled so that
``Tuner.restore`` continues every rung.
"""

from __future__ import annotations

import bisect
import math
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from atune.schedulers._asha_promotion import Promotion
from atune.schedulers._common import (
    check_mode,
    check_number,
    check_reduction_factor,
    check_type,
    decode_float,
    encode_float,
    score_of,
)
from atune.schedulers._trial_scheduler import TrialScheduler

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler"]


class _Bracket:
    """One bracket: its rungs, highest milestone first, each with the scores recorded there.

    Each rung also keeps its non-NaN scores sorted, so that a cutoff costs a bisection
    and one interpolation rather than a copy and a sort of the rung (an ASHA study of
    thousands of trials computes one per rung a trial reaches).
    """

    def __init__(self, milestones: list[float], reduction_factor: float, stop_last_trials: bool):
        self.rungs: list[tuple[float, dict[str, float]]] = [(m, {}) for m in milestones]
        self._sorted: list[list[float]] = [[] for _ in milestones]
        self.quantile = (1 - 1 / reduction_factor) * 100
        self.stop_last_trials = stop_last_trials

    def record(self, rung: int, trial_id: str, score: float) -> None:
        """Record ``score`` at rung number ``rung`` (its position in :attr:`rungs`)."""
        self.rungs[rung][1][trial_id] = score
        if not math.isnan(score):
            bisect.insort(self._sorted[rung], score)

    def restore(self, rungs: list[dict[str, float]]) -> None:
        """Replace every rung's records (see ``set_state``)."""
        for (_, recorded), ordered, saved in zip(self.rungs, self._sorted, rungs, strict=True):
            recorded.clear()
            recorded.update(saved)
            ordered[:] = sorted(v for v in saved.values() if not math.isnan(v))

    def reached(self, t: float) -> tuple[float, dict[str, float]] | None:
        """The highest rung whose milestone ``t`` reached, or None."""
        for rung in self.rungs:
            if t >= rung[0]:
                return rung
        return None

    def on_result(self, trial_id: str, t: float, score: float) -> str:
        for rung, (milestone, recorded) in enumerate(self.rungs):
            if t >= milestone and trial_id in recorded and not self.stop_last_trials:
                break
            if t < milestone or trial_id in recorded:
                continue
            cutoff = _percentile(self._sorted[rung], self.quantile)
            self.record(rung, trial_id, score)
            if cutoff is not None and score < cutoff:
                return TrialScheduler.STOP
            break
        return TrialScheduler.CONTINUE


def _percentile(ordered: list[float], q: float) -> float | None:
    """``np.percentile(ordered, q)`` (its default, linear method) of sorted, non-NaN
    floats, computed as numpy computes it, operation for operation, so that the cutoff is
    the same float (None for no values).

    numpy takes the virtual index ``(n - 1) * (q / 100)``; past the last index the last
    value; else it interpolates between the two values around it with
    ``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` when ``g >= 0.5`` (its ``_lerp``).
    """
    n = len(ordered)
    if not n:
        return None
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return ordered[-1]
    below = math.floor(virtual)
    a, b = ordered[below], ordered[below + 1]
    gamma = virtual - below
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


class AsyncHyperBandScheduler(TrialScheduler):
    """ASHA: stop a trial whose score falls below the top ``1/reduction_factor`` at a rung.

    With ``promotion=True``, ASHA's promotion variant instead: a trial PAUSEs at each rung
    and resumes (from its pause checkpoint) only once it is in the top ``1/reduction_factor``
    of the scores recorded there; new trials start when no paused trial is promotable; at
    the end the trials that can no longer be promoted are stopped (the rules: "The
    promotion variant" in the scheduler docs). Trials must be resumable: a class trainable
    is saved at each pause, a function trainable must report checkpoints.

    Args:
        time_attr: The monotone result key that measures progress.
        metric: The result key to optimise (or set it in ``TuneConfig``).
        mode: ``"min"`` or ``"max"`` (or set it in ``TuneConfig``).
        max_t: Trials stop at ``time_attr >= max_t`` (with ``stop_last_trials``).
        grace_period: The first rung: no trial stops earlier.
        reduction_factor: Each rung keeps the top ``1/reduction_factor`` (must be > 1).
        brackets: How many brackets (at least 1).
        stop_last_trials: Stop trials at ``max_t``; False lets them run on.
        seed: Seeds the RNG that assigns brackets (atune's addition).
        promotion: Pause at rungs and promote instead of stopping (atune's addition; off
            by default, which is Ray Tune's rule exactly).

    Raises:
        ValueError: ``max_t <= 0``, ``grace_period <= 0``, ``grace_period > max_t``,
            ``reduction_factor <= 1``, ``brackets < 1`` or a bad ``mode``; the message
            names the parameter and its value.
        TypeError: one of them is not a number, or ``promotion`` is not a bool.
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
        seed: int | None = None,
        promotion: bool = False,
    ) -> None:
        check_number("max_t", max_t, positive=True)
        check_number("grace_period", grace_period, positive=True)
        check_number("brackets", brackets, integer=True)
        check_mode(mode)
        if grace_period > max_t:
            raise ValueError(f"grace_period ({grace_period!r}) must be <= max_t ({max_t!r})")
        check_reduction_factor(reduction_factor)
        if brackets < 1:
            raise ValueError(f"brackets must be >= 1, got {brackets!r}")
        check_type("time_attr", time_attr, str, "str")
        check_type("promotion", promotion, bool, "bool")
        super().__init__(metric, mode)
        self._args: dict[str, Any] = {
            "time_attr": time_attr,
            "metric": metric,
            "mode": mode,
            "max_t": max_t,
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
            "brackets": brackets,
            "stop_last_trials": stop_last_trials,
            "seed": seed,
            "promotion": promotion,
        }
        self._time_attr = time_attr
        self._max_t = max_t
        self._stop_last_trials = stop_last_trials
        self._rng = random.Random(seed)
        self._brackets: list[_Bracket] = []
        sizes: list[int] = []
        for s in range(brackets):
            count = int(np.log(max_t / grace_period) / np.log(reduction_factor) - s + 1)
            milestones = [grace_period * reduction_factor ** (k + s) for k in range(count)]
            self._brackets.append(_Bracket(milestones[::-1], reduction_factor, stop_last_trials))
            sizes.append(count)
        top = max(sizes)
        self._weights = [math.exp(k - top) for k in sizes]
        self._trial_info: dict[str, int] = {}
        self._num_stopped = 0
        self._promotion: Promotion | None = None
        if promotion:
            self._promotion = Promotion(self._rungs_of, reduction_factor)
            # An instance attribute: the stopping variant keeps the default choice (and
            # with it the controller's pipelining of new trials).
            self.choose_trial_to_run = self._choose_promoted  # type: ignore[method-assign]

    requires_metric = True

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, as JSON data (for ``experiment.json``)."""
        return dict(self._args)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Assign the trial a bracket (seeded draw; no draw with one bracket).

        With ``promotion``, a trial added again (for a retry) keeps its bracket.
        """
        if self._promotion is not None and trial.trial_id in self._trial_info:
            return
        if len(self._brackets) == 1:
            index = 0
        else:
            index = self._rng.choices(range(len(self._brackets)), weights=self._weights)[0]
        self._trial_info[trial.trial_id] = index

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """STOP at ``max_t`` or below a rung's cutoff; else CONTINUE (see the module doc)."""
        t = result.get(self._time_attr)
        score = score_of(result, self._metric, self._mode)
        if score is None or isinstance(t, bool) or not isinstance(t, (int, float)):
            return self.CONTINUE
        if self._promotion is not None:
            self._promotion.running(trial.trial_id)
        if t >= self._max_t and self._stop_last_trials:
            action = self.STOP
        elif self._promotion is not None:
            action = self._promote_or_pause(tune_controller, trial, t, score)
        else:
            action = self._bracket(trial.trial_id).on_result(trial.trial_id, t, score)
        if action == self.STOP:
            self._num_stopped += 1
        return action

    def _promote_or_pause(self, ctl: Any, trial: Trial, t: float, score: float) -> str:
        """The promotion variant's decision on a result below ``max_t`` (module doc)."""
        assert self._promotion is not None
        rung = self._bracket(trial.trial_id).reached(t)
        if rung is None or trial.trial_id in rung[1]:
            return self.CONTINUE  # below the first rung, or on its way to the next one
        rung[1][trial.trial_id] = score
        return self._promotion.decide(ctl, trial)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """Record the last result at its rung, then forget the trial.

        With ``promotion``: the last result is recorded at the highest milestone it
        reached (if not yet), and once nothing else runs, paused trials that can no
        longer be promoted are stopped.
        """
        t = result.get(self._time_attr)
        score = score_of(result, self._metric, self._mode)
        if score is not None and not isinstance(t, bool) and isinstance(t, (int, float)):
            if self._promotion is None:
                self._bracket(trial.trial_id).on_result(trial.trial_id, t, score)
            else:
                rung = self._bracket(trial.trial_id).reached(t)
                if rung is not None:
                    rung[1].setdefault(trial.trial_id, score)
        self._trial_info.pop(trial.trial_id, None)
        if self._promotion is not None:
            self._promotion.completed = True
            self._promotion.trial_left(tune_controller, trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Forget a removed trial (its rung records stay)."""
        self._trial_info.pop(trial.trial_id, None)
        if self._promotion is not None:
            self._promotion.trial_left(tune_controller, trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """With ``promotion``: a trial failed for good may leave only unpromotable ones."""
        if self._promotion is not None:
            self._promotion.trial_left(tune_controller, trial.trial_id)

    def _choose_promoted(self, tune_controller: Any) -> Trial | None:
        """With ``promotion``: the promotable paused trial of the highest rung (best
        first), else a new trial, else (every live trial paused) the best paused one."""
        assert self._promotion is not None
        return self._promotion.choose(tune_controller)

    def _rungs_of(self, trial_id: str) -> list[tuple[float, dict[str, float]]] | None:
        index = self._trial_info.get(trial_id)
        return None if index is None else self._brackets[index].rungs

    def _bracket(self, trial_id: str) -> _Bracket:
        index = self._trial_info.get(trial_id)
        if index is None:  # not added (e.g. a result replayed on restore): join bracket 0
            index = self._trial_info[trial_id] = 0
        return self._brackets[index]

    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        """Per bracket, its rungs (highest milestone first) and the scores recorded there.

        Scores are sign-adjusted (negated for ``mode="min"``). A copy.
        """
        return [[(m, dict(rec)) for m, rec in b.rungs] for b in self._brackets]

    def get_state(self) -> dict[str, Any]:
        """The scheduler's progress as JSON data (rung records, brackets of live trials, RNG).

        The RNG's state is kept only with several brackets (one bracket draws nothing).
        """
        state: dict[str, Any] = {
            "rungs": [
                [{k: encode_float(v) for k, v in rec.items()} for _, rec in b.rungs]
                for b in self._brackets
            ],
            "trial_info": dict(self._trial_info),
            "num_stopped": self._num_stopped,
        }
        if len(self._brackets) > 1:
            version, internal, gauss = self._rng.getstate()
            state["rng"] = [version, list(internal), gauss]
        if self._promotion is not None:
            state["promotion"] = self._promotion.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data (of a scheduler built with the same args)."""
        for bracket, rungs in zip(self._brackets, state["rungs"], strict=True):
            bracket.restore([{k: decode_float(v) for k, v in saved.items()} for saved in rungs])
        self._trial_info = {str(k): int(v) for k, v in state["trial_info"].items()}
        self._num_stopped = int(state["num_stopped"])
        if "rng" in state:
            version, internal, gauss = state["rng"]
            self._rng.setstate((version, tuple(internal), gauss))
        if self._promotion is not None:
            self._promotion.set_state(state.get("promotion", {}))

    def debug_string(self) -> str:
        """One line: how many trials it stopped and the rung sizes."""
        sizes = ", ".join(
            "/".join(f"{m:g}:{len(rec)}" for m, rec in b.rungs) for b in self._brackets
        )
        if self._promotion is None:
            return f"AsyncHyperBand: num_stopped={self._num_stopped} rungs=[{sizes}]"
        stopped = self._num_stopped + self._promotion.stopped
        return f"AsyncHyperBand (promotion): num_stopped={stopped} rungs=[{sizes}]"


ASHAScheduler = AsyncHyperBandScheduler
