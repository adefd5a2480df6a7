"""Timed delivery of a batch: results reach the driver even while user code blocks.

Why: a batched ``train(budget)`` call runs the trainable in the host's user thread and
returns after ``max_results`` results, or at the first result past ``max_seconds``. That
deadline is checked only when a result arrives: if user code blocks between two reports
(a long step, a sleep) and the worker process then dies, every result the call had
already accepted dies with it, although ``report()`` returned for each. Ray Tune, which
ships each result on its own, keeps them all.

How, without giving up batching: the *face* that awaits the call does so with a timer of
``max_seconds`` (plus a little slack, so that while results flow the call's own deadline
ends it first and nothing is split). In-process that face is
:class:`~atune.execution._local.LocalRunner` (:meth:`Delivery.deliver`), which submits the
call to the user thread anyway. On Ray it is the driver's runner (:func:`deliver_remote`):
it awaits the actor's object ref with the timer and, when it fires, asks the actor for the
split through a concurrency group of its own, so the actor keeps running user code in its
own thread and the hot path of a result pays no thread handoff. When the timer fires and
the call is still running:

* with results waiting, the batch is *split* atomically: the face hands back the results
  so far as the call's outcome and asks the still-running call to end at its next result.
  The call is kept as *pending*; the next ``train()`` does not start a new call but
  continues that one, returning the results produced after the split and how it ended.
* with none, the face keeps waiting (the call's own deadline then ends it at its next
  result); a launch still in ``setup`` is simply waited for, a period at a time.

What stays as it was: every result is still evaluated in the user thread as it arrives, so
``done``, a dict stopper's criterion, a checkpoint or a ``checkpoint_frequency`` boundary
still end the call exactly at that result; a split only ever cuts between two results that
end nothing. Lock-step budgets (``max_results=1``, no ``max_seconds``) have no timer.

A split names the trial whose call it cuts, and cuts only a call of that trial: a launch
queued behind another trial's call (pipelining) has a timer too, and must never take that
trial's results. In-process, a launch queued behind a split call whose remainder its trial
has not collected yet is answered ``busy`` (see :attr:`Delivery.undelivered`); on Ray the
remainder stays the value of the call's object ref, which only its trial awaits, and a
queued launch has no timer at all (so the first batch of a pipelined trial on Ray is
delivered when it ends, as before; its later batches are timed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from atune.execution._protocol import ErrorInfo, LaunchOutcome, TrainBudget, TrainOutcome

__all__ = [
    "SLACK_S",
    "Delivery",
    "deliver_remote",
    "launch_trained",
    "launched",
    "same",
    "timer_for",
]

T = TypeVar("T")

SLACK_S = 0.05
"""How long after ``max_seconds`` the face's timer fires: while results flow, the call's
own deadline ends it first, so the timer splits only a call that is blocked."""


class Delivery:
    """The results of the ``train`` call in progress, shared by the user thread and a face.

    User-thread side: :meth:`begin`, :meth:`add`, :meth:`finish`. Face side:
    :meth:`deliver` (the timer and the split), :meth:`split_now`, :meth:`drain`.
    The user thread only appends (one atomic operation under the GIL, no lock per
    result); a split hands back a prefix (up to ``_taken``) and the call's outcome is what
    follows it. :meth:`finish` and a split take one lock, so a split never loses or repeats
    a result.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[dict[str, Any]] = []
        self._taken = 0  # results of the call handed back by splits
        self._open = False  # a train call runs in the user thread
        self._owner = ""  # the trial of that call
        self._cut = False  # that call ends at its next result
        # A split call whose remainder the next train() collects.
        self._pending: Future[TrainOutcome] | None = None

    # ------------------------------------------------------------- user thread
    def begin(self, owner: str) -> None:
        """A train call of trial ``owner`` starts (in the user thread)."""
        with self._lock:
            self._results = []
            self._taken = 0
            self._open = True
            self._owner = owner
            self._cut = False

    def add(self, result: dict[str, Any]) -> bool:
        """Add one result; True when the call must end here (its batch was split)."""
        self._results.append(result)
        return self._cut  # read after the append: a split before it took this result too

    def count(self) -> int:
        """How many results the call holds that were not handed back yet."""
        return len(self._results) - self._taken

    def finish(self, *, returned: bool = False, error: ErrorInfo | None = None) -> TrainOutcome:
        """The call ends: its outcome holds the results not handed back by a split."""
        with self._lock:
            results, self._results = self._results, []
            if self._taken:
                results = results[self._taken :]
            self._open = False
        return TrainOutcome(results=results, returned=returned, error=error)

    def forget(self) -> None:
        """A new trial (or a stop) starts: nothing of an earlier call is delivered anymore."""
        with self._lock:
            self._results = []
            self._taken = 0
            self._open = False
            self._pending = None

    # -------------------------------------------------------------------- faces
    @property
    def undelivered(self) -> bool:
        """A split call's remainder waits for its trial's next ``train()``."""
        return self._pending is not None

    def drain(self) -> list[dict[str, Any]]:
        """The results of the call in progress not handed back yet (any thread)."""
        with self._lock:
            return self._results[self._taken :]

    def take_pending(self) -> Future[TrainOutcome] | None:
        """The split call to continue, if any (it is the caller's from now on)."""
        pending, self._pending = self._pending, None
        return pending

    def split_now(self, owner: str) -> list[dict[str, Any]]:
        """Take the results so far of ``owner``'s running call and end it at its next result.

        Returns nothing (and changes nothing) when no call of ``owner`` runs or it holds no
        result yet.
        """
        with self._lock:
            end = len(self._results)
            if not self._open or self._owner != owner or end == self._taken:
                return []
            results = self._results[self._taken : end]
            self._taken = end
            self._cut = True
            return results

    def _split(
        self, future: Future[Any], trained: Callable[[Any], TrainOutcome], owner: str
    ) -> TrainOutcome | None:
        """Hand back the results so far and keep the call pending; None if there are none."""
        if future.done():
            return None
        results = self.split_now(owner)
        if not results:
            return None
        remainder: Future[TrainOutcome] = Future()
        remainder.set_running_or_notify_cancel()

        def settle(done: Future[Any]) -> None:
            exc = done.exception()
            if exc is not None:
                remainder.set_exception(exc)
            else:
                remainder.set_result(trained(done.result()))

        self._pending = remainder
        future.add_done_callback(settle)
        return TrainOutcome(results=results)

    async def deliver(
        self,
        future: Future[T],
        max_seconds: float,
        trained: Callable[[T], TrainOutcome],
        partial: Callable[[TrainOutcome], T],
        owner: str,
    ) -> T:
        """Await ``future`` (a call running in the user thread), splitting it on the timer.

        Args:
            future: The submitted call.
            max_seconds: The budget's time bound; 0 means no timer.
            trained: The call's ``TrainOutcome`` from its result.
            partial: The value to return for a split, from the results so far.
            owner: The trial the call trains: only a call of this trial is split.
        """
        wrapped = asyncio.wrap_future(future)
        if max_seconds > 0:
            try:
                while not wrapped.done():
                    done, _ = await asyncio.wait({wrapped}, timeout=max_seconds + SLACK_S)
                    split = None if done else self._split(future, trained, owner)
                    if split is not None:
                        return partial(split)
            except BaseException:  # cancelled: as ``await wrapped`` would, give it up too
                wrapped.cancel()
                raise
        return await wrapped


