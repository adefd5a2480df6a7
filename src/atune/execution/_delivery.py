"""Timed delivery of a batch: results reach the driver even while user code blocks.

Why: a batched ``train(budget)`` call runs the trainable in the host's user thread and
returns after ``max_results`` results, or at the first result past ``max_seconds``. That
deadline is checked only when a result arrives: if user code blocks between two reports
(a long step, a sleep) and the worker process then dies, every result the call had
already accepted dies with it, although ``report()`` returned for each. Ray Tune, which
ships each result on its own, keeps them all.

How, without giving up batching: the *face* of the host (the ``async`` methods of
:class:`~atune.execution._host.TrainableHost` in-process; the Ray actor's methods, which
block in the actor's own thread) submits the call to the user thread and waits for it with
a timer of ``max_seconds`` (plus a little slack, so that while results flow the call's own
deadline ends it first and nothing is split). When the timer fires and the call is still
running:

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

A launch queued behind a running trial (pipelining, ``only_if_finished``) must not take the
runner while a split call's remainder has not been collected by its own trial: the host
answers such a launch ``busy`` until then (see :attr:`Delivery.undelivered`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from atune.execution._outcomes import ErrorInfo, TrainOutcome

__all__ = ["SLACK_S", "Delivery"]

T = TypeVar("T")

SLACK_S = 0.05
"""How long after ``max_seconds`` the face's timer fires: while results flow, the call's
own deadline ends it first, so the timer splits only a call that is blocked."""


class Delivery:
    """The results of the ``train`` call in progress, shared by the user thread and a face.

    User-thread side: :meth:`begin`, :meth:`add`, :meth:`finish`. Face side:
    :meth:`deliver` and :meth:`deliver_blocking` (the timer and the split), :meth:`drain`.
    One lock guards the list, so a split never loses or repeats a result.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[dict[str, Any]] = []
        self._open = False  # a train call runs in the user thread
        self._cut = False  # that call ends at its next result
        # A split call whose remainder the next train() collects.
        self._pending: Future[TrainOutcome] | None = None

    # ------------------------------------------------------------- user thread
    def begin(self) -> None:
        """A train call starts (in the user thread)."""
        with self._lock:
            self._results = []
            self._open = True
            self._cut = False

    def add(self, result: dict[str, Any]) -> bool:
        """Add one result; True when the call must end here (its batch was split)."""
        with self._lock:
            self._results.append(result)
            return self._cut

    def count(self) -> int:
        """How many results the call holds that were not handed back yet."""
        return len(self._results)

    def finish(self, *, returned: bool = False, error: ErrorInfo | None = None) -> TrainOutcome:
        """The call ends: its outcome holds the results not handed back by a split."""
        with self._lock:
            results, self._results = self._results, []
            self._open = False
        return TrainOutcome(results=results, returned=returned, error=error)

    def forget(self) -> None:
        """A new trial (or a stop) starts: nothing of an earlier call is delivered anymore."""
        with self._lock:
            self._results = []
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
            return list(self._results)

    def take_pending(self) -> Future[TrainOutcome] | None:
        """The split call to continue, if any (it is the caller's from now on)."""
        pending, self._pending = self._pending, None
        return pending

    def _split(
        self, future: Future[Any], trained: Callable[[Any], TrainOutcome]
    ) -> TrainOutcome | None:
        """Hand back the results so far and keep the call pending; None if there are none."""
        with self._lock:
            if not self._open or not self._results or future.done():
                return None
            results, self._results = self._results, []
            self._cut = True
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
    ) -> T:
        """Await ``future`` (a call running in the user thread), splitting it on the timer.

        Args:
            future: The submitted call.
            max_seconds: The budget's time bound; 0 means no timer.
            trained: The call's ``TrainOutcome`` from its result.
            partial: The value to return for a split, from the results so far.
        """
        wrapped = asyncio.wrap_future(future)
        if max_seconds > 0:
            try:
                while not wrapped.done():
                    done, _ = await asyncio.wait({wrapped}, timeout=max_seconds + SLACK_S)
                    if not done and (split := self._split(future, trained)) is not None:
                        return partial(split)
            except BaseException:  # cancelled: as ``await wrapped`` would, give it up too
                wrapped.cancel()
                raise
        return await wrapped

    def deliver_blocking(
        self,
        future: Future[T],
        max_seconds: float,
        trained: Callable[[T], TrainOutcome],
        partial: Callable[[TrainOutcome], T],
    ) -> T:
        """:meth:`deliver` for a thread that may block (a Ray actor's method)."""
        if max_seconds > 0:
            while True:
                try:
                    return future.result(timeout=max_seconds + SLACK_S)
                except FutureTimeout:
                    if (split := self._split(future, trained)) is not None:
                        return partial(split)
        return future.result()
