"""An async, FIFO-fair allocator of trial resources over the cluster's capacity.

One :class:`Allocator` holds the capacity of the whole cluster (``{"CPU": 8.0, "GPU":
1.0, "memory": ..., "my_custom": 2.0}``) and is shared by every experiment in the process.
Each experiment draws from it through its own :class:`ResourceScope`
(``allocator.scope(max_concurrent=...)``), which adds the experiment's concurrency limit.
Two experiments running in one event loop therefore share one pool and together never
reserve more than the cluster has.

Requests are :class:`~atune.execution.placement_groups.PlacementGroupFactory` objects;
the allocator reserves the *sum* of their bundles. Where the bundles land on which node
is Ray's business (placement groups); the allocator only keeps the trials that are
started within what the cluster has in total, so that none pends in Ray forever.

Semantics, in the order a request meets them:

* **Infeasible requests fail at once.** A request that exceeds the *total* capacity in
  any resource can never be served; :meth:`Allocator.acquire` raises
  :class:`~atune.errors.InfeasibleResourcesError` without waiting, naming the request
  and the capacity. :meth:`Allocator.check_feasible` does the same check without
  acquiring, for early validation when ``fit()`` starts.
* **Unless the cluster can grow.** On a cluster an autoscaler grows
  (:meth:`Allocator.set_growth`), a request beyond the total waits in the queue like any
  other, for nodes to join, and counts as *demand* (:meth:`Allocator.demand`), which the
  caller passes on to the autoscaler. The wait is bounded: a request that still exceeds
  the total after ``pending_timeout_s`` fails with
  :class:`~atune.errors.PendingResourcesTimeoutError` (an ``InfeasibleResourcesError``)
  naming the request, its bundles and the timeout. The clock runs only while the request
  exceeds the total: one that fits the total, and waits for other leases to end, waits
  as long as on a fixed cluster; if the total shrinks below it again, a new timeout starts.
* **Strict FIFO.** Requests are granted in arrival order. A request that does not fit
  the *free* capacity yet waits, and every later request waits behind it even if it
  would fit now (head-of-line blocking). This is deliberate: letting small requests
  overtake would starve a large one (a 4-GPU trial behind a stream of 1-GPU trials would
  never start). The cost is some idle capacity while the head waits; a scheduler that
  prefers packing can order its requests instead.
* **No polling.** Each waiter sleeps on its own event. Whoever frees capacity (a lease
  release, a cancelled waiter, a capacity change) grants waiters from the head of the
  queue, synchronously, and wakes them: a woken waiter already holds its lease.
* **Cancellation.** Cancelling a waiting ``acquire`` removes it from the queue, and if it
  was the head the next waiters are re-evaluated at once. If the cancellation arrives
  just as the lease was granted, the lease is released before the cancellation
  propagates, so a cancelled ``acquire`` never leaks resources. A holder should release
  its lease in ``finally`` (or hold it with ``async with``); :meth:`Lease.release` is
  idempotent.
* **Capacity changes.** :meth:`Allocator.update_capacity` follows the cluster as nodes
  join or leave. Waiters that no longer fit the new total fail with
  ``InfeasibleResourcesError`` (on a cluster that can grow they wait on, under their
  timeout); the rest are re-evaluated and may be granted. Leases
  already granted are unaffected, so usage may exceed a shrunken capacity until they are
  released; nothing new is granted meanwhile.
* **Per-experiment concurrency.** A scope with ``max_concurrent=n`` lets at most ``n`` of
  its requests hold or wait for pool resources at a time; further requests of that scope
  queue (FIFO) inside the scope, and do not block other experiments at the pool.
* **Leases outliving their scope.** :meth:`ResourceScope.detach` takes a lease out of
  its experiment's scope (its slot is returned) while the pool keeps counting it, and
  :meth:`ResourceScope.adopt` makes such a lease another scope's: how an idle runner kept
  warm between experiments holds its resources (:mod:`atune._controller._warm`).
* **Reclaiming idle holdings.** A callback set with :meth:`Allocator.on_shortage` is
  called (synchronously) whenever a request has to wait at the pool; the warm runners
  use it to give back what idle runners hold, so that they never make a trial wait.

Amounts are compared as integer micro-units, so ten leases of 0.1 CPU fit in 1.0 CPU.
The allocator is not thread-safe: use it from the event loop's thread only. It imports
no Ray; the Ray backend reads the cluster's resources and calls ``update_capacity``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

import anyio
import anyio.lowlevel
import msgspec

from atune.errors import ConfigError, InfeasibleResourcesError, PendingResourcesTimeoutError
from atune.execution._resources import (
    format_resources,
    from_units,
    normalize_resources,
    to_units,
)
from atune.execution.placement_groups import PlacementGroupFactory

__all__ = ["Allocator", "AllocatorSnapshot", "Lease", "ResourceScope"]


class AllocatorSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The state of an :class:`Allocator` at one moment, for logs and debugging.

    Attributes:
        capacity: Total capacity.
        in_use: Resources held by leases (may exceed a capacity that just shrank).
        available: Capacity minus use, per capacity key, never below zero.
        num_leases: Leases granted and not yet released.
        waiting: The summed requests of the waiters, head of the queue first.
        pending_timeout_s: How long a request beyond the total may wait for the cluster
            to grow; None on a fixed cluster (see :meth:`Allocator.set_growth`).
    """

    capacity: dict[str, float]
    in_use: dict[str, float]
    available: dict[str, float]
    num_leases: int
    waiting: list[dict[str, float]]
    pending_timeout_s: float | None = None


