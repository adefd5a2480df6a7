"""Pipelined launches: the next trial waits on a running trial's runner.

A launch queued behind a trial starts the moment that trial's function has returned;
when the trial is still going (more reports), the queued launch must leave it alone and
take a runner of its own. Every trial must see only its own config and results.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import atune as tune
from _events import EventLog
from atune.events import TrialStarted


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


def _fresh_runners(events: EventLog) -> int:
    """How many trials started on a runner of their own (not reused)."""
    return sum(not e.reused for e in events.events if isinstance(e, TrialStarted))


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_pipelined_trials_each_see_only_their_own_work(storage: str, backend: str) -> None:
    results, _ = _fit_mixed(storage, backend, fail=True)
    assert len(results) == 24
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
