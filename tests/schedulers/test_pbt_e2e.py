"""PBT, PB2 and the replay in real experiments (local backend).

Exploits go through the core's ``tune_controller.exploit_trial``; a trial whose result the
scheduler cannot score fails alone.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest

import atune as tune
from atune.errors import MetricError
from atune.schedulers import PB2, PopulationBasedTraining, PopulationBasedTrainingReplay


def _drops_the_metric(config: dict[str, Any]) -> None:
    for i in range(6):
        if config["bad"] and i == 3:
            tune.report({"other": 1.0})
        else:
            tune.report({"score": float(i)})


def test_a_later_result_without_the_metric_fails_only_that_trial(storage: str) -> None:
    results = tune.Tuner(
        _drops_the_metric,
        param_space={"bad": tune.grid_search([False, True]), "lr": 0.1},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            scheduler=PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=2,
                hyperparam_mutations={"lr": [0.1, 0.2]},
            ),
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    by_bad = {r.config["bad"]: r for r in results}
    assert by_bad[False].error is None
    assert by_bad[False].metrics["training_iteration"] == 6
    error = by_bad[True].error
    assert isinstance(error, MetricError)
    assert error.metric == "score"
    assert "'score'" in str(error) and "require_attrs=False" in str(error)


def test_a_missing_time_attr_fails_the_trial_naming_it(storage: str) -> None:
    results = tune.Tuner(
        _drops_the_metric,
        param_space={"bad": False},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            scheduler=PopulationBasedTraining(
                time_attr="epoch", hyperparam_mutations={"lr": [0.1, 0.2]}
            ),
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    [result] = list(results)
    assert isinstance(result.error, MetricError)
    assert "time_attr 'epoch'" in str(result.error)


class _Learner(tune.Trainable):
    """Scores its config's ``q``; logs the calls made on it and where it was restored from."""

    def setup(self, config: dict[str, Any]) -> None:
        self.calls = ["setup"]
        self.restored: dict[str, Any] = {}

    def step(self) -> dict[str, Any]:
        return {
            "score": float(self.config["q"]),
            "q": self.config["q"],
            "calls": ",".join(self.calls),
            "restored_iteration": self.restored.get("iteration", -1),
            "restored_from": self.restored.get("trial_id", ""),
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"iteration": self.iteration, "trial_id": self.trial_id}, f)

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        self.calls.append("load_checkpoint")
        with open(os.path.join(str(checkpoint), "state.json")) as f:
            self.restored = json.load(f)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.calls.append("reset_config")
        return True


def _fit_pbt(storage: str, scheduler: Any, **tune_config: Any) -> tune.ResultGrid:
    return tune.Tuner(
        _Learner,
        param_space={"q": tune.grid_search([1.0, 2.0, 3.0, 4.0])},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            scheduler=scheduler,
            reuse_actors=True,
            max_concurrent_trials=4,
            **tune_config,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            stop={"training_iteration": 12},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        ),
    ).fit()


def _rows(results: tune.ResultGrid) -> dict[str, list[dict[str, Any]]]:
    rows = {}
    for result in results:
        frame = result.metrics_dataframe
        assert frame is not None
        rows[result.metrics["trial_id"]] = frame.to_dict("records")
    return rows


def _exploits(results: tune.ResultGrid) -> list[tuple[Any, Any, Any]]:
    """Per exploit seen in the results: (the row before, the first row after, the result)."""
    found = []
    for result in results:
        records = _rows(results)[result.metrics["trial_id"]]
        for before, after in itertools.pairwise(records):
            donor = after["restored_from"]
            if donor and donor != result.metrics["trial_id"] and donor != before["restored_from"]:
                found.append((before, after, result))
    return found


