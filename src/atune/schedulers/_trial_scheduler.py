"""The scheduler interface and the default FIFO scheduler.

A scheduler is a decision function over results: for each result of a running trial it
answers CONTINUE, PAUSE or STOP. It never performs I/O or reads a clock; the controller
carries out its decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["FIFOScheduler", "TrialScheduler"]


class TrialScheduler:
    """Base class of trial schedulers (Ray Tune's interface).

    Hooks receive the controller (``tune_controller``) first for compatibility with Ray
    Tune schedulers; it offers ``get_trials()``, ``get_live_trials()``,
    ``pause_trial(trial)``, ``stop_trial(trial)`` and ``exploit_trial(trial, *, donor,
    config, experiment_tag=None)``. Those actions take effect right after the hook
    returns, and each is journaled, so a replay reproduces it.

    ``on_trial_result`` answers ``CONTINUE``, ``PAUSE`` (checkpoint the trial, release its
    runner, resume it later from that checkpoint when :meth:`choose_trial_to_run` picks
    it), ``STOP`` or ``NOOP`` (the hook already acted on the trial, e.g. paused it).
    """

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    #: Whether the controller may hand this scheduler results in batches. Schedulers that
    #: decide per result keep the default False, so every result is a lock-step decision.
    supports_buffered_results = False

    #: Whether the scheduler needs a metric and a mode: the experiment then refuses to start
    #: until both are set (on the scheduler or in ``TuneConfig``).
    requires_metric = False

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        """The metric this scheduler optimises."""
        return self._metric

    @property
    def mode(self) -> str | None:
        """``"min"`` or ``"max"``."""
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Receive the experiment's metric and mode; False if already set differently."""
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A trial was created."""

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """A trial failed (it may be retried)."""

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """Decide on one (flattened) result: CONTINUE, PAUSE or STOP."""
        return self.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """A trial ended normally; ``result`` is its last (flattened) result."""

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """A PENDING or PAUSED trial was removed."""

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The PAUSED (or PENDING) trial to start when there is room, or None.

        The default is Ray Tune's FIFO rule: the first PENDING trial, else the first
        PAUSED one, in creation order. The controller calls it whenever a trial may start
        and paused trials wait; it must not change the scheduler's state (it may be asked
        several times). A trial that is not PAUSED (one already being launched, whose
        status is PENDING until it starts) is started by the controller anyway, so the
        answer then only means "none of the paused ones yet"; the controller asks again
        after its next event. A scheduler that leaves paused trials waiting while nothing
        runs fails the experiment with an error naming it (never a hang).
        """
        trials = tune_controller.get_trials()
        for status in ("PENDING", "PAUSED"):
            for trial in trials:
                if trial.status == status:
                    return trial  # type: ignore[no-any-return]
        return None

    def debug_string(self) -> str:
        """One line describing the scheduler's state."""
        return type(self).__name__

    def get_state(self) -> dict[str, Any] | None:
        """The scheduler's progress as JSON data, journaled for ``Tuner.restore``.

        None (the default) when there is nothing to keep.
        """
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`get_state` returned in an earlier run."""


class FIFOScheduler(TrialScheduler):
    """Runs trials in creation order and never stops one early (the default)."""

    supports_buffered_results = True
