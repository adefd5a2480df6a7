"""Pipelined launches: the next trial waits on a running trial's runner.

A launch queued behind a trial starts the moment that trial's function has returned;
when the trial is still going (more reports), the queued launch must leave it alone and
take a runner of its own. Every trial must see only its own config and results.

Each test also checks something only pipelining does (the tests fail with
``CorePolicy.pipeline`` off): a trial is created and launched while the trials before it
still fill every slot, and (scripted runner) its launch reaches the runner before the
previous trial's last ``train`` returned.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pytest

import atune as tune
from _controller._scripted import ScriptedBackend, make_core, make_driver
from _events import EventLog
from atune._controller._clock import VirtualClock
from atune.events import TrialCompleted, TrialCreated, TrialStarted


def _mixed(config: dict[str, Any]) -> None:
    """Trials of 1 to 3 reports; the 3-report ones outlast a result batch (0.25 s), so a
    launch queued behind them finds their runner busy."""
    for i in range(config["x"] % 3 + 1):
        time.sleep(0.12 if config["x"] % 3 == 2 else 0.005)
        tune.report({"x": config["x"], "i": i, "pid": os.getpid()})
    if config.get("fail") and config["x"] % 7 == 3:
        raise ValueError(f"trial {config['x']} fails")


def _fit_mixed(storage: str, backend: str, *, fail: bool) -> tuple[tune.ResultGrid, EventLog]:
    """24 ``_mixed`` trials, two at a time; some fail when ``fail``."""
    events = EventLog()
    results = tune.Tuner(
        _mixed,
        param_space={"x": tune.grid_search(list(range(24))), "fail": fail},
        tune_config=tune.TuneConfig(backend=backend, max_concurrent_trials=2),  # type: ignore[arg-type]
        run_config=tune.RunConfig(storage_path=storage, callbacks=[events]),
    ).fit()
    return results, events


def _queued_ahead(events: EventLog, slots: int) -> int:
    """How many trials were created beyond ``slots`` before any trial completed: only
    pipelining creates a trial while every slot is taken (it queues it on a runner)."""
    created = 0
    for event in events.events:
        if isinstance(event, TrialCompleted):
            break
        created += isinstance(event, TrialCreated)
    return created - slots


def _fresh_runners(events: EventLog) -> int:
    """How many trials started on a runner of their own (not reused)."""
    return sum(not e.reused for e in events.events if isinstance(e, TrialStarted))


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_pipelined_trials_each_see_only_their_own_work(storage: str, backend: str) -> None:
    results, events = _fit_mixed(storage, backend, fail=True)
    assert len(results) == 24 and _queued_ahead(events, slots=2) > 0
    failing = {x for x in range(24) if x % 7 == 3}
    for result in results:
        rows = result.metrics_dataframe
        assert rows is not None, (result.config, result.error, result.metrics)
        x = int(rows["config/x"].iloc[0])
        assert set(rows["x"]) == {x}  # only its own results
        assert list(rows["i"]) == list(range(x % 3 + 1))  # all of them, in order
        assert (result.error is not None) == (x in failing)


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_pipelined_runners_go_from_trial_to_trial(storage: str, backend: str) -> None:
    results, events = _fit_mixed(storage, backend, fail=False)
    assert results.num_errors == 0 and len(results) == 24
    assert _fresh_runners(events) <= 2  # one runner per slot, reused throughout
    assert _queued_ahead(events, slots=2) > 0


class _Stepper(tune.Trainable):
    """Reports its own config's ``x`` every step; counts steps since the last reset."""

    def setup(self, config: dict[str, Any]) -> None:
        self.steps = 0

    def step(self) -> dict[str, Any]:
        self.steps += 1
        return {"x": self.config["x"], "steps": self.steps, "pid": os.getpid()}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.steps = 0
        return True


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_class_trials_stopped_by_a_dict_stopper_are_pipelined_correctly(
    storage: str, backend: str
) -> None:
    events = EventLog()
    results = tune.Tuner(
        _Stepper,
        param_space={"x": tune.grid_search(list(range(12)))},
        tune_config=tune.TuneConfig(
            backend=backend,  # type: ignore[arg-type]
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            callbacks=[events],
            stop={"training_iteration": 3},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    ).fit()
    assert results.num_errors == 0 and len(results) == 12
    for result in results:
        rows = result.metrics_dataframe
        assert rows is not None
        assert set(rows["x"]) == {result.config["x"]}  # only its own results
        assert list(rows["steps"]) == [1, 2, 3]  # reset, then exactly three steps
        assert list(rows["training_iteration"]) == [1, 2, 3]
    assert _fresh_runners(events) <= 2  # one runner per slot, reused throughout
    assert _queued_ahead(events, slots=2) > 0


@pytest.mark.timeout(60)
async def test_a_queued_launch_reaches_the_runner_before_the_last_train_returned(
    tmp_path: Any,
) -> None:
    path = tmp_path / "exp"
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, capacity={"CPU": 1.0}, step_s=10.0, iterations=3)
        core = make_core(path, xs=[1, 2, 3, 4], max_live_trials=1, pipeline=True)
        await make_driver(core, backend, path, clock=clock, reuse=True).run()
    assert all(t.status == "TERMINATED" for t in core.trials.values())
    assert len(backend.runners) == 1  # one runner went from trial to trial
    log = backend.log
    order = list(dict.fromkeys(t for call, t in log if call in ("new", "reuse", "queued")))
    assert len(order) == 4
    for before, after in itertools.pairwise(order):
        last_train = max(i for i, entry in enumerate(log) if entry == ("train returned", before))
        # Queued while ``before`` still trained: no round trip through the driver between.
        assert log.index(("queued", after)) < last_train
    assert backend.runners[0].trial_id == order[-1]