def test_the_exploiter_continues_the_donors_iteration_with_a_mutated_config(
    storage: str,
) -> None:
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=3,
        quantile_fraction=0.25,
        resample_probability=0.0,
        hyperparam_mutations={"q": tune.uniform(0.5, 5.0)},
        seed=0,
    )
    results = _fit_pbt(storage, scheduler)
    assert results.num_errors == 0
    exploits = _exploits(results)
    assert exploits, "no trial exploited another"
    rows = _rows(results)
    for _, after, _ in exploits:
        # Continues from the donor's checkpoint (num_to_keep=1 did not delete it while
        # PBT needed it): its iteration is that checkpoint's + 1.
        assert after["training_iteration"] == after["restored_iteration"] + 1
        # The donor's q at that checkpoint, times 1.2 or 0.8. A donor that was exploited
        # itself may have two rows of one iteration (it went on from its own donor's
        # earlier checkpoint), so the checkpoint's row is one of those.
        donor_rows = [
            r
            for r in rows[after["restored_from"]]
            if r["training_iteration"] == after["restored_iteration"]
        ]
        assert donor_rows
        assert any(
            after["q"] in (pytest.approx(r["q"] * 1.2), pytest.approx(r["q"] * 0.8))
            for r in donor_rows
        )
        # A reused actor: reset_config, then load_checkpoint, no second setup.
        assert after["calls"].endswith("reset_config,load_checkpoint")
        assert after["calls"].count("setup") == 1
    # The policy log was written for the replay.
    assert os.path.exists(os.path.join(results.experiment_path, "pbt_global.txt"))


def test_pb2_exploits_within_its_bounds(storage: str) -> None:
    scheduler = PB2(
        time_attr="training_iteration",
        perturbation_interval=3,
        quantile_fraction=0.25,
        hyperparam_bounds={"q": [0.5, 5.0]},
        seed=0,
    )
    results = _fit_pbt(storage, scheduler)
    assert results.num_errors == 0
    exploits = _exploits(results)
    assert exploits
    for _, after, _ in exploits:
        assert 0.5 <= after["q"] <= 5.0
        assert after["training_iteration"] == after["restored_iteration"] + 1


def test_replay_reproduces_a_pbt_trials_config_schedule(storage: str) -> None:
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=3,
        quantile_fraction=0.25,
        resample_probability=0.0,
        hyperparam_mutations={"q": tune.uniform(0.5, 5.0)},
        seed=0,
    )
    results = _fit_pbt(storage, scheduler)
    [(_, _, exploited)] = _exploits(results)[:1]
    trial_id = exploited.metrics["trial_id"]
    policy = os.path.join(results.experiment_path, f"pbt_policy_{trial_id}.txt")
    replay = tune.Tuner(
        _Learner,
        tune_config=tune.TuneConfig(
            backend="local",
            scheduler=PopulationBasedTrainingReplay(policy),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            stop={"training_iteration": 12},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()
    [result] = list(replay)
    assert result.error is None
    assert result.config == exploited.config


class _WritesAFile(tune.schedulers.FIFOScheduler):
    """Asks the driver to write one file, once, at a flush (as PBT's policy log is)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.asked = 0

    def files_to_write(self) -> Any:
        self.asked += 1
        if self.asked > 1:
            return None

        def write() -> None:
            with open(self.path, "w") as f:
                f.write("written off the event loop\n")

        return write


def test_the_driver_writes_a_schedulers_files_off_the_event_loop(storage: str) -> None:
    path = os.path.join(storage, "scheduler_file.txt")
    scheduler = _WritesAFile(path)
    tune.Tuner(
        _drops_the_metric,
        param_space={"bad": False},
        tune_config=tune.TuneConfig(backend="local", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    with open(path) as f:
        assert f.read() == "written off the event loop\n"
    assert scheduler.asked >= 1


@pytest.mark.parametrize("cls", [PopulationBasedTraining, PB2])
def test_no_metric_or_mode_fails_before_any_trial(storage: str, cls: Any) -> None:
    scheduler = (
        cls(hyperparam_mutations={"lr": [1, 2]})
        if cls is PopulationBasedTraining
        else cls(hyperparam_bounds={"lr": [1, 2]})
    )
    with pytest.raises(ValueError, match="metric") as info:
        tune.Tuner(
            _drops_the_metric,
            param_space={"bad": False},
            tune_config=tune.TuneConfig(backend="local", scheduler=scheduler),
            run_config=tune.RunConfig(storage_path=storage),
        ).fit()
    assert cls.__name__ in str(info.value)