async def deliver_remote(
    call: asyncio.Future[T],
    max_seconds: float,
    split: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> tuple[T | None, TrainOutcome | None]:
    """Await a remote call (a Ray actor's ref) with the timer; the driver's face on Ray.

    Args:
        call: The call's future (``asyncio.wrap_future(ObjectRef.future())``).
        max_seconds: The budget's time bound; 0 means no timer.
        split: Asks the actor for its call's results so far (:meth:`Delivery.split_now`).

    Returns:
        ``(value, None)`` when the call returned, or ``(None, results so far)`` when it was
        split; the caller then keeps ``call`` to continue it.
    """
    if max_seconds > 0:
        try:
            while not call.done():
                done, _ = await asyncio.wait({call}, timeout=max_seconds + SLACK_S)
                if not done and (results := await split()):
                    return None, TrainOutcome(results=results)
        except BaseException:  # cancelled: as ``await call`` would, give it up too
            call.cancel()
            raise
    return await call, None


def timer_for(budget: TrainBudget | None) -> float:
    """The face's timer for a call training within ``budget`` (0: none, lock-step)."""
    if budget is None or budget.max_results <= 1:
        return 0.0
    return budget.max_seconds


def same(outcome: TrainOutcome) -> TrainOutcome:
    """A train call's value is its ``TrainOutcome``."""
    return outcome


def launch_trained(outcome: LaunchOutcome) -> TrainOutcome:
    """A launch call's ``TrainOutcome`` (empty when it trained nothing)."""
    return outcome.trained if outcome.trained is not None else TrainOutcome(results=[])


def launched(trained: TrainOutcome) -> LaunchOutcome:
    """The value a split launch call hands back: its results so far."""
    return LaunchOutcome(trained=trained)
