"""Synchronous HyperBand, Ray Tune's ``HyperBandScheduler``: it pauses trials at milestones.

Semantics (Ray Tune 2.x, exactly, except where noted):

* ``s_max_1 = int(round(log(max_t) / log(eta))) + 1``. Bracket ``s`` holds up to ``n0(s) =
  ceil(s_max_1 / (s + 1) * eta**s)`` trials with a first milestone ``r0(s) = int(max_t *
  eta**-s)``; a bracket with ``r0 == 0`` is skipped. Brackets fill in the order ``s = 0, 1,
  ..., s_max_1 - 1`` (the first one runs its trials straight to ``max_t``); a *band* is
  ``s_max_1`` brackets, and a new band starts when one is full. With ``max_t=9, eta=3``:
  brackets ``(n, r) = (3, 9), (5, 3), (9, 1)``, 17 trials per band.
* Trials join the current bracket in creation order (``on_trial_add``) until it holds
  ``n`` live trials.
* Per result: the bracket records it; if the trial's ``time_attr`` is below the bracket's
  milestone, CONTINUE. Otherwise, while some live trial of the bracket has not reached
  the milestone, PAUSE (the trial is checkpointed and releases its resources). When all
  have: a bracket that is finished (no halving left, ``stop_last_trials``) STOPs the trial
  and stops every paused one; otherwise successive halving: ``n = ceil(n / eta)``, the
  milestone becomes ``int(min(r * eta, max_t))``, the ``n`` best live trials (by the
  sign-adjusted score of their last result) go on (the paused ones are marked to resume,
  the current one CONTINUEs) and the others stop.
* ``choose_trial_to_run``: over bands in order, brackets by completion (progress over
  total work), the first trial marked to resume.
* A trial that completes, errors or is removed leaves its bracket, which is then
  processed again: paused trials waiting only on it go on.

What atune does differently, and why:

* Never a hang (Ray Tune issues #6780, #14500): PAUSED trials hold no resources and do
  not count against ``max_concurrent_trials``, and a bracket is re-processed every time a
  trial leaves it (Ray Tune stops re-processing it after its first halving, so a trial
  that fails later can leave the others paused forever, and a finished bracket's paused
  trials were never stopped). An unfilled bracket proceeds with the trials it has, as in
  Ray Tune.
* Bad input is a ``ValueError``/``TypeError`` naming the parameter, not an assert.
* A result without ``time_attr`` is ignored (CONTINUE; Ray Tune raises ``KeyError``), and
  one without a numeric metric ranks last at a halving.
* The whole state is JSON data (:meth:`get_state`/:meth:`set_state`), journaled, so
  ``Tuner.restore`` continues every bracket where it was.

Function trainables must report checkpoints (``report(..., checkpoint=...)``) to resume
where they paused; without one a paused trial starts over (atune logs one warning).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

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

__all__ = ["HyperBandScheduler"]


class _Bracket:
    """One bracket: its live trials' last ``(time, score)`` and its halving schedule."""

    def __init__(
        self, s: int, n0: int, r0: int, max_t: float, eta: float, stop_last_trials: bool
    ) -> None:
        self.s = s
        self.n = n0
        self.r = r0
        self.cumul_r = r0
        self.halves = s
        self.max_t = max_t
        self.eta = eta
        self.stop_last_trials = stop_last_trials
        # trial id -> [time, score] of its last result; None before its first one.
        self.live: dict[str, list[float] | None] = {}
        self.to_unpause: set[str] = set()
        self.progress = 0.0
        self.total_work = _total_work(n0, r0, s, eta, max_t)

    def filled(self) -> bool:
        return len(self.live) == self.n

    def time_of(self, trial_id: str) -> float:
        record = self.live[trial_id]
        return 0.0 if record is None else record[0]

    def cur_iter_done(self) -> bool:
        return all(self.time_of(t) >= self.cumul_r for t in self.live)

    def finished(self) -> bool:
        return self.stop_last_trials and self.halves == 0 and self.cur_iter_done()

    def continue_trial(self, trial_id: str) -> bool:
        if not self.stop_last_trials and self.halves == 0:
            return True
        return self.time_of(trial_id) < self.cumul_r

    def update(self, trial_id: str, t: float, score: float | None) -> None:
        self.progress += t - self.time_of(trial_id)
        self.live[trial_id] = [t, -math.inf if score is None or math.isnan(score) else score]
        self.to_unpause.discard(trial_id)

    def halve(self) -> tuple[list[str], list[str]]:
        """Successive halving: (good, bad) live trials; the schedule moves on."""
        if self.halves == 0 and not self.stop_last_trials:
            return list(self.live), []
        self.halves -= 1
        self.n = math.ceil(self.n / self.eta)
        self.r = int(min(self.r * self.eta, self.max_t))
        self.cumul_r = self.r
        ranked = sorted(self.live, key=lambda t: _score(self.live[t]))
        cut = len(ranked) - self.n
        return ranked[max(cut, 0) :], ranked[: max(cut, 0)]

    def completion(self) -> float:
        if self.finished():
            return 1.0
        return min(self.progress / self.total_work, 1.0) if self.total_work else 1.0

    def to_data(self) -> dict[str, Any]:
        return {
            "s": self.s,
            "n": self.n,
            "r": self.r,
            "cumul_r": self.cumul_r,
            "halves": self.halves,
            "live": {
                t: None if rec is None else [encode_float(rec[0]), encode_float(rec[1])]
                for t, rec in self.live.items()
            },
            "to_unpause": sorted(self.to_unpause),
            "progress": encode_float(self.progress),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.n, self.r, self.cumul_r = int(data["n"]), int(data["r"]), int(data["cumul_r"])
        self.halves = int(data["halves"])
        self.live = {
            str(t): None if rec is None else [decode_float(rec[0]), decode_float(rec[1])]
            for t, rec in data["live"].items()
        }
        self.to_unpause = set(data["to_unpause"])
        self.progress = decode_float(data["progress"])


def _score(record: list[float] | None) -> float:
    return -math.inf if record is None else record[1]


def _total_work(n: float, r: float, s: int, eta: float, max_t: float) -> int:
    """Ray Tune's estimate of a bracket's work (it orders ``choose_trial_to_run``)."""
    work = 0
    first = r
    for _ in range(s + 1):
        work += int(n) * int(r)
        n = math.ceil(n / eta)
        r = int(min(r * eta, max_t - first))
    return work


class HyperBandScheduler(TrialScheduler):
    """Synchronous HyperBand: successive halving in brackets, pausing trials at milestones.

    See the module docstring for the exact rules. Trials must be resumable: a class
    trainable is checkpointed at each pause; a function trainable resumes from the last
    checkpoint it reported (without one it starts over, and atune warns once).

    Args:
        time_attr: The monotone result key that measures progress.
        metric: The result key to optimise (or set it in ``TuneConfig``).
        mode: ``"min"`` or ``"max"`` (or set it in ``TuneConfig``).
        max_t: The most ``time_attr`` a trial gets; trials stop there (with
            ``stop_last_trials``).
        reduction_factor: ``eta``: each halving keeps ``1/reduction_factor`` of a bracket.
        stop_last_trials: Stop trials once their bracket is done at ``max_t``; False lets
            the last ones run on (a stopper must end them).

    Raises:
        ValueError: ``max_t <= 0``, ``reduction_factor <= 1`` or a bad ``mode``; the
            message names the parameter and its value.
        TypeError: one of them is not a number, or ``time_attr`` is not a str.
    """

    requires_metric = True

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ) -> None:
        check_number("max_t", max_t, positive=True)
        check_reduction_factor(reduction_factor)
        check_mode(mode)
        check_type("time_attr", time_attr, str, "str")
        super().__init__(metric, mode)
        self._args: dict[str, Any] = {
            "time_attr": time_attr,
            "metric": metric,
            "mode": mode,
            "max_t": max_t,
            "reduction_factor": reduction_factor,
            "stop_last_trials": stop_last_trials,
        }
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = reduction_factor
        self._stop_last_trials = bool(stop_last_trials)
        self._s_max_1 = round(math.log(max_t) / math.log(reduction_factor)) + 1
        self._bands: list[list[_Bracket | None]] = [[]]
        self._current: tuple[int, int] | None = None  # (band, index) trials join
        self._trial_info: dict[str, tuple[int, int]] = {}
        self._num_stopped = 0

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, as JSON data (for ``experiment.json``)."""
        return dict(self._args)

    # ------------------------------------------------------------------ brackets
    def _n0(self, s: int) -> int:
        return math.ceil(self._s_max_1 / (s + 1) * self._eta**s)

    def _r0(self, s: int) -> int:
        return int(self._max_t * self._eta ** (-s))

    def _new_bracket(self, s: int) -> _Bracket:
        return _Bracket(s, self._n0(s), self._r0(s), self._max_t, self._eta, self._stop_last_trials)

    def _bracket_at(self, place: tuple[int, int]) -> _Bracket:
        bracket = self._bands[place[0]][place[1]]
        assert bracket is not None
        return bracket

    def brackets(self) -> list[list[dict[str, Any] | None]]:
        """Per band, its brackets as data (``None`` for a skipped one): ``n``, the milestone
        ``cumul_r``, the halvings left and the live trials' last ``[time, score]``."""
        return [[b.to_data() if b is not None else None for b in band] for band in self._bands]

    # ------------------------------------------------------------------ hooks
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Add the trial to the current bracket; open the next bracket (or band) when full."""
        if trial.trial_id in self._trial_info:  # re-added for a retry: it keeps its place
            return
        if self._current is None or self._bracket_at(self._current).filled():
            while True:
                band = self._bands[-1]
                if len(band) == self._s_max_1:
                    band = []
                    self._bands.append(band)
                s = len(band)
                if self._r0(s) == 0:  # "bracket too small": skipped
                    band.append(None)
                    continue
                band.append(self._new_bracket(s))
                self._current = (len(self._bands) - 1, s)
                break
        assert self._current is not None
        self._bracket_at(self._current).live[trial.trial_id] = None
        self._trial_info[trial.trial_id] = self._current

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """Record the result; CONTINUE below the milestone, else PAUSE, halve or STOP."""
        place = self._trial_info.get(trial.trial_id)
        t = result.get(self._time_attr)
        if place is None or isinstance(t, bool) or not isinstance(t, (int, float)):
            return self.CONTINUE
        bracket = self._bracket_at(place)
        if trial.trial_id not in bracket.live:
            return self.CONTINUE
        bracket.update(trial.trial_id, float(t), score_of(result, self._metric, self._mode))
        if bracket.continue_trial(trial.trial_id):
            return self.CONTINUE
        return self._process(tune_controller, bracket, trial.trial_id)

    def _process(self, ctl: Any, bracket: _Bracket, current: str | None) -> str:
        """Halve the bracket once every live trial reached its milestone.

        ``current`` is the trial decided on (running); every other live trial of the
        bracket is paused (or pausing) by then.
        """
        action = self.PAUSE
        if not bracket.live or not bracket.cur_iter_done():
            return action
        trials = {t.trial_id: t for t in ctl.get_live_trials()}
        if bracket.finished():
            for trial_id in list(bracket.live):
                if trial_id != current and trial_id in trials:
                    ctl.stop_trial(trials[trial_id])
            return self.STOP
        good, bad = bracket.halve()
        self._num_stopped += len(bad)
        for trial_id in bad:
            if trial_id == current:
                bracket.live.pop(trial_id, None)
                action = self.STOP
            elif trial_id in trials:
                ctl.stop_trial(trials[trial_id])
        for trial_id in good:
            if bracket.continue_trial(trial_id):
                if trial_id == current:
                    action = self.CONTINUE
                else:
                    bracket.to_unpause.add(trial_id)
            elif bracket.finished():
                if trial_id == current:
                    bracket.live.pop(trial_id, None)
                    action = self.STOP
                elif trial_id in trials:
                    ctl.stop_trial(trials[trial_id])
        return action

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Drop the trial from its bracket, then process the bracket again."""
        place = self._trial_info.pop(trial.trial_id, None)
        if place is None:
            return
        bracket = self._bracket_at(place)
        bracket.live.pop(trial.trial_id, None)
        bracket.to_unpause.discard(trial.trial_id)
        self._process(tune_controller, bracket, None)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """As :meth:`on_trial_remove`."""
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """As :meth:`on_trial_remove` (a retried trial is added again)."""
        self.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """Per band, brackets least complete first: the first PENDING trial, or PAUSED one
        marked to resume (Ray Tune's rule)."""
        live = {t.trial_id: t for t in tune_controller.get_live_trials()}
        for band in self._bands:
            for bracket in sorted((b for b in band if b is not None), key=_Bracket.completion):
                for trial_id in bracket.live:
                    trial = live.get(trial_id)
                    if trial is None:
                        continue
                    if trial.status == "PENDING" or (
                        trial.status == "PAUSED" and trial_id in bracket.to_unpause
                    ):
                        return trial  # type: ignore[no-any-return]
        return None

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """Every band's brackets, the trials' places and the bracket trials join, as JSON."""
        return {
            "bands": self.brackets(),
            "current": list(self._current) if self._current is not None else None,
            "trial_info": {t: list(p) for t, p in self._trial_info.items()},
            "num_stopped": self._num_stopped,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data (of a scheduler built with the same args)."""
        self._bands = []
        for band_data in state["bands"]:
            band: list[_Bracket | None] = []
            for data in band_data:
                if data is None:
                    band.append(None)
                    continue
                bracket = self._new_bracket(int(data["s"]))
                bracket.load(data)
                band.append(bracket)
            self._bands.append(band)
        current = state["current"]
        self._current = None if current is None else (int(current[0]), int(current[1]))
        self._trial_info = {str(t): (int(p[0]), int(p[1])) for t, p in state["trial_info"].items()}
        self._num_stopped = int(state["num_stopped"])

    def debug_string(self) -> str:
        """One line per bracket: its size, milestone, completion and live trials."""
        lines = [
            f"Using HyperBand: num_stopped={self._num_stopped} "
            f"total_brackets={sum(len(band) for band in self._bands)}"
        ]
        for i, band in enumerate(self._bands):
            lines.append(f"Round #{i}:")
            for bracket in band:
                if bracket is not None:
                    lines.append(
                        f"  Bracket(Max Size (n)={bracket.n}, Milestone (r)={bracket.cumul_r}, "
                        f"completed={bracket.completion():.1%}): {len(bracket.live)} live"
                    )
        return "\n".join(lines)
