"""Pipelining: the next trial's launch waits in the runner of a trial that still runs.

Why: with actor reuse, a trial that ends frees its runner only after a round trip (its
last ``train`` returns, the driver decides, a ``Release`` caches the runner, the next
trial's ``Launch`` resets it). For many short trials that round trip is most of the time
a runner is not training. So the core may queue the next trial's launch on the runner of
a running trial (``Launch(after=...)``, :meth:`ControllerCore._pipeline_host`): a
``LaunchMode.QUEUED`` launch that the runner runs right after the running trial's call
in its own call queue, and that takes the instance only if that trial has ended there
(its function returned, or a result ended it: ``done``, a dict stopper's criterion).
Otherwise it answers ``busy`` and touches nothing (the host's guard).

How it is sequenced, with no polling: a runner runs its calls in the order they were
submitted (the in-process user thread, a Ray actor's default thread). Every call the
serving trial makes goes through :class:`Sequenced`, which marks a *turn* as the call is
submitted; a ``busy`` launch waits for the next turn and is submitted again then, so it
lands right behind that call in the runner's queue. This relies on one property of every
runner: a call is in the runner's queue by the time its coroutine first suspends (true of
:class:`~atune.execution._local.LocalRunner`, whose ``submit`` precedes its first await,
and of the Ray runner, whose ``.remote()`` does). A turn is also marked when a trial holding
the runner lets go of it (``Release``: the running trial was stopped without the runner
seeing an end, e.g. a scheduler's stop; the queued launch then resets the runner as a
plain reuse) and when the runner is killed (the queued launch then falls back to a runner
of its own).

What was rejected: re-sending a ``busy`` launch on a short timer (it polls an idle runner
that awaits the driver's next command, and costs a wake-up every few milliseconds per
queued trial), and parking the queued launch inside the runner until the trial ends (a
Ray actor with one thread would then block the running trial's own next call).

The rest of the pipelining lives where its decision is made: the core picks the host
trial and counts a queued trial as not yet live (``TrialRun.queued_on``); the pool lets
several trials hold one runner until the last lets go (:mod:`atune._controller._pool`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import anyio

from atune.errors import WorkerDiedError
from atune.execution._protocol import (
    ErrorInfo,
    LaunchMode,
    LaunchOutcome,
    LaunchRequest,
    Runner,
    SaveOutcome,
    TrainBudget,
    TrainOutcome,
)

__all__ = ["QueueVerdict", "Sequenced", "launch_queued"]


class Sequenced:
    """A runner whose calls mark turns for a launch queued on it (see the module docstring).

    It is a :class:`~atune.execution._protocol.Runner` itself: the pool hands it out in
    place of the backend's runner.

    Args:
        runner: The backend's runner.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.resources = runner.resources
        self.killed = False
        self._turn: anyio.Event | None = None  # made only when a queued launch asks

    def next_turn(self) -> anyio.Event:
        """Set at the next call submitted to the runner, let-go or kill (not before)."""
        if self._turn is None:
            self._turn = anyio.Event()
        return self._turn

    def mark_turn(self) -> None:
        """Wake a launch waiting for its turn (a call was submitted, or a trial let go)."""
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.set()

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """The runner's launch (a turn for a launch queued behind it)."""
        self.mark_turn()
        return await self.runner.launch(request)

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        """The runner's train (a turn)."""
        self.mark_turn()
        return await self.runner.train(budget)

    async def save(self, index: int) -> SaveOutcome:
        """The runner's save (a turn)."""
        self.mark_turn()
        return await self.runner.save(index)

    async def stop(self) -> ErrorInfo | None:
        """The runner's stop."""
        return await self.runner.stop()

    async def drain(self) -> list[dict[str, Any]]:
        """The runner's drain."""
        return await self.runner.drain()

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        """The runner's wait_started."""
        return await self.runner.wait_started(trial_id, timeout)

    async def kill(self) -> None:
        """Kill the runner; a launch queued on it then falls back."""
        self.killed = True
        self.mark_turn()
        await self.runner.kill()


class QueueVerdict(enum.Enum):
    """How a queued launch ended (see :func:`launch_queued`)."""

    TAKEN = "taken"
    """The launch took the runner (the outcome has its first batch)."""
    FREE = "free"
    """The trial it waited for let go of the runner without ending there: the runner is
    the queued trial's alone now, to reset as a plain reuse."""
    LOST = "lost"
    """The runner died, was killed, or answered ``declined``/``error``: the queued trial
    takes the usual way (cache or a fresh runner)."""


async def launch_queued(
    runner: Sequenced, request: LaunchRequest, *, others_hold: Callable[[], bool]
) -> tuple[QueueVerdict, LaunchOutcome | None]:
    """Queue ``request`` on ``runner`` until it takes it, the runner is free, or lost.

    Args:
        runner: The runner of the trial the launch waits for.
        request: The launch (sent as ``LaunchMode.QUEUED``).
        others_hold: Whether another trial still holds the runner.

    Returns:
        The verdict, and the runner's outcome (its ``declined``/``error`` for ``LOST``;
        None when the runner died or was killed, or for ``FREE``).

    Raises:
        NotSerializableError: The request could not be sent (the runner serves on).
    """
    queued = request.queued_as(LaunchMode.QUEUED)
    while True:
        turn = runner.next_turn()  # before sending: a call submitted meanwhile counts
        if runner.killed:
            return QueueVerdict.LOST, None
        try:
            outcome = await runner.runner.launch(queued)
        except WorkerDiedError:  # the runner died under the trial it served
            return QueueVerdict.LOST, None
        if not outcome.busy:
            taken = not (outcome.declined or outcome.error)
            return (QueueVerdict.TAKEN if taken else QueueVerdict.LOST), outcome
        if runner.killed:
            return QueueVerdict.LOST, None
        if not others_hold():
            return QueueVerdict.FREE, None
        await turn.wait()  # behind the serving trial's next call, or until it lets go
