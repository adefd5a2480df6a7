"""The allocator on a cluster that can grow: requests beyond the total wait, bounded.

What the growth mode changes (see ``Allocator.set_growth``): a request larger than the
cluster waits for nodes instead of failing at once, is counted in the demand passed to the
autoscaler, and fails with ``PendingResourcesTimeoutError`` when the cluster has not grown
to hold it within the timeout. The timeouts here are short real ones (tenths of a
second to a second), awaited, never measured.
"""

from __future__ import annotations

import math
import pickle

import anyio
import pytest

from atune.errors import InfeasibleResourcesError, PendingResourcesTimeoutError
from atune.execution._allocator import Allocator, Lease
from atune.execution.placement_groups import PlacementGroupFactory

settle = anyio.wait_all_tasks_blocked


def cpus(amount: float) -> PlacementGroupFactory:
    return PlacementGroupFactory([{"CPU": amount}])


class Grabber:
    def __init__(self, pool: Allocator, request: PlacementGroupFactory) -> None:
        self.pool = pool
        self.request = request
        self.lease: Lease | None = None
        self.error: InfeasibleResourcesError | None = None

    async def run(self) -> None:
        try:
            self.lease = await self.pool.acquire(self.request)
        except InfeasibleResourcesError as exc:
            self.error = exc


def growing(capacity: dict[str, float], timeout_s: float = math.inf) -> Allocator:
    allocator = Allocator(capacity)
    allocator.set_growth(timeout_s)
    return allocator


async def test_a_request_beyond_the_total_waits_and_is_granted_when_the_cluster_grows() -> None:
    alloc = growing({"CPU": 0})
    alloc.check_feasible(cpus(4))  # passes: the cluster may grow
    grabber = Grabber(alloc, cpus(2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        assert grabber.lease is None and grabber.error is None
        assert alloc.snapshot().waiting == [{"CPU": 2.0}]
        alloc.update_capacity({"CPU": 1})  # one small node: still too small, still waits
        await settle()
        assert grabber.lease is None and grabber.error is None
        alloc.update_capacity({"CPU": 2})
    assert grabber.lease is not None and alloc.in_use == {"CPU": 2.0}
    grabber.lease.release()


async def test_the_demand_is_what_is_held_and_waits_while_anything_waits() -> None:
    alloc = growing({"CPU": 2})
    held = await alloc.acquire(PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]))
    assert alloc.demand() == []  # nothing waits: the cluster holds what is used
    changed = alloc.demand_changed()
    grabber = Grabber(alloc, PlacementGroupFactory([{"CPU": 2, "GPU": 1}]))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        assert changed.is_set()
        assert sorted(map(str, alloc.demand())) == sorted(
            map(str, [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}])
        )
        changed = alloc.demand_changed()
        alloc.update_capacity({"CPU": 4, "GPU": 1})
    assert changed.is_set() and alloc.demand() == []
    assert grabber.lease is not None
    held.release()
    grabber.lease.release()


async def test_a_request_the_cluster_never_grows_for_fails_after_the_timeout() -> None:
    alloc = growing({"CPU": 2}, timeout_s=0.2)
    changed = alloc.demand_changed()
    with pytest.raises(PendingResourcesTimeoutError) as info:
        await alloc.acquire(PlacementGroupFactory([{"CPU": 2}, {"CPU": 2}], strategy="SPREAD"))
    error = info.value
    assert isinstance(error, InfeasibleResourcesError)  # fails the trial without a retry
    message = str(error)
    assert "request {'CPU': 4.0} (bundles [{'CPU': 2.0}, {'CPU': 2.0}], strategy SPREAD)" in (
        message
    )
    assert "not granted within the pending-resources timeout of 0.2 s" in message
    assert "CPU needs 4.0 but the cluster has 2.0" in message
    assert "ATUNE_PENDING_RESOURCES_TIMEOUT_S" in message
    assert error.request == {"CPU": 4.0} and error.capacity == {"CPU": 2.0}
    assert error.bundles == [{"CPU": 2.0}, {"CPU": 2.0}] and error.timeout_s == 0.2
    assert changed.is_set() and alloc.demand() == [] and alloc.num_waiting == 0
    copy = pickle.loads(pickle.dumps(error))  # how it reaches the ResultGrid
    assert type(copy) is PendingResourcesTimeoutError and str(copy) == message
    assert copy.bundles == error.bundles and copy.timeout_s == 0.2


