"""The hand-off between a function trainable and its runner: a greenlet, lock-step.

A function trainable is ordinary code that calls ``report()`` in the middle of its loop,
while the runner wants one result per ``step()``. :class:`Suspendable` runs the function
as a greenlet on the runner's own thread: ``next()`` switches into it, ``report()``
switches back with the result, and the function stays suspended inside that ``report()``
until the runner asks for more. Stopping throws :class:`TrialStopped` into the suspended
``report()``, so the function unwinds through its own ``finally`` blocks and nothing of it
keeps running.

Why a greenlet, and what was rejected:

* A thread per function, handing results over through a queue and a lock (Ray Tune's
  way): two thread switches per result, and a stopped function's thread cannot be ended;
  it is left running, with whatever GPU memory it holds.
* A generator or a coroutine: ``report()`` is a plain call deep inside user code, not a
  ``yield`` or an ``await``, so only a stackful switch can suspend the function there.

An ``async def`` trainable runs its own event loop (``asyncio.run``) inside the greenlet.
asyncio records the running loop per OS thread, not per greenlet, so while the function
is suspended at a ``report()``, code on the runner's side of the same thread would see
that loop as running: ``asyncio.run`` there fails with "cannot be called from a running
event loop", and ``Tuner.fit()``'s check for a running loop answers wrongly. So
``report()`` clears the thread's running loop before it switches out and puts it back when
resumed, with ``asyncio._get_running_loop`` / ``asyncio._set_running_loop``: despite
the underscore these are exported (``asyncio.events.__all__``) and described by their
docstrings as low-level functions for event loop implementations, which uvloop uses;
this bridge is such an implementation detail. Rejected:
``asyncio.set_event_loop`` changes the *current* loop of the policy, not the *running*
loop that ``get_running_loop`` and ``asyncio.run`` check; running the function's
coroutine on the runner's loop instead would block that loop at every synchronous
``report()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import greenlet

__all__ = ["Suspendable", "TrialStopped"]


class TrialStopped(BaseException):
    """Unwinds a stopped function from inside its blocked ``report()``."""


class Suspendable:
    """The user function as a greenlet that suspends at each report.

    Every call but :meth:`interrupt` must come from the thread that first called
    :meth:`next` (the runner's thread); ``interrupt`` may come from any thread.
    """

    def __init__(self, target: Callable[[], tuple[str, Any]]) -> None:
        self._glet = greenlet.greenlet(target)
        self._stopping = False

    def next(self) -> tuple[str, Any]:
        """Run the function until its next report (``("result", ...)``) or its end."""
        item: tuple[str, Any] = self._glet.switch()
        return item

    def report(self, item: tuple[str, Any]) -> None:
        """Inside the function: hand ``item`` to :meth:`next` and wait to be resumed."""
        if greenlet.getcurrent() is not self._glet:
            raise RuntimeError(
                "report() was called outside the trainable function's own thread; call it "
                "from the function (or the coroutine of an async def trainable) itself"
            )
        # An async def trainable is suspended inside its event loop: hide that loop from
        # the runner's code while it is suspended, and restore it on resumption (see the
        # module docstring for why this takes asyncio's underscore functions).
        loop = asyncio._get_running_loop()
        if loop is not None:
            asyncio._set_running_loop(None)
        try:
            self._glet.parent.switch(item)
        finally:
            if loop is not None:
                asyncio._set_running_loop(loop)
        self.check_stopping()

    def check_stopping(self) -> None:
        """Raise at once if the trial was stopped (before a report writes anything)."""
        if self._stopping:
            raise TrialStopped

    def stop(self) -> None:
        """Unwind the suspended function from its ``report()`` (runner's thread)."""
        self._stopping = True
        if self._glet:  # started and not finished: suspended at a report
            self._glet.throw(TrialStopped)

    def interrupt(self) -> None:
        """Stop at the next report boundary (any thread; the function may be running)."""
        self._stopping = True
