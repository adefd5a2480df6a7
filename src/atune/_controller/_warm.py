"""Warm runners: idle runners kept between experiments on one event loop.

A process that runs many experiments one after another (a service, a notebook) would
otherwise start every experiment's runners cold: a Ray actor's start, and a class
trainable's ``setup``, again for each experiment. With actor reuse on, the runners an
experiment leaves idle at its end (its reuse cache) are kept warm instead of stopped:

* **Where.** One :class:`WarmRunners` per event loop and backend kind, beside the
  allocator that loop's experiments share (``_fit._shared_allocator``); the simulator's
  virtual runners are never kept.
* **Who gets them.** A later experiment on that loop whose backend gives an equal
  :meth:`~atune.execution._backend.Backend.warm_key` (for Ray: the same Ray session and
  working-directory settings), whose trainable has the same :func:`trainable_identity`
  and whose trial asks for an equal resource request, and which reuses actors itself.
  It resets the runner for its trial as any reused runner (``reset_config`` for a class,
  the function adapter for a function); a runner whose reset is declined
  (``reset_config`` returns False) or raises is discarded, never handed on.
* **Resources.** A warm runner keeps its lease in the shared allocator: it does hold the
  resources (a live Ray actor holds its CPUs), so every experiment on the loop sees the
  true free capacity. Idle holdings never make a trial wait: when a request has to wait at
  the allocator (:meth:`~atune.execution._allocator.Allocator.on_shortage`), every warm
  runner is stopped and its lease released, and no runner is parked while a request
  waits. An experiment that takes a warm runner adopts its lease into its own scope
  (which counts it against ``max_concurrent_trials``).
* **How long.** :func:`idle_timeout_s`: ``ATUNE_WARM_RUNNERS_TIMEOUT_S`` seconds,
  60 by default; ``0`` keeps none (each experiment stops its runners when it ends, as
  before). A warm runner not taken within that time is stopped (``cleanup`` runs) and
  its lease released.
* **Exit.** When the loop is shut down the asyncio way (``asyncio.run``, ``anyio.run``,
  ``asyncio.Runner``: each calls ``loop.shutdown_asyncgens()``), every warm runner is
  stopped before the loop closes; a synchronous ``Tuner.fit()`` runs on a loop of its
  own, so its runners are stopped before it returns. A process that exits without
  closing its loop (a notebook kernel) leaves its Ray actors to Ray, which ends the
  actors a driver owns when the driver goes; in-process runners are daemon threads.

The stop tasks are the loop's own, not an experiment's: a warm runner outlives the
experiment (and the task group) that started it. They are tracked here and awaited
(with a deadline) when the loop shuts down.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncGenerator, Hashable
from dataclasses import dataclass
from typing import Any

import anyio

from atune._env import env_number
from atune._log import get_logger
from atune.execution._allocator import Allocator, Lease
from atune.execution._protocol import Runner
from atune.trainable._function import FunctionTrainable
from atune.trainable._trainable import Trainable

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "IDLE_TIMEOUT_ENV",
    "TrainableIdentity",
    "WarmPlace",
    "WarmRunners",
    "idle_timeout_s",
    "trainable_identity",
]

_log = get_logger(__name__)

IDLE_TIMEOUT_ENV = "ATUNE_WARM_RUNNERS_TIMEOUT_S"
"""Environment variable: seconds an idle runner is kept warm between experiments."""

DEFAULT_IDLE_TIMEOUT_S = 60.0
"""How long an idle runner is kept warm when ``ATUNE_WARM_RUNNERS_TIMEOUT_S`` is unset."""

# A warm runner's ``stop`` (the trainable's ``cleanup``) gets this long before it is killed.
_STOP_DEADLINE_S = 10.0


def idle_timeout_s() -> float:
    """Seconds an idle runner is kept warm (``ATUNE_WARM_RUNNERS_TIMEOUT_S``; 0: none).

    Read when an experiment starts.

    Raises:
        ConfigError: The variable is set to something other than a number >= 0.
    """
    return env_number(
        IDLE_TIMEOUT_ENV,
        DEFAULT_IDLE_TIMEOUT_S,
        float,
        lambda v: 0 <= v < float("inf"),
        "a number of seconds >= 0",
    )


class TrainableIdentity:
    """Equal for two trainables only when they are the same code with the same parameters.

    Compared by identity (``is``) part by part, and holds its parts: two different objects
    that compare equal (two ``with_parameters`` calls with equal data) are different
    trainables here.
    """

    __slots__ = ("_parts",)

    def __init__(self, *parts: Any) -> None:
        self._parts = parts

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TrainableIdentity)
            and len(other._parts) == len(self._parts)
            and all(a is b for a, b in zip(self._parts, other._parts, strict=True))
        )

    def __hash__(self) -> int:
        return hash(tuple(id(part) for part in self._parts))

    def __repr__(self) -> str:
        return f"TrainableIdentity{self._parts!r}"


def trainable_identity(cls: type[Trainable]) -> TrainableIdentity:
    """Which trainables a warm runner of ``cls`` may serve.

    A class trainable is its class. A function is wrapped into a new class by each
    ``Tuner`` (and copied by ``with_resources``/``with_parameters``), so a wrapped
    function is its code, globals, closure and defaults, and its ``with_parameters``
    holder when it has parameters: the same function passed to two ``Tuner``\\ s is the
    same trainable. A class or function defined again (a notebook cell run again) is a
    different one.
    """
    function = cls.__dict__.get("_function")
    if issubclass(cls, FunctionTrainable) and isinstance(function, staticmethod):
        parameters = cls._atune_parameters
        return TrainableIdentity(
            *_function_parts(function.__func__), parameters if parameters else None
        )
    return TrainableIdentity(cls)


def _function_parts(fn: Any) -> tuple[Any, ...]:
    if isinstance(fn, types.FunctionType):
        return (fn.__code__, fn.__globals__, fn.__closure__, fn.__defaults__, fn.__kwdefaults__)
    return (fn,)


@dataclass(frozen=True)
class WarmPlace:
    """Where one experiment finds and leaves warm runners.

    Attributes:
        cache: The loop's warm runners for the experiment's backend kind.
        key: The backend's warm key and the trainable's identity.
        idle_timeout_s: How long a runner left by this experiment stays warm.
    """

    cache: WarmRunners
    key: Hashable
    idle_timeout_s: float


class _Entry:
    __slots__ = ("key", "lease", "runner", "timer")

    def __init__(self, key: Hashable, runner: Runner, lease: Lease) -> None:
        self.key = key
        self.runner = runner
        self.lease = lease
        self.timer: asyncio.TimerHandle | None = None


class WarmRunners:
    """The idle runners one event loop keeps for later experiments (see the module docstring).

    Use it from its loop's thread only. Create it with :meth:`open`.

    Args:
        allocator: The loop's shared allocator, whose leases the runners hold.
    """

    def __init__(self, allocator: Allocator) -> None:
        self._allocator = allocator
        self._entries: list[_Entry] = []
        self._stopping: set[asyncio.Task[None]] = set()
        self._closer: AsyncGenerator[None, None] | None = None
        self._closed = False
        allocator.on_shortage(self.evict)

    @classmethod
    async def open(cls, allocator: Allocator) -> WarmRunners:
        """A cache on the running loop that is emptied when the loop shuts down."""
        self = cls(allocator)
        # An async generator first iterated on the loop is finalised by the loop's
        # ``shutdown_asyncgens()``: its ``finally`` (stopping every runner) runs then.
        self._closer = _close_at_shutdown(self)
        await self._closer.__anext__()
        return self

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def runners(self) -> list[Runner]:
        """The runners kept warm now (oldest first)."""
        return [entry.runner for entry in self._entries]

    def park(self, key: Hashable, runner: Runner, lease: Lease, timeout_s: float) -> bool:
        """Keep ``runner`` (idle, holding ``lease``) warm for ``timeout_s`` seconds.

        ``lease`` must belong to no scope (``ResourceScope.detach``). It is kept only if
        the timeout is positive, the cache is open and no request waits at the allocator;
        otherwise nothing is done and the caller still owns the runner and the lease.

        Returns:
            Whether the runner was kept (the cache owns it then).
        """
        if timeout_s <= 0 or self._closed or self._allocator.num_waiting:
            return False
        entry = _Entry(key, runner, lease)
        entry.timer = asyncio.get_running_loop().call_later(timeout_s, self._expire, entry)
        self._entries.append(entry)
        _log.debug("runner kept warm", timeout_s=timeout_s, warm=len(self._entries))
        return True

    def take(self, key: Hashable, resources: Any) -> tuple[Runner, Lease] | None:
        """A warm runner for ``key`` holding an equal resource request, or None.

        The caller owns the runner and its (detached) lease from then on.
        """
        for i, entry in enumerate(self._entries):
            if entry.key == key and entry.runner.resources == resources:
                del self._entries[i]
                if entry.timer is not None:
                    entry.timer.cancel()
                return entry.runner, entry.lease
        return None

    def evict(self) -> None:
        """Stop every warm runner (in the background) and release its lease."""
        entries, self._entries = self._entries, []
        for entry in entries:
            self._stop_later(entry)

    async def aclose(self) -> None:
        """Stop every warm runner and wait for the stops (with a deadline); keep none after."""
        self._closed = True
        # The generator keeps the loop alive (its finaliser is the loop's); the loop's
        # registry entry would then never go (a sync ``fit()`` makes a loop per call).
        self._closer = None
        self.evict()
        if self._stopping:
            await asyncio.wait(set(self._stopping), timeout=2 * _STOP_DEADLINE_S)

    # ------------------------------------------------------------------ helpers
    def _expire(self, entry: _Entry) -> None:
        for i, kept in enumerate(self._entries):
            if kept is entry:
                del self._entries[i]
                _log.debug("warm runner idle too long: stopping it")
                self._stop_later(entry)
                return

    def _stop_later(self, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        task = asyncio.get_running_loop().create_task(_stop(entry.runner, entry.lease))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)


async def _stop(runner: Runner, lease: Lease) -> None:
    """Stop ``runner`` (its ``cleanup``), killing it past a deadline; release ``lease``."""
    try:
        stopped = False
        with anyio.move_on_after(_STOP_DEADLINE_S):
            try:
                await runner.stop()
            except Exception as exc:
                _log.warning("warm runner did not stop cleanly", error=repr(exc))
            stopped = True
        if not stopped:
            await runner.kill()
    finally:
        lease.release()


async def _close_at_shutdown(cache: WarmRunners) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await cache.aclose()
