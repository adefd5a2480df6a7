"""The median stopping rule (Vizier), as Ray Tune's ``MedianStoppingRule`` decides it.

Semantics, per result of a trial (skipped, CONTINUE, without ``time_attr`` or a numeric
metric):

* The result ``(t, score)`` joins the trial's history (scores are sign-adjusted: higher is
  better). If ``t < grace_period``: CONTINUE.
* The *others* are every trial, running or ended, whose latest recorded time is ``>= t``,
  except this one. For each, its running mean is the mean score of its results with
  ``grace_period <= time <= t``; non-finite means (no such result) are dropped.
* Fewer than ``min_samples_required`` means: CONTINUE (Ray Tune may PAUSE here to
  time-slice; atune does not pause yet, see ``docs/schedulers.md``).
* Otherwise the trial STOPs iff its best score so far is strictly below the median of those
  means; ties continue.

Trials that stopped early drop out of the *others* at later times (their latest time is
smaller), so the median can rise and stop a trial later. Unlike Ray Tune, a completed
trial's last result is not appended a second time. The state is JSON data
(:meth:`get_state`/:meth:`set_state`), journaled for ``Tuner.restore``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from atune.schedulers._common import (
    check_mode,
    check_number,
    check_type,
    decode_float,
    encode_float,
    score_of,
)
from atune.schedulers._trial_scheduler import TrialScheduler

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["MedianStoppingRule"]


class MedianStoppingRule(TrialScheduler):
    """Stop a trial whose best score is below the median of the others' running means.

    Args:
        time_attr: The monotone result key that measures progress.
        metric: The result key to optimise (or set it in ``TuneConfig``).
        mode: ``"min"`` or ``"max"`` (or set it in ``TuneConfig``).
        grace_period: No trial stops before ``time_attr`` reaches this (>= 0).
        min_samples_required: How many other trials' means a decision needs (>= 1).
        min_time_slice: Accepted for compatibility; it only matters for time-slicing
            pauses, which atune does not make yet.
        hard_stop: True (the default) stops a trial below the median; False pauses it
            instead, as Ray Tune does: it is resumed once no new trial waits (the
            default FIFO choice) and then runs to its end without being judged again.

    Raises:
        ValueError: a bad ``mode``, a negative ``grace_period`` or ``min_time_slice``,
            or ``min_samples_required < 1``; the message names the parameter and its
            value.
        TypeError: one of them is not a number.
    """

    requires_metric = True

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ) -> None:
        check_number("grace_period", grace_period)
        check_number("min_samples_required", min_samples_required, integer=True)
        check_number("min_time_slice", min_time_slice)
        check_mode(mode)
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0, got {grace_period!r}")
        if min_samples_required < 1:
            raise ValueError(f"min_samples_required must be >= 1, got {min_samples_required!r}")
        if min_time_slice < 0:
            raise ValueError(f"min_time_slice must be >= 0, got {min_time_slice!r}")
        check_type("hard_stop", hard_stop, bool, "bool")
        check_type("time_attr", time_attr, str, "str")
        super().__init__(metric, mode)
        self._args: dict[str, Any] = {
            "time_attr": time_attr,
            "metric": metric,
            "mode": mode,
            "grace_period": grace_period,
            "min_samples_required": min_samples_required,
            "min_time_slice": min_time_slice,
            "hard_stop": hard_stop,
        }
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples = min_samples_required
        self._hard_stop = hard_stop
        self._history: dict[str, list[tuple[float, float]]] = {}
        self._num_stopped = 0
        self._paused: set[str] = set()  # judged below the median with hard_stop=False

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, as JSON data (for ``experiment.json``)."""
        return dict(self._args)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """STOP (or PAUSE) when the trial's best is below the median of the others."""
        if trial.trial_id in self._paused:  # judged once: a resumed trial runs to its end
            return self.CONTINUE
        if not self._record(trial.trial_id, result):
            return self.CONTINUE
        t, _ = self._history[trial.trial_id][-1]
        if t < self._grace_period:
            return self.CONTINUE
        means = []
        for other, history in self._history.items():
            if other == trial.trial_id or history[-1][0] < t:
                continue
            window = [s for time, s in history if self._grace_period <= time <= t]
            mean = float(np.mean(window)) if window else math.nan
            if math.isfinite(mean):
                means.append(mean)
        if len(means) < self._min_samples:
            return self.CONTINUE
        best = max(s for _, s in self._history[trial.trial_id])
        if best < float(np.median(means)):
            self._num_stopped += 1
            if self._hard_stop:
                return self.STOP
            self._paused.add(trial.trial_id)
            return self.PAUSE
        return self.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """Keep the last result (once: Ray Tune appends it a second time)."""
        history = self._history.get(trial.trial_id)
        t = result.get(self._time_attr)
        if history and history[-1][0] == t:
            return
        self._record(trial.trial_id, result)

    def _record(self, trial_id: str, result: dict[str, Any]) -> bool:
        t = result.get(self._time_attr)
        score = score_of(result, self._metric, self._mode)
        if score is None or isinstance(t, bool) or not isinstance(t, (int, float)):
            return False
        self._history.setdefault(trial_id, []).append((float(t), score))
        return True

    def get_state(self) -> dict[str, Any]:
        """Every trial's recorded ``(time, score)`` history, as JSON data."""
        return {
            "history": {
                tid: [[encode_float(t), encode_float(s)] for t, s in points]
                for tid, points in self._history.items()
            },
            "num_stopped": self._num_stopped,
            "paused": sorted(self._paused),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data."""
        self._history = {
            str(tid): [(decode_float(t), decode_float(s)) for t, s in points]
            for tid, points in state["history"].items()
        }
        self._num_stopped = int(state["num_stopped"])
        self._paused = {str(tid) for tid in state.get("paused", [])}

    def debug_string(self) -> str:
        """One line: how many trials it stopped."""
        return f"MedianStoppingRule: num_stopped={self._num_stopped}"
