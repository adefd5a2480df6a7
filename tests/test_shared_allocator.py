"""Two experiments awaited concurrently on one loop share one allocator."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio

import atune as tune
from atune.execution._backend import LocalBackend

_lock = threading.Lock()
_running = 0
_peak = 0


def _tracked(config: dict[str, Any]) -> None:
    global _running, _peak
    with _lock:
        _running += 1
        _peak = max(_peak, _running)
    try:
        time.sleep(0.05)
        tune.report({"x": config["x"]})
    finally:
        with _lock:
            _running -= 1


async def test_two_concurrent_experiments_never_oversubscribe(storage: str) -> None:
    capacity = LocalBackend().capacity()["CPU"]
    results: list[tune.ResultGrid] = []

    async def experiment(name: str) -> None:
        results.append(
            await tune.Tuner(
                _tracked,
                param_space={"x": tune.grid_search(list(range(6)))},
                tune_config=tune.TuneConfig(backend="local"),
                run_config=tune.RunConfig(name=name, storage_path=storage),
            ).fit()
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(experiment, "a")
        tg.start_soon(experiment, "b")

    assert [len(r) for r in results] == [6, 6]
    assert all(r.num_errors == 0 for r in results)
    assert 1 <= _peak <= capacity  # one CPU per trial, both experiments together


async def test_trial_dirnames_stay_inside_the_experiment(storage: str) -> None:
    results = await tune.Tuner(
        lambda config: tune.report({"x": 1}),
        tune_config=tune.TuneConfig(
            backend="local", trial_dirname_creator=lambda trial: "../../escape"
        ),
        run_config=tune.RunConfig(name="exp", storage_path=storage),
    ).fit()
    (result,) = list(results)
    assert result.error is None
    path = anyio.Path(result.path)
    assert str(await path.parent.resolve()) == str(await anyio.Path(storage, "exp").resolve())