class Lease:
    """Resources granted to one request; hand them back with :meth:`release`.

    Usable as an async context manager that releases on exit::

        async with await allocator.acquire(pgf) as lease:
            ...

    Leases are created by the allocator only.
    """

    __slots__ = ("_allocator", "_released", "_request", "_scope", "_units")

    def __init__(
        self, allocator: Allocator, request: PlacementGroupFactory, units: dict[str, int]
    ) -> None:
        self._allocator = allocator
        self._request = request
        self._units = units
        self._scope: ResourceScope | None = None
        self._released = False

    @property
    def request(self) -> PlacementGroupFactory:
        """The request this lease was granted for."""
        return self._request

    @property
    def released(self) -> bool:
        """True once :meth:`release` has been called."""
        return self._released

    def release(self) -> None:
        """Return the resources to the pool and wake waiters that now fit.

        Idempotent: calls after the first do nothing. Synchronous, so it is safe in a
        ``finally`` block of a cancelled task.
        """
        if self._released:
            return
        self._released = True
        scope, self._scope = self._scope, None
        if scope is not None:
            scope._lease_released(self._units)
        self._allocator._return(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {format_resources(from_units(self._units))} {state}>"


class _Waiter:
    """One pending ``acquire``: granted (``lease``) or failed (``error``) by others.

    ``wake`` is set when it is granted or failed, and when its ``deadline`` (the
    ``anyio.current_time()`` by which a request beyond the total fails) changes.
    """

    __slots__ = ("deadline", "error", "lease", "request", "units", "wake")

    def __init__(self, request: PlacementGroupFactory, units: dict[str, int]) -> None:
        self.request = request
        self.units = units
        self.wake = anyio.Event()
        self.lease: Lease | None = None
        self.error: InfeasibleResourcesError | None = None
        self.deadline: float | None = None

    @property
    def done(self) -> bool:
        return self.lease is not None or self.error is not None


class Allocator:
    """The shared pool of cluster resources. See the module docstring for semantics.

    Args:
        capacity: Total resources, e.g. ``{"CPU": 8, "GPU": 1, "memory": 16e9}``.
            ``cpu``/``gpu`` are read as ``CPU``/``GPU``; a missing key means none.

    Raises:
        ConfigError: An amount is negative or not a number.
    """

    def __init__(self, capacity: Mapping[str, float]) -> None:
        self._capacity = to_units(normalize_resources(capacity))
        self._in_use: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()
        self._num_leases = 0
        self._on_shortage: Callable[[], None] | None = None
        self._leases: set[Lease] = set()
        self._pending_timeout_s: float | None = None
        self._demand_changed: anyio.Event | None = None  # made when someone waits

    @property
    def capacity(self) -> dict[str, float]:
        """Total capacity (a copy)."""
        return from_units(self._capacity)

    @property
    def in_use(self) -> dict[str, float]:
        """Resources held by unreleased leases (a copy; unused keys left out)."""
        return from_units(self._in_use)

    @property
    def available(self) -> dict[str, float]:
        """Free capacity per capacity key, never below zero (a copy)."""
        return from_units(
            {key: max(0, cap - self._in_use.get(key, 0)) for key, cap in self._capacity.items()}
        )

    @property
    def num_waiting(self) -> int:
        """Requests waiting at the pool for capacity (not counting scope slot waits)."""
        return len(self._waiters)

    @property
    def pending_timeout_s(self) -> float | None:
        """How long a request beyond the total waits for growth; None: a fixed cluster."""
        return self._pending_timeout_s

    def set_growth(self, pending_timeout_s: float | None) -> None:
        """Say whether the cluster can grow, and how long a request may wait for it.

        Args:
            pending_timeout_s: Seconds a request beyond the total capacity waits for the
                cluster to grow before it fails (``math.inf``: no limit); None for a
                fixed cluster, where such a request fails at once. Waiters already
                queued follow the new setting: on a fixed cluster those beyond the total
                fail now; on a growing one each gets the new timeout from now.

        Raises:
            ValueError: ``pending_timeout_s`` is not None or a number > 0.
        """
        if pending_timeout_s is not None and (
            isinstance(pending_timeout_s, bool)
            or not isinstance(pending_timeout_s, (int, float))
            or not pending_timeout_s > 0
        ):
            raise ValueError(
                f"pending_timeout_s must be None or a number > 0, got {pending_timeout_s!r}"
            )
        if pending_timeout_s == self._pending_timeout_s:
            return
        self._pending_timeout_s = pending_timeout_s
        for waiter in self._waiters:
            waiter.deadline = None
        self._recheck_waiters()

    def demand(self) -> list[dict[str, float]]:
        """What the cluster must hold at once for every request to be served.

        The bundles of the held leases and of the waiting requests, while any request
        waits at the pool; ``[]`` when none waits (the cluster already holds what is
        used). This is what is passed on to an autoscaler
        (``ray.autoscaler.sdk.request_resources(bundles=...)``, which asks for the
        cluster's total, not for an increment).
        """
        if not self._waiters:
            return []
        requests = [lease.request for lease in self._leases]
        requests += [waiter.request for waiter in self._waiters]
        return [bundle for request in requests for bundle in request.bundles if bundle]

    def demand_changed(self) -> anyio.Event:
        """An event set when :meth:`demand` may next change (a request queued, granted,
        released or left)."""
        if self._demand_changed is None:
            self._demand_changed = anyio.Event()
        return self._demand_changed

    def on_shortage(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` each time a request has to wait at the pool (None: no one).

        It runs synchronously, just after the request joined the queue, so a lease it
        releases at once is granted to that request; it must not raise.
        """
        self._on_shortage = callback

    def snapshot(self) -> AllocatorSnapshot:
        """Capture capacity, use and the waiting queue, for logs and debugging."""
        return AllocatorSnapshot(
            capacity=self.capacity,
            in_use=self.in_use,
            available=self.available,
            num_leases=self._num_leases,
            waiting=[from_units(waiter.units) for waiter in self._waiters],
            pending_timeout_s=self._pending_timeout_s,
        )

    def scope(self, *, max_concurrent: int | None = None) -> ResourceScope:
        """A view of this pool for one experiment, with its own concurrency limit.

        Args:
            max_concurrent: Most leases the scope may hold or wait for at the pool at a
                time; None for no limit.

        Returns:
            A new :class:`ResourceScope` drawing from this allocator.

        Raises:
            ConfigError: ``max_concurrent`` is not a positive int or None.
        """
        return ResourceScope(self, max_concurrent=max_concurrent)

    def check_feasible(self, request: PlacementGroupFactory) -> None:
        """Raise if ``request`` can never fit the total capacity; never waits.

        On a cluster that can grow (:meth:`set_growth`) every request passes.

        Args:
            request: The resources a trial asks for.

        Raises:
            InfeasibleResourcesError: Naming the summed request and the capacity.
        """
        units = to_units(request.required_resources)
        if self._pending_timeout_s is None and not self._fits(units, self._capacity, {}):
            raise self._infeasible(units)

    async def acquire(self, request: PlacementGroupFactory) -> Lease:
        """Wait until ``request`` fits the free capacity, in FIFO order, and reserve it.

        Args:
            request: The resources a trial asks for (the sum of its bundles is reserved).

        Returns:
            The :class:`Lease`; release it when the trial's resources are free again.

        Raises:
            InfeasibleResourcesError: At once if the request exceeds the total capacity,
                or later if a capacity change makes it so while it waits (on a fixed
                cluster).
            PendingResourcesTimeoutError: On a cluster that can grow, the request
                exceeded the total capacity for ``pending_timeout_s``.
        """
        await anyio.lowlevel.checkpoint()
        units = to_units(request.required_resources)
        if self._pending_timeout_s is None and not self._fits(units, self._capacity, {}):
            raise self._infeasible(units)
        if not self._waiters and self._fits(units, self._capacity, self._in_use):
            return self._grant(request, units)  # no await after granting: nothing to leak
        waiter = _Waiter(request, units)
        self._waiters.append(waiter)
        self._arm(waiter)
        self._signal_demand()
        if self._on_shortage is not None:
            self._on_shortage()
        try:
            while not waiter.done:
                waiter.wake = anyio.Event()
                deadline = math.inf if waiter.deadline is None else waiter.deadline
                with anyio.move_on_after(deadline - anyio.current_time()):
                    await waiter.wake.wait()
                if not waiter.done and deadline <= anyio.current_time():
                    self._time_out(waiter)
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.lease is not None
        return waiter.lease

    def update_capacity(self, capacity: Mapping[str, float]) -> None:
        """Replace the total capacity; fail waiters that can no longer fit, grant others.

        Leases already granted keep their resources even if use now exceeds capacity.

        Args:
            capacity: The new total, in the same form as the constructor's.

        Raises:
            ConfigError: An amount is negative or not a number.
        """
        self._capacity = to_units(normalize_resources(capacity))
        self._recheck_waiters()

    # -- internals ---------------------------------------------------------------------

    def _recheck_waiters(self) -> None:
        """After a change of capacity or growth: fail, re-time or grant the waiters."""
        still_waiting: deque[_Waiter] = deque()
        for waiter in self._waiters:
            if self._pending_timeout_s is not None or self._fits(waiter.units, self._capacity, {}):
                still_waiting.append(waiter)
                self._arm(waiter)
            else:
                waiter.error = self._infeasible(waiter.units)
                waiter.wake.set()
        changed = len(still_waiting) != len(self._waiters)
        self._waiters = still_waiting
        self._dispatch()
        if changed:
            self._signal_demand()

    def _arm(self, waiter: _Waiter) -> None:
        """Start (or stop) the timeout of a waiter beyond (or within) the total."""
        beyond = self._pending_timeout_s is not None and not self._fits(
            waiter.units, self._capacity, {}
        )
        if beyond and waiter.deadline is None:
            assert self._pending_timeout_s is not None
            waiter.deadline = anyio.current_time() + self._pending_timeout_s
        elif not beyond and waiter.deadline is not None:
            waiter.deadline = None
        else:
            return
        waiter.wake.set()  # its acquire picks up the new deadline

    def _time_out(self, waiter: _Waiter) -> None:
        """Fail a waiter whose request exceeded the total for the whole timeout."""
        self._waiters.remove(waiter)
        request, capacity = waiter.request, self.capacity
        summed = from_units(waiter.units)
        timeout = self._pending_timeout_s
        waiter.error = PendingResourcesTimeoutError(
            f"request {format_resources(summed)} (bundles {request.bundles}, strategy "
            f"{request.strategy}) was not granted within the pending-resources timeout of "
            f"{timeout:g} s: the cluster did not grow to hold it (capacity "
            f"{format_resources(capacity)}; {self._shortfall(waiter.units)}). The "
            f"autoscaler may have no node type that offers it, or reached its max_workers; "
            f"set ATUNE_PENDING_RESOURCES_TIMEOUT_S to wait longer",
            request=summed,
            capacity=capacity,
            bundles=request.bundles,
            timeout_s=timeout if timeout is not None else math.inf,
        )
        self._dispatch()  # it may have been the head that held the others back
        self._signal_demand()

    def _signal_demand(self) -> None:
        changed, self._demand_changed = self._demand_changed, None
        if changed is not None:
            changed.set()

    @staticmethod
    def _fits(
        units: Mapping[str, int], capacity: Mapping[str, int], used: Mapping[str, int]
    ) -> bool:
        return all(
            used.get(key, 0) + amount <= capacity.get(key, 0) for key, amount in units.items()
        )

    def _shortfall(self, units: Mapping[str, int]) -> str:
        request, capacity = from_units(units), self.capacity
        return ", ".join(
            f"{key} needs {amount} but the cluster has {capacity.get(key, 0.0)}"
            for key, amount in request.items()
            if units[key] > self._capacity.get(key, 0)
        )

    def _infeasible(self, units: Mapping[str, int]) -> InfeasibleResourcesError:
        request, capacity = from_units(units), self.capacity
        short = self._shortfall(units)
        return InfeasibleResourcesError(
            f"request {format_resources(request)} can never fit cluster capacity "
            f"{format_resources(capacity)} ({short})",
            request=request,
            capacity=capacity,
        )

    def _grant(self, request: PlacementGroupFactory, units: dict[str, int]) -> Lease:
        for key, amount in units.items():
            self._in_use[key] = self._in_use.get(key, 0) + amount
        self._num_leases += 1
        lease = Lease(self, request, units)
        self._leases.add(lease)
        return lease

    def _return(self, lease: Lease) -> None:
        self._leases.discard(lease)
        for key, amount in lease._units.items():
            left = self._in_use.get(key, 0) - amount
            if left:
                self._in_use[key] = left
            else:
                self._in_use.pop(key, None)
        self._num_leases -= 1
        self._dispatch()
        if self._waiters:  # the demand counts the held leases while requests wait
            self._signal_demand()

    def _dispatch(self) -> None:
        """Grant waiters from the head of the queue while the head fits."""
        granted = False
        while self._waiters and self._fits(self._waiters[0].units, self._capacity, self._in_use):
            waiter = self._waiters.popleft()
            waiter.lease = self._grant(waiter.request, waiter.units)
            waiter.wake.set()
            granted = True
        if granted:
            self._signal_demand()

    def _abandon(self, waiter: _Waiter) -> None:
        """Undo a waiter whose ``acquire`` was interrupted (cancelled) while waiting."""
        if waiter.lease is not None:
            waiter.lease.release()  # granted just as the cancellation arrived
        elif waiter.error is None:
            self._waiters.remove(waiter)
            self._dispatch()  # it may have been the head that held the others back
            self._signal_demand()


class _SlotWaiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class ResourceScope:
    """One experiment's view of a shared :class:`Allocator`, with a concurrency limit.

    :meth:`acquire` first takes one of the scope's ``max_concurrent`` slots (FIFO within
    the scope), then waits at the shared pool. The slot travels with the lease and is
    returned when the lease is released; a cancelled or failed ``acquire`` returns it at
    once. Create scopes with :meth:`Allocator.scope`.

    Args:
        allocator: The shared pool.
        max_concurrent: Most leases held or waited for at the pool at a time; None for no
            limit.

    Raises:
        ConfigError: ``max_concurrent`` is not a positive int or None.
    """

    def __init__(self, allocator: Allocator, *, max_concurrent: int | None = None) -> None:
        if max_concurrent is not None and (
            isinstance(max_concurrent, bool)
            or not isinstance(max_concurrent, int)
            or max_concurrent < 1
        ):
            raise ConfigError(
                f"max_concurrent must be a positive int or None, got {max_concurrent!r}",
                value=max_concurrent,
            )
        self._allocator = allocator
        self._max_concurrent = max_concurrent
        self._slots_taken = 0
        self._slot_waiters: deque[_SlotWaiter] = deque()
        self._num_leases = 0
        self._in_use: dict[str, int] = {}

    @property
    def allocator(self) -> Allocator:
        """The shared pool this scope draws from."""
        return self._allocator

    @property
    def max_concurrent(self) -> int | None:
        """The concurrency limit, or None."""
        return self._max_concurrent

    @property
    def num_leases(self) -> int:
        """Leases this scope holds (granted, not released)."""
        return self._num_leases

    @property
    def in_use(self) -> dict[str, float]:
        """Resources held by this scope's leases (a copy)."""
        return from_units(self._in_use)

    def check_feasible(self, request: PlacementGroupFactory) -> None:
        """Same as :meth:`Allocator.check_feasible` on the shared pool."""
        self._allocator.check_feasible(request)

    async def acquire(self, request: PlacementGroupFactory) -> Lease:
        """Wait for a slot of this scope, then for the request at the shared pool.

        Args:
            request: The resources a trial asks for.

        Returns:
            The :class:`Lease`; releasing it also frees the slot.

        Raises:
            InfeasibleResourcesError: At once if the request exceeds the total capacity,
                or later if a capacity change makes it so.
        """
        self._allocator.check_feasible(request)
        await self._take_slot()
        try:
            lease = await self._allocator.acquire(request)
        except BaseException:
            self._return_slot()
            raise
        self._attach(lease)
        return lease

    def detach(self, lease: Lease) -> None:
        """Take ``lease`` out of this scope; the shared pool keeps counting it.

        Its slot is returned to the scope (a waiting request of the scope may take it)
        and releasing the lease later returns its resources to the pool only. A lease of
        another scope, or a released one, is left as it is.

        Args:
            lease: A lease this scope granted.
        """
        if lease._scope is not self or lease.released:
            return
        lease._scope = None
        self._lease_released(lease._units)

    async def adopt(self, lease: Lease) -> None:
        """Count a lease that belongs to no scope (:meth:`detach`) as this scope's.

        Waits for one of the scope's slots first, as :meth:`acquire` does; the lease's
        resources stay reserved at the pool meanwhile. If cancelled while waiting, the
        lease is left as it was (still detached, still held).

        Args:
            lease: A held lease of this scope's allocator that no scope holds.

        Raises:
            ValueError: ``lease`` is released, belongs to a scope, or to another
                allocator.
        """
        if lease.released or lease._scope is not None or lease._allocator is not self._allocator:
            raise ValueError(f"lease={lease!r} cannot be adopted: it must be held and detached")
        await self._take_slot()
        self._attach(lease)

    def _attach(self, lease: Lease) -> None:
        lease._scope = self
        self._num_leases += 1
        for key, amount in lease._units.items():
            self._in_use[key] = self._in_use.get(key, 0) + amount

    async def _take_slot(self) -> None:
        limit = self._max_concurrent
        if not self._slot_waiters and (limit is None or self._slots_taken < limit):
            self._slots_taken += 1
            return
        waiter = _SlotWaiter()
        self._slot_waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._return_slot()
            else:
                self._slot_waiters.remove(waiter)
            raise

    def _return_slot(self) -> None:
        if self._slot_waiters:
            waiter = self._slot_waiters.popleft()  # hand the slot over; the count stays
            waiter.granted = True
            waiter.event.set()
        else:
            self._slots_taken -= 1

    def _lease_released(self, units: Mapping[str, int]) -> None:
        self._num_leases -= 1
        for key, amount in units.items():
            left = self._in_use.get(key, 0) - amount
            if left:
                self._in_use[key] = left
            else:
                self._in_use.pop(key, None)
        self._return_slot()
