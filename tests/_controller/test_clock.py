"""The driver's clocks: the wall clock, and virtual time that jumps when every task waits."""

from __future__ import annotations

import time

import anyio
import pytest

from atune._controller._clock import Clock, VirtualClock, WallClock


async def test_virtual_sleeps_wake_in_deadline_order_at_their_exact_times() -> None:
    woke: list[tuple[str, float]] = []
    real_start = time.monotonic()
    async with VirtualClock() as clock:

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "late", 3600.0)
            tg.start_soon(sleeper, "early", 1.5)
            tg.start_soon(sleeper, "tie-first", 60.0)
            tg.start_soon(sleeper, "tie-second", 60.0)
        assert clock.monotonic() == 3600.0
        assert clock.time() == 1_704_067_200.0 + 3600.0
    assert woke == [("early", 1.5), ("tie-first", 60.0), ("tie-second", 60.0), ("late", 3600.0)]
    assert time.monotonic() - real_start < 30  # an hour of virtual time, not of real time


async def test_virtual_time_stands_still_while_a_task_can_run() -> None:
    async with VirtualClock() as clock:
        seen: list[float] = []

        async def busy() -> None:
            for _ in range(200):  # runnable all along: no jump may happen meanwhile
                seen.append(clock.monotonic())
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 5.0)
            tg.start_soon(busy)
        assert seen == [0.0] * 200
        assert clock.monotonic() == 5.0


async def test_virtual_time_stands_still_while_run_sync_work_is_in_a_thread() -> None:
    async with VirtualClock() as clock:
        seen: list[float] = []

        async def blocking_work() -> None:
            await clock.run_sync(time.sleep, 0.05)  # real time, in a worker thread
            seen.append(clock.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 1.0)
            tg.start_soon(blocking_work)
        assert seen == [0.0]


async def test_virtual_move_on_after_cancels_at_the_virtual_deadline() -> None:
    async with VirtualClock() as clock:
        with clock.move_on_after(2.0) as scope:
            await clock.sleep(10.0)
        assert scope.cancelled_caught
        assert clock.monotonic() == 2.0
        with clock.move_on_after(5.0) as scope:  # left early: its timer must not fire
            await clock.sleep(1.0)
        assert not scope.cancelled_caught
        await clock.sleep(10.0)
        assert clock.monotonic() == 13.0


async def test_a_cancelled_virtual_sleep_leaves_no_timer_behind() -> None:
    async with VirtualClock() as clock:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await clock.sleep(100.0)
        await clock.sleep(1.0)
        assert clock.monotonic() == 1.0


async def test_virtual_call_later_runs_at_its_deadline_unless_cancelled() -> None:
    async with VirtualClock() as clock:
        ran: list[tuple[str, float]] = []
        clock.call_later(3.0, lambda: ran.append(("later", clock.monotonic())))
        clock.call_later(1.0, lambda: ran.append(("sooner", clock.monotonic())))
        cancelled = clock.call_later(2.0, lambda: ran.append(("cancelled", clock.monotonic())))
        cancelled.cancel()
        await clock.sleep(5.0)
        assert ran == [("sooner", 1.0), ("later", 3.0)]
        with pytest.raises(ValueError, match="-1"):
            clock.call_later(-1, lambda: None)


async def test_virtual_clock_jump_and_bad_lengths() -> None:
    clock = VirtualClock(start=10.0, epoch=0.0)
    clock.jump(5.0)
    assert (clock.monotonic(), clock.time()) == (15.0, 15.0)
    with pytest.raises(ValueError, match="-1"):
        clock.jump(-1)
    with pytest.raises(ValueError, match="nan"):
        await clock.sleep(float("nan"))


async def test_the_wall_clock_is_real_time() -> None:
    clock: Clock = WallClock()
    assert abs(clock.time() - time.time()) < 5
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() > before
    with clock.move_on_after(0.01) as scope:
        await clock.sleep(10)
    assert scope.cancelled_caught
    assert await clock.run_sync(sum, [1, 2]) == 3
    ran = anyio.Event()
    cancelled: list[str] = []
    clock.call_later(0.01, ran.set)
    clock.call_later(0.01, lambda: cancelled.append("ran")).cancel()
    with anyio.fail_after(10):
        await ran.wait()
    await clock.sleep(0.05)  # past the cancelled one's time
    assert cancelled == []
