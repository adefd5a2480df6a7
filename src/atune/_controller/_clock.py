"""The driver's one clock: time stamps, elapsed time, sleeps, deadlines, blocking work.

The controller core reads no clock (every event copies the ``ts`` of its message). The
driver reads time and waits only through one injected :class:`Clock`, so the same driver
runs in real time (:class:`WallClock`, the default) or in virtual time
(:class:`VirtualClock`), where a simulated backend answers after virtual seconds and a
study of hours runs in milliseconds with the same journal every time.

A clock offers:

* ``time()``: seconds since the epoch, for the ``ts`` of events (what users see);
* ``monotonic()``: seconds on a clock that never goes back, for elapsed time;
* ``await sleep(seconds)``: wait that long (a cancellable checkpoint even for 0);
* ``move_on_after(seconds, shield=...)``: a cancel scope that is cancelled that long
  after it is entered (anyio's ``move_on_after`` on this clock's time);
* ``call_later(seconds, callback)``: run a plain callback on the event loop that long
  from now, cancellable (asyncio's ``call_later`` on this clock's time): a timer that
  costs no task;
* ``await run_sync(func, *args)``: run blocking work (a journal flush, a cluster query)
  in a worker thread. It is part of the clock because in virtual time such work is
  *activity*: the virtual clock does not jump while a thread started this way runs.

The virtual clock follows trio's ``MockClock`` with ``autojump_threshold=0``: time stands
still while any task can run, and when every task is blocked it jumps straight to the
earliest pending deadline (a sleep's or a ``move_on_after``'s), wakes what is due there in
deadline order (ties in the order they were set), and stands still again. Nothing else
moves it, except :meth:`VirtualClock.jump`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any, Protocol, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["Cancellable", "Clock", "VirtualClock", "WallClock"]

T = TypeVar("T")


class Cancellable(Protocol):
    """A pending :meth:`Clock.call_later` callback."""

    def cancel(self) -> None:
        """Do not run the callback (nothing happens if it ran already)."""
        ...


class Clock(Protocol):
    """What the driver reads time and waits through; see the module docstring."""

    def time(self) -> float:
        """Seconds since the epoch (the ``ts`` of events)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (elapsed time only)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (a checkpoint even for 0)."""
        ...

    def move_on_after(
        self, seconds: float, *, shield: bool = False
    ) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope cancelled ``seconds`` after it is entered (see anyio's)."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback()`` on the event loop ``seconds`` from now, unless cancelled."""
        ...

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking ``func(*args)`` in a worker thread and return its result."""
        ...


class WallClock:
    """Real time: :func:`time.time`, :func:`time.monotonic`, anyio's sleep and threads."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """:func:`time.monotonic`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """:func:`anyio.sleep`."""
        await anyio.sleep(seconds)

    def move_on_after(
        self, seconds: float, *, shield: bool = False
    ) -> AbstractContextManager[anyio.CancelScope]:
        """:func:`anyio.move_on_after`."""
        return anyio.move_on_after(seconds, shield=shield)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """The running loop's :meth:`asyncio.loop.call_later`."""
        return asyncio.get_running_loop().call_later(seconds, callback)

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """:func:`anyio.to_thread.run_sync`."""
        return await anyio.to_thread.run_sync(func, *args)


class _Timer:
    """One pending deadline of a :class:`VirtualClock`; ``fire`` runs when it is due."""

    __slots__ = ("cancelled", "deadline", "fire", "seq")

    def __init__(self, deadline: float, seq: int, fire: Callable[[], object]) -> None:
        self.deadline = deadline
        self.seq = seq
        self.fire = fire
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a sleep cancelled meanwhile has a cancelled future
        future.set_result(None)


