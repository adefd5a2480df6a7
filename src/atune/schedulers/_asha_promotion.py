"""ASHA's promotion variant: pause at each rung, promote the top ``1/reduction_factor``.

Opt-in, with ``AsyncHyperBandScheduler(..., promotion=True)``; the default keeps Ray Tune's
stopping rule. The rungs, brackets and their seeded draw are the stopping variant's; what
changes is what happens at a rung (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", Algorithm 2; Syne Tune's ``type="promotion"``):

* **At a rung.** A trial whose ``time_attr`` reaches a milestone it is not recorded at (the
  highest one it reached) has its score recorded there, then PAUSEs, unless it is at once
  the trial that would be promoted next (see below), in which case it CONTINUEs (the same
  decision without a pause and a resume). ``time_attr >= max_t`` STOPs it, as in the
  stopping variant (with ``stop_last_trials``). No trial is ever stopped by a cutoff.
* **Promotable.** A paused trial is promotable when its score is among the best
  ``floor(n / reduction_factor)`` of the ``n`` scores recorded at its rung (NaN never is;
  ties: the earlier record first). It then resumes from its pause checkpoint and runs to
  its next milestone.
* **Whenever a trial may start** (``choose_trial_to_run``): the promotable paused trial of
  the highest rung (best score first, then creation order); else a new (PENDING) trial;
  else, while other trials run, none (their results may make one promotable); else, when
  every live trial is paused, the best paused trial of the highest rung even though it is
  not promotable (the experiment must go on: a rung may have too few records for anyone to
  be in its top ``1/reduction_factor``).
* **The end.** Once some trial has completed (reached ``max_t`` or ended on its own), and
  nothing runs or waits to start and no paused trial is promotable, no paused trial can
  ever be promoted: they are all stopped (``stop_trial``), so the experiment ends. Before
  any trial has completed, the rule above promotes the best candidate instead, so at least
  one trial is trained to the end.

With 9 trials run one at a time, ``grace_period=1, reduction_factor=3, max_t=9``, this is
synchronous successive halving's outcome: 3 trials reach 3, one reaches 9, the rest stop at
1 (the stopping variant lets 3 trials reach 9, among them the first, which has no one to be
compared with).

The state added to the stopping variant's is JSON data: whether a trial has completed and
the trials the scheduler decided to pause that it has not seen paused yet. A paused
trial's rung is the highest milestone it is recorded at, so the rung records are the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["Promotion", "Rung"]

Rung = tuple[float, dict[str, float]]
"""A rung: its milestone and the (sign-adjusted) scores recorded there, in record order."""

_PAUSED = "PAUSED"
_RUNNING = "RUNNING"
_PENDING = "PENDING"


class Promotion:
    """The promotion variant's bookkeeping and decisions over a scheduler's rung records.

    Args:
        rungs_of: Maps a trial id to its bracket's rungs (highest milestone first), or
            None for a trial the scheduler does not know.
        reduction_factor: Promotable: the top ``1/reduction_factor`` of a rung.
    """

    def __init__(
        self, rungs_of: Callable[[str], list[Rung] | None], reduction_factor: float
    ) -> None:
        self._rungs_of = rungs_of
        self._eta = float(reduction_factor)
        # Trials decided to PAUSE and not yet seen PAUSED (their status is RUNNING while
        # they are saved): they count as waiting, not as running.
        self.pausing: dict[str, None] = {}
        self.completed = False
        self.stopped = 0  # trials stopped at the end (``stop_all``)
        # Trials asked to stop and not yet gone (the stop is carried out after the hook);
        # not state: it only keeps the hooks of those stops from asking again.
        self._stopping: set[str] = set()
        # id(recorded dict) -> (how many records, ids in its top 1/eta): records are only
        # ever added, so the count says whether the cached top is current.
        self._tops: dict[int, tuple[int, frozenset[str]]] = {}

    # ---------------------------------------------------------------- rung arithmetic
    def rung_of(self, trial_id: str) -> Rung | None:
        """The highest rung ``trial_id`` is recorded at (where it pauses), or None."""
        rungs = self._rungs_of(trial_id)
        for rung in rungs or ():
            if trial_id in rung[1]:
                return rung
        return None

    def top(self, recorded: dict[str, float]) -> frozenset[str]:
        """The trials among the best ``floor(n / eta)`` of ``recorded`` (NaN never)."""
        cached = self._tops.get(id(recorded))
        if cached is not None and cached[0] == len(recorded):
            return cached[1]
        k = math.floor(len(recorded) / self._eta + 1e-9)
        ranked = sorted(
            (t for t, s in recorded.items() if not math.isnan(s)),
            key=lambda t: -recorded[t],  # stable: the earlier record first among ties
        )
        top = frozenset(ranked[:k])
        self._tops[id(recorded)] = (len(recorded), top)
        return top

    def promotable(self, trial_id: str) -> bool:
        """Whether the trial is in the top ``1/eta`` of the rung it waits at."""
        rung = self.rung_of(trial_id)
        return rung is not None and trial_id in self.top(rung[1])

    def rank(self, trial: Trial) -> tuple[float, float, int]:
        """Sort key, larger first: higher rung, better score, earlier trial."""
        rung = self.rung_of(trial.trial_id)
        if rung is None:
            return (-math.inf, -math.inf, -trial.index)
        score = rung[1][trial.trial_id]
        return (rung[0], -math.inf if math.isnan(score) else score, -trial.index)

    def best(self, trials: list[Trial], *, promotable_only: bool) -> Trial | None:
        """The highest-ranked of ``trials`` (only promotable ones if asked), or None."""
        pool = [t for t in trials if not promotable_only or self.promotable(t.trial_id)]
        return max(pool, key=self.rank) if pool else None

    # --------------------------------------------------------------- the controller
    def waiting(self, ctl: Any, exclude: str) -> tuple[list[Trial], bool]:
        """The live trials waiting at a rung, and whether any other live trial is active.

        Waiting: PAUSED, or decided to pause and not yet paused. Active: running (or
        launching, resumed or new); a new trial may become promotable or reach ``max_t``.
        """
        waiting: list[Trial] = []
        active = False
        still_pausing: dict[str, None] = {}
        live: list[Trial] = ctl.get_live_trials()
        for trial in live:
            trial_id = trial.trial_id
            if trial_id == exclude or trial_id in self._stopping:
                continue
            status = trial.status
            if status == _PAUSED:
                waiting.append(trial)
            elif status == _RUNNING and trial_id in self.pausing:
                waiting.append(trial)
                still_pausing[trial_id] = None
            else:
                active = True
        # A trial seen PAUSED (or resumed, or gone) is no longer "deciding to pause".
        self.pausing = still_pausing
        return waiting, active

    def decide(self, ctl: Any, trial: Trial) -> str:
        """``trial`` was just recorded at a rung: CONTINUE, PAUSE or STOP (the end)."""
        trial_id = trial.trial_id
        waiting, active = self.waiting(ctl, trial_id)
        candidates = [*waiting, trial]
        chosen = self.best(candidates, promotable_only=True)
        if chosen is None and not active:
            if not self.completed:
                chosen = self.best(candidates, promotable_only=False)
            else:
                self.stop_all(ctl, waiting)
                return "STOP"
        if chosen is trial:
            return "CONTINUE"
        self.pausing[trial_id] = None
        return "PAUSE"

    def trial_left(self, ctl: Any, trial_id: str) -> None:
        """``trial_id`` ended (or failed): at the end, stop the trials that cannot go on."""
        self.pausing.pop(trial_id, None)
        self._stopping.discard(trial_id)
        if not self.completed:
            return  # ``choose`` promotes the best candidate once every trial waits
        waiting, active = self.waiting(ctl, trial_id)
        if waiting and not active and self.best(waiting, promotable_only=True) is None:
            self.stop_all(ctl, waiting)

    def stop_all(self, ctl: Any, waiting: list[Trial]) -> None:
        """Ask the controller to stop every trial of ``waiting`` (none can go on)."""
        for trial in waiting:
            self._stopping.add(trial.trial_id)
            self.stopped += 1
            self.pausing.pop(trial.trial_id, None)
            ctl.stop_trial(trial)

    def running(self, trial_id: str) -> None:
        """``trial_id`` reported a result: it is not pausing (or stopping)."""
        self.pausing.pop(trial_id, None)
        self._stopping.discard(trial_id)

    def choose(self, ctl: Any) -> Trial | None:
        """The trial to start: promotable, else new, else (all paused) the best paused."""
        live: list[Trial] = ctl.get_live_trials()
        paused = [t for t in live if t.status == _PAUSED]
        chosen = self.best(paused, promotable_only=True)
        if chosen is not None:
            return chosen
        for trial in live:
            if trial.status == _PENDING:
                return trial
        if len(paused) < len(live):
            return None  # something runs (or is being paused): wait for it
        return self.best(paused, promotable_only=False)

    # -------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """This variant's state as JSON data (the rung records are the scheduler's)."""
        return {"pausing": list(self.pausing), "completed": self.completed, "stopped": self.stopped}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data."""
        self.pausing = {str(t): None for t in state.get("pausing", ())}
        self.completed = bool(state.get("completed", False))
        self.stopped = int(state.get("stopped", 0))
        self._stopping.clear()
        self._tops.clear()
