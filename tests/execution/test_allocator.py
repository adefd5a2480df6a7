"""The async resource allocator: fit, FIFO, cancellation, capacity changes, scopes.

Tasks are sequenced with ``anyio.wait_all_tasks_blocked`` (every other task is parked
on an await) and explicit events; nothing here asserts on elapsed time.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from atune.errors import ConfigError, InfeasibleResourcesError
from atune.execution._allocator import Allocator, AllocatorSnapshot, Lease, ResourceScope
from atune.execution.placement_groups import PlacementGroupFactory

settle = anyio.wait_all_tasks_blocked


def cpus(amount: float) -> PlacementGroupFactory:
    return PlacementGroupFactory([{"CPU": amount}])


class Grabber:
    """Acquires in a task and records the lease (or error) for the test to inspect."""

    def __init__(self, pool: Allocator | ResourceScope, request: PlacementGroupFactory) -> None:
        self.pool = pool
        self.request = request
        self.lease: Lease | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            try:
                self.lease = await self.pool.acquire(self.request)
            except InfeasibleResourcesError as exc:
                self.error = exc
            except anyio.get_cancelled_exc_class():
                self.cancelled = True
                raise


async def test_requests_that_fit_are_granted_at_once() -> None:
    alloc = Allocator({"cpu": 2, "GPU": 1})
    a = await alloc.acquire(cpus(1))
    b = await alloc.acquire(PlacementGroupFactory([{"CPU": 1, "GPU": 1}]))
    assert alloc.in_use == {"CPU": 2.0, "GPU": 1.0}
    assert alloc.available == {"CPU": 0.0, "GPU": 0.0}
    assert alloc.capacity == {"CPU": 2.0, "GPU": 1.0}
    assert b.request == PlacementGroupFactory([{"CPU": 1, "GPU": 1}])
    a.release()
    b.release()
    assert alloc.in_use == {}
    assert alloc.available == {"CPU": 2.0, "GPU": 1.0}


async def test_multi_bundle_request_reserves_the_sum() -> None:
    alloc = Allocator({"CPU": 4})
    lease = await alloc.acquire(PlacementGroupFactory([{}, {"CPU": 2}, {"CPU": 1}]))
    assert alloc.in_use == {"CPU": 3.0}
    lease.release()


async def test_request_waits_until_a_release_frees_room() -> None:
    alloc = Allocator({"CPU": 2})
    held = await alloc.acquire(cpus(2))
    grabber = Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        assert grabber.lease is None
        assert alloc.snapshot().waiting == [{"CPU": 1.0}]
        held.release()
    assert grabber.lease is not None
    assert alloc.in_use == {"CPU": 1.0}


async def test_waiters_are_granted_in_arrival_order() -> None:
    alloc = Allocator({"CPU": 1})
    held = await alloc.acquire(cpus(1))
    order: list[int] = []

    async def worker(index: int) -> None:
        async with await alloc.acquire(cpus(1)):
            order.append(index)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(worker, index)
            await settle()  # make arrival order explicit
        assert len(alloc.snapshot().waiting) == 3
        held.release()
    assert order == [0, 1, 2]
    assert alloc.in_use == {}


async def test_strict_fifo_a_later_small_request_waits_behind_a_large_head() -> None:
    alloc = Allocator({"CPU": 2})
    held = await alloc.acquire(cpus(1))
    big, small = Grabber(alloc, cpus(2)), Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(big.run)
        await settle()
        tg.start_soon(small.run)
        await settle()
        # One CPU is free and ``small`` would fit, but ``big`` arrived first.
        assert alloc.available == {"CPU": 1.0}
        assert big.lease is None and small.lease is None
        held.release()
        await settle()
        assert big.lease is not None and small.lease is None
        big.lease.release()
    assert small.lease is not None
    assert alloc.in_use == {"CPU": 1.0}


async def test_cancelling_the_head_waiter_lets_the_next_one_in() -> None:
    alloc = Allocator({"CPU": 2})
    held = await alloc.acquire(cpus(1))
    big, small = Grabber(alloc, cpus(2)), Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(big.run)
        await settle()
        tg.start_soon(small.run)
        await settle()
        big.scope.cancel()
    assert big.cancelled and big.lease is None
    assert small.lease is not None
    assert alloc.in_use == {"CPU": 2.0}
    assert alloc.snapshot().waiting == []
    held.release()


async def test_cancelling_a_waiter_with_move_on_after_leaves_no_trace() -> None:
    alloc = Allocator({"CPU": 1})
    held = await alloc.acquire(cpus(1))
    with anyio.move_on_after(0) as scope:
        await alloc.acquire(cpus(1))
    assert scope.cancelled_caught
    assert alloc.snapshot().waiting == []
    held.release()
    assert alloc.in_use == {}
    # The pool still works after the abandoned wait.
    (await alloc.acquire(cpus(1))).release()


async def test_cancel_arriving_as_the_lease_is_granted_releases_it() -> None:
    alloc = Allocator({"CPU": 1})
    held = await alloc.acquire(cpus(1))
    task = asyncio.ensure_future(alloc.acquire(cpus(1)))
    await settle()
    held.release()  # grants the waiter a lease and sets its event ...
    assert alloc.in_use == {"CPU": 1.0}
    task.cancel()  # ... and the cancellation lands before the waiter resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert alloc.in_use == {}
    assert alloc.snapshot().num_leases == 0


async def test_cancelled_holder_releases_its_lease_in_finally() -> None:
    alloc = Allocator({"CPU": 1})
    started = anyio.Event()
    holder_scope = anyio.CancelScope()

    async def holder() -> None:
        with holder_scope:
            lease = await alloc.acquire(cpus(1))
            try:
                started.set()
                await anyio.sleep_forever()
            finally:
                lease.release()

    waiter = Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await started.wait()
        tg.start_soon(waiter.run)
        await settle()
        assert waiter.lease is None
        holder_scope.cancel()
    assert holder_scope.cancelled_caught
    assert waiter.lease is not None
    assert alloc.in_use == {"CPU": 1.0} and alloc.snapshot().num_leases == 1
    waiter.lease.release()
    assert alloc.in_use == {}


async def test_lease_release_is_idempotent_and_a_context_manager() -> None:
    alloc = Allocator({"CPU": 1})
    lease = await alloc.acquire(cpus(1))
    assert not lease.released
    lease.release()
    lease.release()
    assert lease.released
    assert alloc.in_use == {} and alloc.snapshot().num_leases == 0
    async with await alloc.acquire(cpus(1)) as held:
        assert alloc.in_use == {"CPU": 1.0}
    assert held.released and alloc.in_use == {}


async def test_infeasible_request_fails_at_once_naming_request_and_capacity() -> None:
    alloc = Allocator({"CPU": 2, "memory": 4e9})
    with pytest.raises(InfeasibleResourcesError) as info:
        await alloc.acquire(cpus(64))
    message = str(info.value)
    assert "request {'CPU': 64.0} can never fit cluster capacity {'CPU': 2.0" in message
    assert "'memory': 4000000000.0" in message
    assert info.value.request == {"CPU": 64.0}
    assert info.value.capacity == {"CPU": 2.0, "memory": 4e9}
    with pytest.raises(InfeasibleResourcesError, match=r"GPU needs 1.0 but the cluster has 0.0"):
        alloc.check_feasible(PlacementGroupFactory([{"CPU": 1, "GPU": 1}]))
    alloc.check_feasible(cpus(2))  # fits the total, even if not the free capacity
    assert alloc.snapshot().waiting == []


async def test_fractional_cpus_add_up_exactly() -> None:
    alloc = Allocator({"CPU": 1})
    leases = [await alloc.acquire(cpus(0.1)) for _ in range(10)]
    assert alloc.in_use == {"CPU": 1.0}
    assert alloc.available == {"CPU": 0.0}
    eleventh = Grabber(alloc, cpus(0.1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(eleventh.run)
        await settle()
        assert eleventh.lease is None
        leases[3].release()
    assert eleventh.lease is not None
    for lease in leases:
        lease.release()
    eleventh.lease.release()
    assert alloc.in_use == {}


async def test_capacity_growth_wakes_waiters() -> None:
    alloc = Allocator({"CPU": 2})
    held = await alloc.acquire(cpus(2))
    grabber = Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        alloc.update_capacity({"CPU": 3})
    assert grabber.lease is not None
    assert alloc.in_use == {"CPU": 3.0}
    held.release()


async def test_capacity_shrink_fails_waiters_that_no_longer_fit_and_grants_the_rest() -> None:
    alloc = Allocator({"CPU": 4})
    held = await alloc.acquire(cpus(2))
    big, small = Grabber(alloc, cpus(4)), Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(big.run)
        await settle()
        tg.start_soon(small.run)
        await settle()
        alloc.update_capacity({"CPU": 3})
    assert isinstance(big.error, InfeasibleResourcesError)
    assert "request {'CPU': 4.0} can never fit cluster capacity {'CPU': 3.0}" in str(big.error)
    assert small.lease is not None
    assert alloc.in_use == {"CPU": 3.0}
    held.release()
    small.lease.release()


async def test_capacity_below_use_keeps_leases_and_grants_nothing_new() -> None:
    alloc = Allocator({"CPU": 4})
    held = await alloc.acquire(cpus(3))
    alloc.update_capacity({"CPU": 2})
    assert alloc.in_use == {"CPU": 3.0} and alloc.available == {"CPU": 0.0}
    grabber = Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        assert grabber.lease is None
        held.release()
    assert grabber.lease is not None
    assert alloc.in_use == {"CPU": 1.0}


async def test_two_scopes_share_one_pool_without_oversubscribing() -> None:
    alloc = Allocator({"CPU": 4})
    experiments = [alloc.scope(), alloc.scope(max_concurrent=3)]
    used = 0.0
    peak = 0.0
    completed = 0

    async def trial(scope: ResourceScope, amount: float, steps: int) -> None:
        nonlocal used, peak, completed
        async with await scope.acquire(cpus(amount)):
            used += amount
            peak = max(peak, used)
            assert used <= 4.0
            for _ in range(steps):
                await anyio.lowlevel.checkpoint()
            used -= amount
        completed += 1

    async with anyio.create_task_group() as tg:
        for index in range(12):
            tg.start_soon(trial, experiments[0], 1.0, index % 3 + 1)
            tg.start_soon(trial, experiments[1], 2.0, index % 2 + 1)
    assert completed == 24
    assert peak == 4.0
    assert alloc.in_use == {}
    assert all(scope.num_leases == 0 and scope.in_use == {} for scope in experiments)


async def test_max_concurrent_limits_one_scope_only() -> None:
    alloc = Allocator({"CPU": 10})
    limited, free = alloc.scope(max_concurrent=2), alloc.scope()
    grabbers = [Grabber(limited, cpus(1)) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for grabber in grabbers:
            tg.start_soon(grabber.run)
        await settle()
        assert [g.lease is not None for g in grabbers] == [True, True, False, False]
        assert limited.num_leases == 2 and limited.in_use == {"CPU": 2.0}
        # The waiting limited requests do not hold up another experiment at the pool.
        other = await free.acquire(cpus(5))
        assert alloc.in_use == {"CPU": 7.0}
        grabbers[1].lease.release()  # type: ignore[union-attr]
        await settle()
        assert [g.lease is not None for g in grabbers] == [True, True, True, False]
        grabbers[0].lease.release()  # type: ignore[union-attr]
    assert all(g.lease is not None for g in grabbers)
    for grabber in grabbers:
        grabber.lease.release()  # type: ignore[union-attr]
    other.release()
    assert alloc.in_use == {} and limited.num_leases == 0


async def test_scope_returns_the_slot_when_acquire_is_cancelled_or_infeasible() -> None:
    alloc = Allocator({"CPU": 1})
    scope = alloc.scope(max_concurrent=1)
    held = await alloc.acquire(cpus(1))  # the pool is full, the scope's slot is free
    with anyio.move_on_after(0):
        await scope.acquire(cpus(1))  # takes the slot, then waits at the pool
    with pytest.raises(InfeasibleResourcesError):
        await scope.acquire(cpus(2))
    held.release()
    lease = await scope.acquire(cpus(1))  # would hang if a slot had leaked
    assert scope.num_leases == 1
    lease.release()
    assert scope.num_leases == 0


async def test_cancelled_slot_waiter_does_not_take_the_slot() -> None:
    alloc = Allocator({"CPU": 4})
    scope = alloc.scope(max_concurrent=1)
    first = await scope.acquire(cpus(1))
    second, third = Grabber(scope, cpus(1)), Grabber(scope, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(second.run)
        tg.start_soon(third.run)
        await settle()
        second.scope.cancel()
        await settle()
        first.release()
    assert second.cancelled and third.lease is not None
    third.lease.release()
    assert scope.num_leases == 0 and alloc.in_use == {}


async def test_snapshot() -> None:
    alloc = Allocator({"CPU": 2, "GPU": 1})
    held = await alloc.acquire(cpus(2))
    grabber = Grabber(alloc, PlacementGroupFactory([{"CPU": 1, "GPU": 1}]))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        assert alloc.snapshot() == AllocatorSnapshot(
            capacity={"CPU": 2.0, "GPU": 1.0},
            in_use={"CPU": 2.0},
            available={"CPU": 0.0, "GPU": 1.0},
            num_leases=1,
            waiting=[{"CPU": 1.0, "GPU": 1.0}],
        )
        held.release()
    assert repr(grabber.lease) == "<Lease {'CPU': 1.0, 'GPU': 1.0} held>"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_max_concurrent(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_concurrent"):
        Allocator({"CPU": 1}).scope(max_concurrent=bad)  # type: ignore[arg-type]


def test_invalid_capacity() -> None:
    with pytest.raises(ConfigError, match="'CPU' must not be negative, got -2"):
        Allocator({"CPU": -2})
    alloc = Allocator({"CPU": 1})
    with pytest.raises(ConfigError, match="'GPU' must be a number"):
        alloc.update_capacity({"GPU": None})  # type: ignore[dict-item]


# ------------------------------------------------ leases outliving their scope (warm runners)
async def test_a_detached_lease_stays_held_and_frees_its_slot() -> None:
    allocator = Allocator({"CPU": 2})
    scope = allocator.scope(max_concurrent=1)
    lease = await scope.acquire(cpus(1))
    scope.detach(lease)
    assert scope.num_leases == 0 and scope.in_use == {}
    assert allocator.in_use == {"CPU": 1.0}  # the pool still counts it
    second = await scope.acquire(cpus(1))  # the slot came back
    lease.release()
    assert allocator.in_use == {"CPU": 1.0} and scope.num_leases == 1
    second.release()
    assert allocator.in_use == {} and scope.num_leases == 0


async def test_adopt_counts_a_detached_lease_in_another_scope() -> None:
    allocator = Allocator({"CPU": 2})
    first, second = allocator.scope(), allocator.scope(max_concurrent=1)
    lease = await first.acquire(cpus(1))
    first.detach(lease)
    await second.adopt(lease)
    assert second.num_leases == 1 and second.in_use == {"CPU": 1.0}
    with pytest.raises(ValueError, match="adopted"):
        await first.adopt(lease)  # it belongs to a scope now
    lease.release()
    assert second.num_leases == 0 and allocator.in_use == {}
    with pytest.raises(ValueError, match="adopted"):
        await first.adopt(lease)  # released


async def test_adopt_waits_for_a_slot_and_a_cancelled_adopt_leaves_the_lease_held() -> None:
    allocator = Allocator({"CPU": 2})
    source, scope = allocator.scope(), allocator.scope(max_concurrent=1)
    lease = await source.acquire(cpus(1))
    source.detach(lease)
    busy = await scope.acquire(cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(scope.adopt, lease)
        await settle()
        assert scope.num_leases == 1  # adopt waits for the scope's one slot
        tg.cancel_scope.cancel()
    assert not lease.released and allocator.in_use == {"CPU": 2.0}
    busy.release()
    await scope.adopt(lease)  # the slot is free now
    assert scope.num_leases == 1
    lease.release()


async def test_on_shortage_is_called_when_a_request_waits() -> None:
    allocator = Allocator({"CPU": 1})
    held = await allocator.acquire(cpus(1))
    calls: list[int] = []

    def reclaim() -> None:
        calls.append(allocator.num_waiting)
        held.release()  # released at once: the waiting request gets it

    allocator.on_shortage(reclaim)
    lease = await allocator.acquire(cpus(1))
    assert calls == [1] and not lease.released and allocator.num_waiting == 0
    lease.release()
    await (await allocator.acquire(cpus(1))).__aexit__(None, None, None)
    assert calls == [1]  # a request that fits at once is no shortage
