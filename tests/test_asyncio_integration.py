"""``await tuner.fit()`` inside a running event loop never blocks that loop."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import anyio
import pytest

import atune as tune


class _TickRecorder(tune.Callback):
    """Records how many ticks had happened when each result arrived."""

    def __init__(self, ticks: list[float]) -> None:
        self.ticks = ticks
        self.ticks_at_result: list[int] = []

    def on_trial_result(
        self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
    ) -> None:
        self.ticks_at_result.append(len(self.ticks))


def _slow_trainable(config: dict[str, Any]) -> None:
    for i in range(8):
        time.sleep(0.05)  # blocking work, inside the trial's own worker
        tune.report({"i": i, "x": config["x"]})


@pytest.mark.ray
async def test_ticker_keeps_ticking_during_await_fit_on_ray(storage: str) -> None:
    ticks: list[float] = []
    recorder = _TickRecorder(ticks)

    async def ticker() -> None:
        while True:
            await anyio.sleep(0.01)
            ticks.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        results = await tune.Tuner(
            _slow_trainable,
            param_space={"x": tune.grid_search([1, 2, 3, 4])},
            run_config=tune.RunConfig(storage_path=storage, callbacks=[recorder]),
        ).fit()
        tg.cancel_scope.cancel()

    assert len(results) == 4 and results.num_errors == 0
    # Results arrived while the ticker kept running: the tick count grew between the first
    # and the last result, and over the run the ticker ticked many times (Ray Tune's
    # blocking fit() lets it tick zero times).
    assert recorder.ticks_at_result[-1] > recorder.ticks_at_result[0]
    assert len(ticks) >= 20


async def test_fit_without_await_inside_a_loop_is_never_silent(storage: str) -> None:
    tuner = tune.Tuner(
        lambda config: tune.report({"x": 1}),
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage),
    )
    pending = tuner.fit()
    with pytest.raises(TypeError, match=r"await tuner\.fit"):
        pending.get_best_result()  # used without await: a clear error, not a silent no-op
    results = await pending
    assert results[0].metrics["x"] == 1


async def test_dropping_an_unawaited_fit_warns(storage: str) -> None:
    tuner = tune.Tuner(
        lambda config: tune.report({"x": 1}),
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage),
    )
    with pytest.warns(RuntimeWarning, match="did not run"):
        pending = tuner.fit()
        del pending


def test_sync_fit_in_a_plain_script_returns_results(storage: str) -> None:
    results = tune.Tuner(
        lambda config: tune.report({"x": config["x"]}),
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert sorted(r.metrics["x"] for r in results) == [1, 2]


def _quick_tuner(storage: str, name: str) -> tune.Tuner:
    return tune.Tuner(
        lambda config: tune.report({"x": config["x"]}),
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )


async def test_fit_runs_as_an_asyncio_task(storage: str) -> None:
    task = asyncio.create_task(_quick_tuner(storage, "task").fit())
    results = await task
    assert sorted(r.metrics["x"] for r in results) == [1, 2]


async def test_fit_runs_in_an_asyncio_task_group(storage: str) -> None:
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.TaskGroup needs Python 3.11")
    async with asyncio.TaskGroup() as tg:
        first = tg.create_task(_quick_tuner(storage, "first").fit())
        second = tg.create_task(_quick_tuner(storage, "second").fit())
    assert sorted(r.metrics["x"] for r in first.result()) == [1, 2]
    assert sorted(r.metrics["x"] for r in second.result()) == [1, 2]


async def test_fit_runs_with_anyio_start_soon(storage: str) -> None:
    tuner = _quick_tuner(storage, "start_soon")
    async with anyio.create_task_group() as tg:
        tg.start_soon(tuner.fit)
    assert sorted(r.metrics["x"] for r in tuner.get_results()) == [1, 2]


async def test_a_fit_task_can_be_cancelled(storage: str) -> None:
    def endless(config: dict[str, Any]) -> None:
        while True:
            time.sleep(0.01)
            tune.report({"x": 1})

    started = asyncio.Event()

    class _Started(tune.Callback):
        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            started.set()

    task = asyncio.create_task(
        tune.Tuner(
            endless,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[_Started()]),
        ).fit()
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
