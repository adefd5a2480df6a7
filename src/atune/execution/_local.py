"""The in-process runner: a :class:`TrainableHost` in a thread of its own, awaited.

The host is synchronous (the Ray actor calls it directly). In-process, the event loop must
never run user code, so :class:`LocalRunner` is the host's async face, as thin as the Ray
actor's: it submits each call to a :class:`_UserThread`, awaits the call's future, hands
back a blocked batch on a timer (:mod:`atune.execution._delivery`), and turns the host's
``on_started`` notice into event-loop wake-ups for :meth:`LocalRunner.wait_started`, so
no thread waits for a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from atune.errors import WorkerDiedError
from atune.execution._delivery import launch_trained, launched, same, timer_for
from atune.execution._host import TrainableHost
from atune.execution._protocol import (
    ErrorInfo,
    LaunchOutcome,
    LaunchRequest,
    SaveOutcome,
    TrainBudget,
    TrainOutcome,
)
from atune.execution.placement_groups import PlacementGroupFactory
from atune.trainable._trainable import Trainable

__all__ = ["LocalRunner"]

T = TypeVar("T")


class _UserThread:
    """One daemon thread that runs every call of a trainable's user code, in order.

    Unlike a ``ThreadPoolExecutor`` worker, it never blocks interpreter exit: a ``step()``
    that never returns can be abandoned (in-process the thread is left behind).
    """

    def __init__(self) -> None:
        self._closed = False
        self._calls: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None
        ] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="atune-trainable", daemon=True).start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args, future = call
            if self._closed:  # abandoned: calls still queued never run
                if future.set_running_or_notify_cancel():
                    future.set_exception(_abandoned())
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        if self._closed:
            future.set_exception(_abandoned())
            return future
        self._calls.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        self._calls.put(None)

    def close(self) -> None:
        """Fail every call still queued (and any later one) instead of running it."""
        self._closed = True
        self._calls.put(None)


def _abandoned() -> WorkerDiedError:
    return WorkerDiedError("the trainable was abandoned (a deadline passed)")


class LocalRunner:
    """A :class:`~atune.execution._protocol.Runner` in this process (see the module docstring).

    Args:
        trainable_cls: A ``Trainable`` subclass (functions are wrapped beforehand).
        resources: The resources the runner holds (bookkeeping only in-process; one CPU
            by default).
    """

    def __init__(
        self, trainable_cls: type[Trainable], resources: PlacementGroupFactory | None = None
    ) -> None:
        self.resources = resources if resources is not None else PlacementGroupFactory([{"CPU": 1}])
        self.host = TrainableHost(trainable_cls, on_started=self._on_started)
        self._thread = _UserThread()
        self._waiters_lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """The host's launch in the user thread, its first batch delivered on a timer."""
        future = self._thread.submit(self.host.launch, request)
        return await self.host.delivery.deliver(
            future, timer_for(request.budget), launch_trained, launched, request.info.trial_id
        )

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        """The host's train in the user thread; continues a call a timed delivery split."""
        delivery = self.host.delivery
        pending = delivery.take_pending()
        if pending is not None:  # it ends at its next result: no timer needed
            return await asyncio.wrap_future(pending)
        future = self._thread.submit(self.host.train, budget)
        return await delivery.deliver(
            future, timer_for(budget), same, same, self.host.current_trial
        )

    async def save(self, index: int) -> SaveOutcome:
        """The host's save in the user thread."""
        return await self._call(self.host.save, index)

    async def stop(self) -> ErrorInfo | None:
        """Stop the trainable (``cleanup``) and its user thread."""
        try:
            return await self._call(self.host.stop)
        finally:
            self._thread.shutdown()

    async def drain(self) -> list[dict[str, Any]]:
        """The results of the call in progress so far (it never waits for the thread)."""
        return self.host.drain()

    async def kill(self) -> None:
        """Give up on the trainable without waiting (a thread cannot be killed)."""
        self.host.interrupt()
        self._thread.close()

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        """The host's :meth:`~TrainableHost.wait_started`, awaited on the loop: no thread
        waits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._waiters_lock:
                if (started := self.host.started_as(trial_id)) is not None:
                    return started
                waiter = (loop, loop.create_future())
                self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter[1], max(0.0, deadline - loop.time()))
            except TimeoutError:
                return self.host.started_as(trial_id)
            finally:
                with self._waiters_lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _on_started(self, trial_id: str, reused: bool) -> None:
        """In the user thread: a launch got past its set-up; wake every loop waiter."""
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
