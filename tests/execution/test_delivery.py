"""Timed delivery: results ``report()`` accepted reach the driver while user code blocks.

The host's faces (``async`` in-process, blocking in a Ray actor) wait for a batched call
with a timer; when it fires with results waiting, they hand those back and the next
``train()`` continues the call. Nothing is lost or repeated, and exact stops still land on
their result. End to end: a Ray worker that ``os._exit``\\ s after blocking keeps every
result it reported (Ray Tune keeps them too).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint
from atune.errors import WorkerDiedError
from atune.execution._local import LocalRunner
from atune.execution._protocol import LaunchMode, LaunchRequest, TrainBudget
from atune.trainable._function import wrap_function
from atune.trainable._session import TrialInfo

pytestmark = pytest.mark.timeout(60)

# The face's timer fires after this; the call itself runs much longer.
BATCH = TrainBudget(max_results=256, max_seconds=0.05)

_gates: dict[str, threading.Event] = {}


def blocks_between_reports(config: dict[str, Any]) -> None:
    """Reports ``before`` results, blocks until its gate opens, then reports ``after``."""
    for i in range(config["before"]):
        tune.report({"i": i})
    _gates[config["gate"]].wait()
    for i in range(config["before"], config["before"] + config["after"]):
        tune.report({"i": i, "done": i == config.get("done_at")})


def _host(tmp_path: Path) -> LocalRunner:
    return LocalRunner(wrap_function(blocks_between_reports))


def _config(before: int, after: int, **extra: Any) -> tuple[dict[str, Any], threading.Event]:
    gate = threading.Event()
    name = f"gate-{id(gate)}"
    _gates[name] = gate
    return {"before": before, "after": after, "gate": name, **extra}, gate


def _iterations(results: list[dict[str, Any]]) -> list[int]:
    return [r["i"] for r in results]


async def test_a_blocked_call_hands_back_its_results_and_the_next_train_continues_it(
    tmp_path: Path,
) -> None:
    host = _host(tmp_path)
    config, gate = _config(before=3, after=2)
    info = TrialInfo(trial_id="t", trial_dir=str(tmp_path / "t"))
    launched = await host.launch(LaunchRequest(LaunchMode.NEW, config, info, None, BATCH))
    # The function is still blocked at its gate: the three results came back anyway.
    assert launched.trained is not None
    assert _iterations(launched.trained.results) == [0, 1, 2]
    assert not gate.is_set()
    assert host.host.drain() == []  # nothing handed back twice
    gate.set()
    # The same call goes on (no new call starts) and ends at its next result.
    rest = await host.train(BATCH)
    assert _iterations(rest.results) == [3]
    assert _iterations(await _until_returned(host)) == [4]
    await host.stop()


async def _until_returned(host: LocalRunner) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    while True:
        outcome = await host.train(BATCH)
        results += outcome.results
        if outcome.returned:
            return results


async def test_a_split_keeps_an_exact_stop_on_its_result(tmp_path: Path) -> None:
    host = _host(tmp_path)
    config, gate = _config(before=2, after=1, done_at=2)
    info = TrialInfo(trial_id="t", trial_dir=str(tmp_path / "t"))
    launched = await host.launch(LaunchRequest(LaunchMode.NEW, config, info, None, BATCH))
    assert launched.trained is not None
    assert _iterations(launched.trained.results) == [0, 1]
    gate.set()
    rest = await host.train(BATCH)
    assert _iterations(rest.results) == [2]
    assert rest.results[0]["done"] is True
    await host.stop()


async def test_lock_step_has_no_timer(tmp_path: Path) -> None:
    host = _host(tmp_path)
    config, gate = _config(before=1, after=1)
    info = TrialInfo(trial_id="t", trial_dir=str(tmp_path / "t"))
    launched = await host.launch(
        LaunchRequest(LaunchMode.NEW, config, info, None, TrainBudget(max_results=1))
    )
    assert launched.trained is not None
    assert _iterations(launched.trained.results) == [0]
    call = asyncio.ensure_future(host.train(TrainBudget(max_results=1)))
    await asyncio.sleep(0.2)
    assert not call.done()  # waits for the result however long it takes
    gate.set()
    assert _iterations((await call).results) == [1]
    await host.stop()


async def test_a_queued_launch_waits_until_the_split_remainder_is_collected(
    tmp_path: Path,
) -> None:
    host = _host(tmp_path)
    config, gate = _config(before=1, after=1, done_at=1)
    first = TrialInfo(trial_id="a", trial_dir=str(tmp_path / "a"))
    launched = await host.launch(LaunchRequest(LaunchMode.NEW, config, first, None, BATCH))
    assert launched.trained is not None
    assert _iterations(launched.trained.results) == [0]
    gate.set()
    # The remainder (``done``) ends trial "a" here, but "a" has not collected it yet: a
    # launch queued behind it must not take the instance.
    second, gate2 = _config(before=1, after=0)
    gate2.set()
    info = TrialInfo(trial_id="b", trial_dir=str(tmp_path / "b"))
    queued = await host.launch(LaunchRequest(LaunchMode.QUEUED, second, info, None, BATCH))
    assert queued.busy
    rest = await host.train(BATCH)
    assert _iterations(rest.results) == [1]
    queued = await host.launch(LaunchRequest(LaunchMode.QUEUED, second, info, None, BATCH))
    assert not queued.busy and queued.trained is not None
    assert _iterations(queued.trained.results) == [0]
    await host.stop()


async def test_a_split_never_cuts_another_trials_call(tmp_path: Path) -> None:
    # A launch queued behind a running call has a timer too; it must not take that call's
    # results (pipelining): only a split naming the running call's trial cuts it.
    host = _host(tmp_path)
    config, gate = _config(before=2, after=1)
    info = TrialInfo(trial_id="a", trial_dir=str(tmp_path / "a"))
    await host.launch(LaunchRequest(LaunchMode.NEW, config, info, None, TrainBudget(max_results=1)))
    call = asyncio.ensure_future(host.train(TrainBudget(max_results=256, max_seconds=60.0)))
    while not host.host.drain():  # the second result is in, the call blocks at the gate
        await asyncio.sleep(0.01)
    second, gate2 = _config(before=1, after=0)
    gate2.set()
    queued = asyncio.ensure_future(
        host.launch(LaunchRequest(LaunchMode.QUEUED, second, TrialInfo(trial_id="b"), None, BATCH))
    )
    await asyncio.sleep(0.3)  # several of the queued launch's timer periods
    assert not queued.done()
    assert host.host.split("b") == []
    assert _iterations(host.host.split("a")) == [1]
    gate.set()
    assert _iterations((await call).results) == [2]
    assert (await queued).busy  # trial "a" has not ended: the launch takes nothing
    await host.stop()


# --------------------------------------------------------------------- through Ray
def reports_then_dies(config: dict[str, Any]) -> None:
    """Five results (a checkpoint with the third), then blocks and the process dies."""
    for i in range(1, 6):
        if i == 3:
            report_with_checkpoint(i, {"i": i})
        else:
            tune.report({"i": i})
    time.sleep(0.5)
    os._exit(7)


@pytest.mark.ray
def test_results_reported_before_a_worker_death_are_kept(storage: str) -> None:
    grid = tune.Tuner(
        reports_then_dies,
        run_config=tune.RunConfig(storage_path=storage, name="dies"),
    ).fit()
    (result,) = list(grid)
    assert isinstance(result.error, WorkerDiedError)
    assert "exited with code 7" in str(result.error)
    rows = [json.loads(line) for line in Path(result.path, "result.json").read_text().splitlines()]
    assert [row["i"] for row in rows] == [1, 2, 3, 4, 5]
    assert result.metrics["i"] == 5
