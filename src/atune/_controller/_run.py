"""The core's private record of where each trial is in its run: an explicit phase.

:class:`~atune._trial.Trial` is the experiment's record of a trial, set only by events
(what the journal replays), and is what schedulers and callbacks see. What the core needs
to drive a trial from message to message (which call is outstanding, why it is stopping,
whether it holds a runner, the pipelining links) is here instead, one
:class:`TrialRun` per trial, never journaled: a replay starts every trial from a fresh
record, so nothing is reset by hand.

Phases (a trial moves along the arrows; ``IDLE`` never outlives one message)::

    PENDING --Launch--> LAUNCHING --(first batch returned)--> IDLE
    IDLE --Train--> TRAINING --(returned)--> IDLE
    IDLE --Save--> SAVING --(saved)--> IDLE
    IDLE / LAUNCHING (failed, retried) --Launch--> LAUNCHING
    (ended) --> RELEASING (runner still held) --ActorFreed--> ENDED
    IDLE (pause decided; a class trainable saved first) --TrialPaused--> PAUSED
    PAUSED --TrialResumed, Launch--> LAUNCHING

A PAUSED trial releases its runner (``holds_runner`` until its ``ActorFreed``) and then
holds no runner and no resources, and does not count against the live-trial limit; the
scheduler's ``choose_trial_to_run`` decides when it is launched again, from its
checkpoint. A change of config between two runs (an exploit) is recorded state (an event
setting ``Trial.config``), not part of this record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Phase", "TrialRun"]


class Phase(enum.Enum):
    """Where a trial is in its run (see the module docstring)."""

    PENDING = "pending"
    """Created (or restored to resume), not launched yet."""
    LAUNCHING = "launching"
    """A ``Launch`` is outstanding: resources, a runner, set-up and the first batch."""
    TRAINING = "training"
    """A ``Train`` is outstanding."""
    IDLE = "idle"
    """Its last call returned; the core is deciding the next step within this message."""
    SAVING = "saving"
    """A ``Save`` is outstanding."""
    PAUSED = "paused"
    """Paused by the scheduler: no call outstanding; once its runner is freed it holds no
    runner and no resources, and waits to be launched again from its checkpoint."""
    RELEASING = "releasing"
    """Ended; its runner is being let go of (no ``ActorFreed`` yet)."""
    ENDED = "ended"
    """Ended and holding no runner."""


#: Phases in which a command for the trial is outstanding.
_IN_CALL = frozenset((Phase.LAUNCHING, Phase.TRAINING, Phase.SAVING))


@dataclass
class TrialRun:
    """The core's bookkeeping for one trial (never seen by schedulers or callbacks).

    Attributes:
        phase: See :class:`Phase`.
        stop_reason: Why the trial is being stopped (a result's ``done``, a stopper, the
            scheduler, the time budget...), set when decided and carried out once its
            outstanding call returns.
        holds_runner: A runner serves the trial (from ``TrialStarted`` to ``ActorFreed``).
        successor: A trial whose launch is queued on this trial's runner (pipelining).
        queued_on: The trial on whose runner this trial's launch is queued.
        pausing: A pause was decided (by the scheduler's answer or its ``pause_trial``);
            carried out once the outstanding call returns.
        pause_save: Save a class trainable for the pause (``pause_trial(...,
            should_checkpoint=False)`` clears it).
        relaunch: An exploit assigned the trial a checkpoint while it ran: once its
            outstanding call returns it is launched again, on its own runner when reuse
            allows.
    """

    phase: Phase = Phase.PENDING
    stop_reason: str | None = None
    holds_runner: bool = False
    successor: str | None = None
    queued_on: str | None = None
    pausing: bool = False
    pause_save: bool = True
    relaunch: bool = False

    @property
    def busy(self) -> bool:
        """Whether a command for the trial is outstanding."""
        return self.phase in _IN_CALL
