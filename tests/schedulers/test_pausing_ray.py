"""Pausing and exploiting on the Ray backend: actors released, resumed, reset in place."""

from __future__ import annotations

import os
from typing import Any

import pytest
from test_hyperband import EXPECTED_FINALS, XS, Steps

import atune as tune
from atune._trial import Trial
from atune.schedulers import HyperBandScheduler, TrialScheduler

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_hyperband_pauses_and_resumes_class_trainables_on_ray(storage: str) -> None:
    results = tune.Tuner(
        Steps,
        param_space={"x": tune.grid_search(XS)},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            max_concurrent_trials=2,
            scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert results.num_errors == 0
    by_x = {r.config["x"]: r for r in results}
    assert [by_x[x].metrics["training_iteration"] for x in XS] == EXPECTED_FINALS
    # 0.9 paused at 3 (saved), its actor was released, and it resumed from that checkpoint.
    history = by_x[0.9].metrics_dataframe
    assert history["training_iteration"].tolist() == list(range(1, 10))
    assert history["restores"].tolist() == [0, 0, 0] + [1] * 6


class Recorder(tune.Trainable):
    """Says in every result which process it runs in and which hooks were called."""

    def setup(self, config: dict[str, Any]) -> None:
        self.x = config["x"]
        self.calls = ["setup"]

    def step(self) -> dict[str, Any]:
        return {"score": self.x, "pid": os.getpid(), "calls": ",".join(self.calls)}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"x": self.x}

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.calls.append("load_checkpoint")

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.calls.append("reset_config")
        self.x = new_config["x"]
        return True


class ExploitOnce(TrialScheduler):
    """The second trial, at its iteration 2, continues from the first one's checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        first = tune_controller.get_trials()[0]
        if not self.done and trial is not first and result["training_iteration"] == 2:
            self.done = True
            tune_controller.exploit_trial(trial, donor=first, config={"x": 7})
        return self.CONTINUE


def test_exploit_with_reuse_actors_resets_then_loads_on_the_same_actor(storage: str) -> None:
    results = tune.Tuner(
        Recorder,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=1, reuse_actors=True, scheduler=ExploitOnce()
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            stop={"training_iteration": 5},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        ),
    ).fit()
    assert results.num_errors == 0
    donor, exploiter = sorted(results, key=lambda r: r.config["x"] != 7)[::-1]
    assert exploiter.config == {"x": 7}
    history = exploiter.metrics_dataframe
    # Before the exploit: iterations 1, 2 as itself. Then it continued from the donor's
    # latest checkpoint (iteration 5): 6 is the next iteration it reported.
    assert history["training_iteration"].tolist()[:3] == [1, 2, 6]
    assert history["score"].tolist()[2:] == [7] * (len(history) - 2)
    # The same actor (one process throughout) got reset_config, then load_checkpoint.
    assert history["pid"].nunique() == 1
    calls = history["calls"].tolist()
    assert calls[2].endswith("reset_config,reset_config,load_checkpoint")
    assert donor.metrics["training_iteration"] == 5
