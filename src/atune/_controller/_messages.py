"""What the controller's core takes in and gives out, besides the public events.

Messages in (:data:`Message`): the public events the driver observes, and the private
observations that need a decision first (:class:`TrainReturned`, :class:`RunnerFailed`),
or that come from outside the trials (:class:`StopAll`, :class:`CapacityChanged`).
Commands out (:data:`Command`): what the driver carries out for the core (launch, train,
save, release a runner, finish). All are frozen data, so a test writes them by hand.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from atune.events import Event
from atune.execution._protocol import ErrorInfo, TrainBudget, TrainOutcome

__all__ = [
    "CapacityChanged",
    "Command",
    "Finish",
    "Launch",
    "Message",
    "Release",
    "RunnerFailed",
    "Save",
    "StopAll",
    "Train",
    "TrainReturned",
]


class TrainReturned(msgspec.Struct, frozen=True, kw_only=True):
    """A runner's ``train()`` returned (results, then how it ended)."""

    ts: float
    trial_id: str
    outcome: TrainOutcome


class RunnerFailed(msgspec.Struct, frozen=True, kw_only=True):
    """Starting, training or saving a trial failed (user error or lost worker).

    ``restore_failed`` says the launch failed restoring ``checkpoint`` (its path), and
    ``checkpoint_corrupt`` that the checkpoint itself is damaged, not the user's code.
    """

    ts: float
    trial_id: str
    error: ErrorInfo
    retryable: bool = True
    restore_failed: bool = False
    checkpoint_corrupt: bool = False
    checkpoint: str | None = None


class StopAll(msgspec.Struct, frozen=True, kw_only=True):
    """End every live trial now (time budget, cancellation)."""

    ts: float
    reason: Literal["time_budget"]


class CapacityChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The cluster's total capacity is now ``capacity`` (nodes joined or left).

    Amounts are in the allocator's integer units (see
    :data:`~atune.execution._resources.UNITS_PER_RESOURCE`). The core recomputes how many
    trials may be live at once (:func:`~atune._controller._policy.live_trial_limit`) and
    creates trials up to the new limit; a smaller limit stops no trial, it only holds
    back new ones until enough have ended.
    """

    ts: float
    capacity: dict[str, int]


Message = Event | TrainReturned | RunnerFailed | StopAll | CapacityChanged


class Launch(msgspec.Struct, frozen=True, kw_only=True):
    """Acquire resources, start (or reuse) a runner, restore ``checkpoint`` if set, train.

    The first ``train`` runs in the same runner call as the start (one round trip per
    trial saved): the driver reports ``TrialStarted`` and then its ``TrainReturned``.
    """

    trial_id: str
    budget: TrainBudget
    checkpoint: str | None = None
    after: str | None = None
    """Queue the launch on the runner of this (running) trial: it starts there the moment
    that trial's function has returned, with no round trip in between; if the trial is
    still going, the runner declines and the launch takes a runner of its own."""
    delay_s: float = 0.0
    """Wait this long before acquiring resources (a retry's back-off, see
    :func:`~atune._controller._policy.retry_delay`). The driver sleeps; a stop of the trial meanwhile (time budget,
    ``stop_all``) ends the wait at once and the trial ends without being launched."""
    in_place: bool = False
    """The trial holds its runner (an exploit relaunches it): launch on that runner again
    (``reset_config`` then restore) when actors are reused; otherwise the pool stops it
    and starts a fresh one."""


class Train(msgspec.Struct, frozen=True, kw_only=True):
    """Run the trial within ``budget``."""

    trial_id: str
    budget: TrainBudget


class Save(msgspec.Struct, frozen=True, kw_only=True):
    """Commit checkpoint number ``index`` of a class trainable."""

    trial_id: str
    index: int


class Release(msgspec.Struct, frozen=True, kw_only=True):
    """Let go of the trial's runner: stop, cache for reuse, or kill it; free its lease."""

    trial_id: str
    kill: bool = False


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """The experiment is over."""


Command = Launch | Train | Save | Release | Finish