class VirtualClock:
    """Deterministic virtual time that jumps when every task waits (see the module docstring).

    Use it as an async context manager around the code it times: entering starts the
    task that watches the event loop and jumps the clock; leaving stops it::

        async with VirtualClock() as clock:
            await Driver(..., clock=clock).run()

    "Every task waits" is judged on the running asyncio loop: nothing is ready to run,
    and no :meth:`run_sync` call is in flight. Work the clock cannot see (a thread
    started some other way, a real network call) does not hold time back: virtual time
    may jump while it runs, as in trio. The check reads the default asyncio loop's queue
    of ready callbacks (``loop._ready``), which asyncio exposes no public way to see; a
    loop without one (uvloop) is refused when the clock is entered, since nothing else
    tells "all blocked" from "some still runnable" on asyncio.

    Args:
        start: ``monotonic()`` at the start.
        epoch: ``time()`` is ``epoch + monotonic()``; the default is a fixed date
            (2024-01-01 UTC) so that time stamps are the same in every run.
    """

    def __init__(self, start: float = 0.0, *, epoch: float = 1_704_067_200.0) -> None:
        self._now = float(start)
        self._epoch = float(epoch)
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._in_threads = 0
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cm: AbstractAsyncContextManager[VirtualClock] | None = None

    # ---------------------------------------------------------------- reading
    def time(self) -> float:
        """``epoch + monotonic()``."""
        return self._epoch + self._now

    def monotonic(self) -> float:
        """Virtual seconds since ``start`` (plus ``start``)."""
        return self._now

    # ---------------------------------------------------------------- waiting
    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has reached ``monotonic() + seconds``.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
        """
        if not seconds >= 0:  # also NaN
            raise ValueError(f"sleep length must be >= 0, got {seconds!r}")
        if seconds == 0:
            await anyio.lowlevel.checkpoint()
            return
        if math.isinf(seconds):
            await anyio.sleep_forever()
        # A bare asyncio future, not an anyio.Event: a simulated study sleeps once per
        # result, and anyio's Event costs a backend look-up and a wrapper each time. A
        # cancel scope cancels the wait as any asyncio await (it cancels the task).
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self._add(self._now + seconds, lambda: _wake(woken))
        try:
            await woken
        finally:
            timer.cancel()

    @contextmanager
    def move_on_after(self, seconds: float, *, shield: bool = False) -> Iterator[anyio.CancelScope]:
        """A cancel scope cancelled when the clock reaches ``monotonic() + seconds``."""
        with anyio.CancelScope(shield=shield) as scope:
            timer = None if math.isinf(seconds) else self._add(self._now + seconds, scope.cancel)
            try:
                yield scope
            finally:
                if timer is not None:
                    timer.cancel()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback()`` when the clock reaches ``monotonic() + seconds``.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0, got {seconds!r}")
        return self._add(self._now + seconds, callback)

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in a worker thread; the clock stands still meanwhile."""
        self._in_threads += 1
        try:
            return await anyio.to_thread.run_sync(func, *args)
        finally:
            self._in_threads -= 1
            self._poke()

    # ---------------------------------------------------------------- moving
    def jump(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead at once and fire every timer due by then.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"jump length must be >= 0, got {seconds!r}")
        self._advance_to(self._now + seconds)

    def _advance_to(self, deadline: float) -> None:
        self._now = max(self._now, deadline)
        while self._timers and self._timers[0].deadline <= self._now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.fire()

    def _add(self, deadline: float, fire: Callable[[], object]) -> _Timer:
        timer = _Timer(deadline, next(self._seq), fire)
        heapq.heappush(self._timers, timer)
        self._poke()
        return timer

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _next_deadline(self) -> float | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].deadline if self._timers else None

    def _loop_idle(self) -> bool:
        ready = getattr(self._loop, "_ready", None)
        return ready is not None and len(ready) == 0

    async def _autojump(self) -> None:
        """Jump to the next deadline whenever the loop has nothing else to run."""
        idle_checks = 0
        while True:
            if self._in_threads or self._next_deadline() is None:
                self._changed = asyncio.Event()
                await self._changed.wait()
                self._changed = None
                idle_checks = 0
                continue
            # One cycle of the loop (what anyio's checkpoint does on asyncio, without its
            # cancel scope: this task is only ever cancelled as the clock is left).
            await asyncio.sleep(0)
            # Twice in a row, with one loop cycle between: a task woken by the first
            # cycle's I/O or timers has had its turn too.
            idle_checks = idle_checks + 1 if self._loop_idle() else 0
            if idle_checks >= 2 and not self._in_threads:
                deadline = self._next_deadline()
                if deadline is not None:
                    self._advance_to(deadline)
                idle_checks = 0

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[VirtualClock]:
        self._loop = asyncio.get_running_loop()
        if not hasattr(self._loop, "_ready"):
            raise RuntimeError(
                f"VirtualClock needs asyncio's default event loop, not {type(self._loop)!r}"
            )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._autojump)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def __aenter__(self) -> VirtualClock:
        self._cm = self._running()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._cm is not None
        cm, self._cm = self._cm, None
        return await cm.__aexit__(*exc_info)
