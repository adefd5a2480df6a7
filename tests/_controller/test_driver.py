"""The driver: shutdown races, virtual time, capacity changes, and cancellation.

The virtual-time and cancellation tests drive the real ``Driver`` over a scripted backend
(``_scripted.py``) whose runners wait on the driver's clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
from _scripted import POINTS, ScriptedBackend, journal, make_core, make_driver, restored_core

import atune as tune
from atune._controller import _driver
from atune._controller._clock import VirtualClock
from atune._controller._core import ControllerCore
from atune._controller._messages import Command, Message
from atune.errors import TuneError, WorkerDiedError
from atune.events import ResultReported, TrialCreated


def _two_reports(config: dict[str, Any]) -> None:
    tune.report({"score": config["x"]})
    tune.report({"score": config["x"] + 1})


class _StopsTheExperiment(tune.Callback):
    """On trial 0's first result: let trial 1's call return, then fail the experiment."""

    def __init__(self, gate: asyncio.Future[None]) -> None:
        self.gate = gate

    def on_trial_result(
        self, iteration: int, trials: Any, trial: Any, result: Any, **_: Any
    ) -> None:
        if trial.trial_id.endswith("00000"):
            self.gate.set_result(None)
            raise RuntimeError("callback failed on purpose")


async def test_a_call_that_returns_while_the_experiment_stops_is_dropped_quietly(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trial 1's call returns in the same loop cycle as the driver stops reading (its
    # awaited future is already done, so the cancellation reaches it one cycle late): its
    # message must not land in a closed stream and turn the error into BrokenResourceError.
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    execute = _driver.Driver._execute

    async def gated(self: _driver.Driver, command: Command) -> list[Message]:
        messages = await execute(self, command)
        if command.trial_id.endswith("00001"):  # type: ignore[union-attr]
            await gate
        return messages

    monkeypatch.setattr(_driver.Driver, "_execute", gated)
    tuner = tune.Tuner(
        _two_reports,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="race", storage_path=storage, callbacks=[_StopsTheExperiment(gate)]
        ),
    )
    with pytest.raises(TuneError, match="callback failed on purpose") as raised:
        await tuner.fit()
    assert "BrokenResourceError" not in repr(raised.value)


# ------------------------------------------------------------------ virtual time
def _timeline(path: Path) -> list[tuple[str, float, str | None]]:
    """The journal as (event type, time stamp, trial id)."""
    return [(type(e).__name__, e.ts, getattr(e, "trial_id", None)) for e in journal(path)]


async def _run_with_time_budget(path: Path) -> tuple[ControllerCore, list[tuple[Any, ...]]]:
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, capacity={"CPU": 2}, step_s=10.0, iterations=5)
        core = make_core(path, xs=[1, 2, 3, 4], max_live_trials=2)
        await make_driver(core, backend, path, clock=clock, time_budget_s=35.0).run()
    return core, _timeline(path)


async def test_a_time_budget_runs_in_virtual_time_with_the_same_journal_every_time(
    tmp_path: Path,
) -> None:
    # Each train "takes" 10 virtual seconds; the budget is 35 s and its grace 2 s, so the
    # calls in flight at 35 s are abandoned at 37 s. No real second passes.
    core, first = await _run_with_time_budget(tmp_path / "a")
    _, second = await _run_with_time_budget(tmp_path / "b")
    assert first == second
    epoch = VirtualClock().time()
    assert first[0] == ("ExperimentStarted", epoch, None)
    results = [(ts - epoch, tid) for kind, ts, tid in first if kind == "ResultReported"]
    assert results == [(t, f"00000_0000{i}") for t in (10.0, 20.0, 30.0) for i in (0, 1)]
    completed = [(ts - epoch, tid) for kind, ts, tid in first if kind == "TrialCompleted"]
    assert completed == [(37.0, "00000_00000"), (37.0, "00000_00001")]
    assert [t.end_reason for t in core.get_trials()] == ["time_budget", "time_budget"]
    assert ("ExperimentFinished", epoch + 37.0, None) in first


async def test_retry_back_off_waits_in_virtual_time(tmp_path: Path) -> None:
    # Three failed trains in a row: the retries wait 0, 1 and 2 s (``retry_delay``).
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, step_s=10.0, iterations=2, fail_first=3)
        core = make_core(tmp_path, xs=[1], max_failures=5)
        await make_driver(core, backend, tmp_path, clock=clock).run()
    assert [at for at, _ in backend.starts] == [0.0, 10.0, 21.0, 33.0]
    (trial,) = core.get_trials()
    assert (trial.status, trial.num_failures, trial.last_result["training_iteration"]) == (
        "TERMINATED",
        3,
        2,
    )
    assert all(runner.released for runner in backend.runners)


async def test_a_cluster_that_grows_runs_more_trials_at_once(tmp_path: Path) -> None:
    # The experiment starts with room for one trial; the cluster has four CPUs by the
    # first capacity refresh (5 s). The three waiting trials start then, not one by one.
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, step_s=10.0, iterations=3)
        core = make_core(
            tmp_path, xs=[1, 2, 3, 4], max_live_trials=1, trial_request={"CPU": 1_000_000}
        )
        driver = make_driver(core, backend, tmp_path, clock=clock)
        backend.capacity_now = {"CPU": 4.0}
        await driver.run()
    assert backend.max_live == 4
    assert backend.starts == [
        (0.0, "00000_00000"),
        (5.0, "00000_00001"),
        (5.0, "00000_00002"),
        (5.0, "00000_00003"),
    ]
    assert core.max_live_trials == 4
    assert [t.status for t in core.get_trials()] == ["TERMINATED"] * 4


async def test_a_worker_that_dies_with_its_node_is_retried_within_the_smaller_cluster(
    tmp_path: Path,
) -> None:
    # Two CPUs on two nodes, two trials. Trial 1's worker dies with its node at once: the
    # cluster has one CPU left. The capacity is read again before the retry asks for
    # resources, so the retry waits for trial 0 to end (3 s), instead of being granted the
    # lost node's CPU at once, which the periodic refresh (5 s) would notice too late.
    lost: list[str] = []

    def lose_the_node(runner: Any, budget: Any) -> None:
        if runner.trial_id.endswith("00001") and not lost:
            lost.append(runner.trial_id)
            runner.backend.capacity_now = {"CPU": 1.0}
            raise WorkerDiedError("the worker's node died")

    async with VirtualClock() as clock:
        backend = ScriptedBackend(
            clock, capacity={"CPU": 2}, step_s=1.0, iterations=3, scripts={"train": lose_the_node}
        )
        core = make_core(
            tmp_path, xs=[1, 2], max_live_trials=2, max_failures=1, trial_request={"CPU": 1_000_000}
        )
        await make_driver(core, backend, tmp_path, clock=clock).run()
    assert backend.starts == [(0.0, "00000_00000"), (0.0, "00000_00001"), (3.0, "00000_00001")]
    assert backend.max_live == 2
    trials = core.get_trials()
    assert [(t.status, t.num_failures) for t in trials] == [("TERMINATED", 0), ("TERMINATED", 1)]
    assert core.max_live_trials == 1


# ------------------------------------------------------------------ cancellation
@pytest.mark.parametrize("point", [*POINTS, "back_off"])
async def test_cancelling_the_driver_at_each_await_point_leaves_a_restorable_experiment(
    tmp_path: Path, point: str
) -> None:
    """Cancel the driver while one call waits at ``point``; then restore and finish.

    One CPU for two trials, so the second trial waits for resources at the allocator
    whenever the first holds them. Class trainable, checkpoint every result: launches,
    trains, saves and stops all happen. ``back_off``: two CPUs, and each trial's first two
    trains fail, so both second retries wait 1 s before their launch (virtual seconds 2
    to 3); the driver is cancelled at 2.5 s.
    """
    kw: dict[str, Any] = {"xs": [1, 2], "max_live_trials": 2, "is_function": False}
    kw.update(checkpoint_frequency=1, max_failures=3)
    async with VirtualClock() as clock:
        if point == "back_off":
            backend = ScriptedBackend(
                clock, capacity={"CPU": 2}, step_s=1.0, iterations=2, fail_first=4
            )
        else:
            backend = ScriptedBackend(clock, step_s=1.0, iterations=2, block_at=point)
        core = make_core(tmp_path, **kw)
        driver = make_driver(core, backend, tmp_path, clock=clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.run)
            if point == "back_off":
                await clock.sleep(2.5)
                ids = ["00000_00000", "00000_00001"]
                assert backend.starts == [(t, i) for t in (0.0, 1.0) for i in ids]
            else:
                await backend.blocked.wait()
            tg.cancel_scope.cancel()

        # Every runner was let go of, every lease returned.
        assert all(runner.released for runner in backend.runners)
        assert driver.pool.scope.num_leases == 0
        assert driver.pool.scope.allocator.in_use == {}
        # The journal holds everything the core knew.
        events = journal(tmp_path)
        created = [e.trial_id for e in events if isinstance(e, TrialCreated)]
        assert created == list(core.trials)
        reported = sum(isinstance(e, ResultReported) for e in events)
        assert reported == sum(t.num_results for t in core.get_trials())

        # Restored, the experiment runs to its end.
        again = ScriptedBackend(clock, step_s=1.0, iterations=2)
        again.checkpoints = backend.checkpoints
        restored = restored_core(tmp_path, **kw)
        await make_driver(restored, again, tmp_path, clock=clock, resumed=True).run()
    trials = restored.get_trials()
    assert [t.status for t in trials] == ["TERMINATED", "TERMINATED"]
    assert [t.last_result["training_iteration"] for t in trials] == [2, 2]
    assert all(runner.released for runner in again.runners)
