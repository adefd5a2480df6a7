"""``RunnerPool`` against the scripted runner: reuse, fallback to a fresh runner, and
pipelined launches (taken, busy then taken at the next turn, freed, declined, killed)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from _controller._scripted import ScriptedBackend
from atune._controller._clock import WallClock
from atune._controller._pool import RunnerPool
from atune._controller._warm import WarmPlace, WarmRunners
from atune._trial import Trial
from atune.execution._allocator import Allocator
from atune.execution._protocol import ErrorInfo, LaunchOutcome, TrainBudget, TrainOutcome
from atune.execution.placement_groups import PlacementGroupFactory
from atune.trainable._session import TrialInfo

pytestmark = pytest.mark.timeout(30)

_BUDGET = TrainBudget(max_results=1)
_CPU = PlacementGroupFactory([{"CPU": 1}])


def _pool(
    tmp_path: Path, *, iterations: int = 2, cpus: float = 2.0, **scripts: object
) -> RunnerPool:
    backend = ScriptedBackend(
        WallClock(),
        capacity={"CPU": cpus},
        step_s=0,
        iterations=iterations,
        scripts=scripts,  # type: ignore[arg-type]
    )
    return RunnerPool(backend, Allocator(backend.capacity()).scope(), reuse=True)


def _backend(pool: RunnerPool) -> ScriptedBackend:
    assert isinstance(pool.backend, ScriptedBackend)
    return pool.backend


def _trial(tmp_path: Path, trial_id: str, x: int = 1) -> Trial:
    return Trial(trial_id, f"t_{trial_id}", trial_id, {"x": x}, "", _CPU, str(tmp_path))


async def _acquire(
    pool: RunnerPool, tmp_path: Path, trial_id: str, after: str | None = None
) -> tuple[bool, TrainOutcome | None]:
    trial = _trial(tmp_path, trial_id)
    info = TrialInfo(trial_id=trial_id, trial_dir=str(tmp_path / trial_id))
    return await pool.acquire(trial, info, None, _BUDGET, after=after)


async def _until_returned(pool: RunnerPool, trial_id: str) -> None:
    while not (await pool.runner(trial_id).train(_BUDGET)).returned:
        pass


def _error() -> LaunchOutcome:
    return LaunchOutcome(
        error=ErrorInfo(type_name="builtins.ValueError", message="no reset", traceback="")
    )


# ---------------------------------------------------------------- reuse / fallback
async def test_a_cached_runner_is_reset_for_the_next_trial(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    assert (await _acquire(pool, tmp_path, "a"))[0] is False  # a fresh runner
    await _until_returned(pool, "a")
    assert await pool.release("a", kill=False) == ("cached", "")
    reused, trained = await _acquire(pool, tmp_path, "b")
    assert reused and trained is not None and trained.results[0]["training_iteration"] == 1
    backend = _backend(pool)
    assert len(backend.runners) == 1 and backend.calls_of("reuse") == ["b"]
    await pool.stop_all()


@pytest.mark.parametrize(
    "answer",
    [lambda runner, request: LaunchOutcome(declined=True), lambda runner, request: _error()],
    ids=["declined", "error"],
)
async def test_a_reset_that_fails_falls_back_to_a_fresh_runner(
    tmp_path: Path, answer: object
) -> None:
    pool = _pool(tmp_path, reuse=answer)
    await _acquire(pool, tmp_path, "a")
    await _until_returned(pool, "a")
    await pool.release("a", kill=False)
    reused, trained = await _acquire(pool, tmp_path, "b")
    backend = _backend(pool)
    assert not reused and trained is not None  # b still runs, on a runner of its own
    assert len(backend.runners) == 2 and backend.runners[0].killed
    assert backend.runners[1].trial_id == "b"
    await pool.stop_all()


# --------------------------------------------------------------------- pipelining
async def test_a_queued_launch_takes_the_runner_behind_the_trials_last_call(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path, iterations=2)
    backend = _backend(pool)
    await _acquire(pool, tmp_path, "a")  # a's first result; one more before it returns
    got: list[tuple[bool, TrainOutcome | None]] = []
    async with anyio.create_task_group() as tg:

        async def queue_b() -> None:
            got.append(await _acquire(pool, tmp_path, "b", after="a"))

        tg.start_soon(queue_b)
        await anyio.wait_all_tasks_blocked()
        # a still goes on: the runner answered busy and touched nothing.
        assert backend.calls_of("queued") == ["b"] and backend.runners[0].trial_id == "a"
        assert (await pool.runner("a").train(_BUDGET)).returned  # a's last call
    [(reused, trained)] = got
    assert reused and trained is not None and trained.results[0]["training_iteration"] == 1
    # Re-sent once, at a's call: in the runner's queue before that call returned.
    log = backend.log
    assert backend.calls_of("queued") == ["b", "b"]
    assert log.index(("queued", "b"), 2) < log.index(("train returned", "a"), 2)
    assert len(backend.runners) == 1
    # a lets go of the runner b holds now: it stays b's.
    assert await pool.release("a", kill=False) == (
        "cached",
        "handed over to the trial queued on it",
    )
    assert not backend.runners[0].released
    await pool.stop_all()


async def test_a_busy_queued_launch_is_not_resent_until_the_trial_makes_a_call(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path, iterations=3)
    backend = _backend(pool)
    await _acquire(pool, tmp_path, "a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire, pool, tmp_path, "b", "a")
        await anyio.sleep(0.1)  # a makes no call meanwhile: nothing to queue behind
        assert backend.calls_of("queued") == ["b"]
        await pool.runner("a").train(_BUDGET)
        await anyio.wait_all_tasks_blocked()
        assert backend.calls_of("queued") == ["b", "b"]  # once per call of a
        await _until_returned(pool, "a")
    await pool.stop_all()


async def test_a_trial_let_go_of_while_going_hands_its_runner_to_the_queued_launch(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path, iterations=5)
    backend = _backend(pool)
    await _acquire(pool, tmp_path, "a")
    got: list[tuple[bool, TrainOutcome | None]] = []
    async with anyio.create_task_group() as tg:

        async def queue_b() -> None:
            got.append(await _acquire(pool, tmp_path, "b", after="a"))

        tg.start_soon(queue_b)
        await anyio.wait_all_tasks_blocked()
        # a is stopped by the controller (a scheduler) while it would go on.
        assert await pool.release("a", kill=False) == (
            "cached",
            "handed over to the trial queued on it",
        )
    [(reused, _)] = got
    assert reused and backend.calls_of("reuse") == ["b"]  # reset as a plain reuse
    assert len(backend.runners) == 1 and backend.runners[0].trial_id == "b"
    await pool.stop_all()


async def test_a_declined_queued_launch_falls_back_to_a_fresh_runner(tmp_path: Path) -> None:
    pool = _pool(
        tmp_path, iterations=1, queued=lambda runner, request: LaunchOutcome(declined=True)
    )
    backend = _backend(pool)
    await _acquire(pool, tmp_path, "a")  # a returned in its launch
    reused, trained = await _acquire(pool, tmp_path, "b", after="a")
    assert not reused and trained is not None
    assert len(backend.runners) == 2 and backend.runners[1].trial_id == "b"
    # a's runner is still a's: a lets go of it normally afterwards.
    assert not backend.runners[0].released
    assert (await pool.release("a", kill=False))[0] == "cached"
    await pool.stop_all()


async def test_a_runner_killed_while_a_launch_is_queued_on_it(tmp_path: Path) -> None:
    pool = _pool(tmp_path, iterations=5)
    backend = _backend(pool)
    await _acquire(pool, tmp_path, "a")
    got: list[tuple[bool, TrainOutcome | None]] = []
    async with anyio.create_task_group() as tg:

        async def queue_b() -> None:
            got.append(await _acquire(pool, tmp_path, "b", after="a"))

        tg.start_soon(queue_b)
        await anyio.wait_all_tasks_blocked()
        assert await pool.release("a", kill=True) == ("killed", "after a failure")  # a failed
    [(reused, trained)] = got
    assert not reused and trained is not None  # b runs on a fresh runner
    assert backend.runners[0].killed and backend.runners[1].trial_id == "b"
    await pool.stop_all()
    assert not backend.live


# ---------------------------------------------------------------- warm runners
async def test_warm_runners_pass_between_pools_and_survive_a_cancelled_adopt(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend(WallClock(), capacity={"CPU": 2}, step_s=0, iterations=1)
    allocator = Allocator(backend.capacity())
    warm = await WarmRunners.open(allocator)
    place = WarmPlace(warm, "same trainable", 60.0)
    first = RunnerPool(backend, allocator.scope(), reuse=True, warm=place)
    await _acquire(first, tmp_path, "a")
    await _until_returned(first, "a")
    assert await first.release("a", kill=False) == ("cached", "")
    await first.stop_all()  # the end of the first experiment: kept warm, not stopped
    assert len(warm) == 1 and allocator.in_use == {"CPU": 1.0}
    assert not backend.runners[0].stopped

    scope = allocator.scope(max_concurrent=1)
    busy = await scope.acquire(_CPU)
    second = RunnerPool(backend, scope, reuse=True, warm=place)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire, second, tmp_path, "b")
        await anyio.wait_all_tasks_blocked()
        assert len(warm) == 0  # taken; its lease waits for the scope's one slot
        tg.cancel_scope.cancel()
    assert len(warm) == 1 and allocator.in_use == {"CPU": 2.0}  # back, still held
    busy.release()
    reused, _ = await _acquire(second, tmp_path, "c")
    assert reused and len(backend.runners) == 1 and backend.calls_of("reuse") == ["c"]
    assert scope.num_leases == 1  # the adopted lease counts against the scope

    other = RunnerPool(backend, allocator.scope(), reuse=True, warm=place)
    await _until_returned(second, "c")
    await second.release("c", kill=False)
    await second.stop_all()
    assert len(warm) == 1
    other_place = WarmPlace(warm, "another trainable", 60.0)
    other.warm = other_place
    await _acquire(other, tmp_path, "d")  # fits beside the warm runner: no eviction
    assert len(warm) == 1 and len(backend.runners) == 2
    await other.kill_all()
    await warm.aclose()
    assert len(warm) == 0 and allocator.in_use == {}
    warm_one, others = backend.runners
    assert warm_one.stopped and not warm_one.killed  # stopped (cleanup), not killed
    assert others.killed