async def test_a_timed_out_head_lets_the_requests_behind_it_in() -> None:
    alloc = growing({"CPU": 2}, timeout_s=1.0)  # longer than the two settles take
    big, small = Grabber(alloc, cpus(8)), Grabber(alloc, cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(big.run)
        await settle()
        tg.start_soon(small.run)
        await settle()
        assert small.lease is None  # FIFO: behind the head, although it fits
    assert isinstance(big.error, PendingResourcesTimeoutError)
    assert small.lease is not None and small.error is None
    small.lease.release()


async def test_a_request_within_the_total_waits_for_use_without_a_timeout() -> None:
    alloc = growing({"CPU": 2}, timeout_s=0.1)
    held = await alloc.acquire(cpus(2))
    grabber = Grabber(alloc, cpus(2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await anyio.sleep(0.3)  # three timeouts long: no timeout applies to it
        assert grabber.lease is None and grabber.error is None
        held.release()
    assert grabber.lease is not None
    grabber.lease.release()


async def test_growing_in_time_stops_the_timeout_and_shrinking_starts_a_new_one() -> None:
    alloc = growing({"CPU": 1}, timeout_s=1.0)
    held = await alloc.acquire(cpus(1))
    grabber = Grabber(alloc, cpus(2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(grabber.run)
        await settle()
        alloc.update_capacity({"CPU": 2})  # fits the total now; waits for ``held``
        await anyio.sleep(1.5)  # longer than the timeout: it no longer applies
        assert grabber.error is None and grabber.lease is None
        alloc.update_capacity({"CPU": 1})  # a node left: the clock runs again
    assert isinstance(grabber.error, PendingResourcesTimeoutError)
    assert "the cluster has 1.0" in str(grabber.error)
    held.release()


async def test_a_cancelled_pending_request_leaves_no_trace() -> None:
    alloc = growing({"CPU": 0})
    with anyio.move_on_after(0.05):
        await alloc.acquire(cpus(1))
    assert alloc.num_waiting == 0 and alloc.demand() == [] and alloc.in_use == {}


async def test_turning_growth_off_fails_the_requests_beyond_the_total() -> None:
    alloc = growing({"CPU": 1})
    big, small = Grabber(alloc, cpus(2)), Grabber(alloc, cpus(1))
    held = await alloc.acquire(cpus(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(big.run)
        tg.start_soon(small.run)
        await settle()
        alloc.set_growth(None)
        await settle()
        assert type(big.error) is InfeasibleResourcesError
        held.release()
    assert small.lease is not None
    small.lease.release()
    with pytest.raises(InfeasibleResourcesError, match="can never fit"):
        alloc.check_feasible(cpus(2))


@pytest.mark.parametrize("bad", [0, -1.0, True, "10", math.nan])
def test_set_growth_rejects_a_bad_timeout(bad: object) -> None:
    with pytest.raises(ValueError, match="pending_timeout_s"):
        Allocator({"CPU": 1}).set_growth(bad)  # type: ignore[arg-type]


async def test_a_fixed_cluster_still_fails_at_once() -> None:
    alloc = Allocator({"CPU": 2})
    assert alloc.pending_timeout_s is None and alloc.snapshot().pending_timeout_s is None
    with pytest.raises(InfeasibleResourcesError) as info:
        await alloc.acquire(cpus(4))
    assert type(info.value) is InfeasibleResourcesError
    assert alloc.demand() == []
