"""``TrainableHost``: when a launch queued behind a trial may take over the instance.

A queued launch (``only_if_finished``) must never touch a trial that is still going, and
must go ahead at once when the trial has ended where the host can see it: its function
returned, or its last batch ended on a result that ends it for the driver too (``done``, a
stop criterion) and asks for no checkpoint.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune.execution._host import TrainableHost
from atune.execution._local import LocalRunner
from atune.execution._protocol import LaunchMode, LaunchOutcome, LaunchRequest, TrainBudget
from atune.trainable._session import TrialInfo


class Counter(tune.Trainable):
    """Reports ``count``; checkpoints when the config asks; ``done`` at ``done_at``."""

    def setup(self, config: dict[str, Any]) -> None:
        self.count = 0

    def step(self) -> dict[str, Any]:
        self.count += 1
        result: dict[str, Any] = {"count": self.count}
        if self.count == self.config.get("checkpoint_at"):
            result["should_checkpoint"] = True
        if self.count == self.config.get("done_at"):
            result["done"] = True
        return result

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.count = 0
        return True

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        Path(checkpoint_dir, "count").write_text(str(self.count))


def _launch(
    host: TrainableHost,
    tmp_path: Path,
    trial: str,
    config: dict[str, Any],
    budget: TrainBudget,
    *,
    queued: bool = False,
) -> LaunchOutcome:
    info = TrialInfo(trial_id=trial, trial_dir=str(tmp_path / trial))
    mode = LaunchMode.QUEUED if queued else LaunchMode.NEW
    return host.launch(LaunchRequest(mode, config, info, None, budget))


BIG = {"max_results": 100, "max_seconds": 60.0}


@pytest.mark.parametrize(
    ("config", "budget", "ends"),
    [
        ({}, TrainBudget(stop_criteria={"training_iteration": 3}, **BIG), True),
        ({"done_at": 2}, TrainBudget(**BIG), True),
        ({}, TrainBudget(max_results=2, max_seconds=60.0), False),
        ({"done_at": 2, "checkpoint_at": 2}, TrainBudget(**BIG), False),
        (
            {},
            TrainBudget(stop_criteria={"training_iteration": 2}, checkpoint_frequency=2, **BIG),
            False,
        ),
    ],
    ids=["stop-criterion", "done", "batch-full", "done-with-checkpoint", "due-checkpoint"],
)
def test_a_queued_launch_goes_ahead_only_when_the_trial_ended_here(
    tmp_path: Path, config: dict[str, Any], budget: TrainBudget, ends: bool
) -> None:
    host = TrainableHost(Counter)
    first = _launch(host, tmp_path, "a", config, budget)
    assert first.trained is not None and first.trained.error is None
    queued = _launch(host, tmp_path, "b", {}, TrainBudget(max_results=1), queued=True)
    assert queued.busy is not ends
    if ends:  # the instance switched to the new trial and trained it from the start
        assert queued.trained is not None
        assert [r["count"] for r in queued.trained.results] == [1]
        assert queued.trained.results[0]["trial_id"] == "b"


def test_training_again_clears_an_end_the_driver_did_not_act_on(tmp_path: Path) -> None:
    host = TrainableHost(Counter)
    _launch(host, tmp_path, "a", {}, TrainBudget(stop_criteria={"training_iteration": 1}, **BIG))
    host.train(TrainBudget(max_results=1))  # the driver went on with the trial after all
    queued = _launch(host, tmp_path, "b", {}, TrainBudget(max_results=1), queued=True)
    assert queued.busy


class _FailingSetup(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        raise RuntimeError("no")


def test_wait_started_says_when_a_launch_got_past_its_set_up(tmp_path: Path) -> None:
    host = TrainableHost(Counter)
    assert host.wait_started("a", timeout=0) is None  # nothing launched yet
    _launch(host, tmp_path, "a", {}, TrainBudget(max_results=1))
    assert host.wait_started("a", timeout=0) is False  # a fresh instance
    assert host.wait_started("b", timeout=0) is None
    queued = _launch(host, tmp_path, "b", {}, TrainBudget(max_results=1), queued=True)
    assert queued.busy and host.wait_started("b", timeout=0) is None
    host.train(TrainBudget(max_results=1, stop_criteria={"count": 2}))  # "a" ends here
    _launch(host, tmp_path, "b", {}, TrainBudget(max_results=1), queued=True)
    assert host.wait_started("b", timeout=0) is True  # the instance was reused
    assert host.wait_started("a", timeout=0) is None


def test_wait_started_never_says_so_for_a_failed_set_up(tmp_path: Path) -> None:
    host = TrainableHost(_FailingSetup)
    outcome = _launch(host, tmp_path, "a", {}, TrainBudget(max_results=1))
    assert outcome.error is not None
    assert host.wait_started("a", timeout=0.01) is None


class _Gated(tune.Trainable):
    """The first step waits until the test opens the gate."""

    gate = threading.Event()

    def step(self) -> dict[str, Any]:
        self.gate.wait(60)
        return {"x": 1}


@pytest.mark.timeout(30)  # a waiter that is never woken would sit out its 120 s
@pytest.mark.parametrize("in_loop", [True, False], ids=["event-loop", "thread"])
async def test_wait_started_wakes_up_while_the_first_step_still_runs(
    tmp_path: Path, in_loop: bool
) -> None:
    # The host's own wait (a thread: the Ray actor's) and the in-process runner's (the loop).
    _Gated.gate.clear()
    runner = LocalRunner(_Gated)
    info = TrialInfo(trial_id="a", trial_dir=str(tmp_path / "a"))
    launch = asyncio.ensure_future(
        runner.launch(LaunchRequest(LaunchMode.NEW, {}, info, None, TrainBudget(max_results=1)))
    )
    if in_loop:
        started = await runner.wait_started("a", timeout=120)
    else:
        started = await asyncio.to_thread(runner.host.wait_started, "a", 120)
    assert started is False and not launch.done()  # set up, first step still running
    _Gated.gate.set()
    outcome = await launch
    assert outcome.trained is not None and outcome.trained.results[0]["x"] == 1
    await runner.stop()


class Large(tune.Trainable):
    """Reports results of about 1 MB each."""

    def step(self) -> dict[str, Any]:
        return {"blob": "x" * 1_000_000}


def test_a_batch_is_bounded_by_bytes_from_its_first_results_size(tmp_path: Path) -> None:
    host = TrainableHost(Large)
    budget = TrainBudget(max_results=256, max_seconds=60.0, max_bytes=3_500_000)
    launched = _launch(host, tmp_path, "t", {}, budget)
    assert launched.trained is not None
    assert len(launched.trained.results) == 3
    # Without a byte bound the count bound holds as before.
    assert len(host.train(TrainBudget(max_results=5, max_seconds=60.0)).results) == 5
