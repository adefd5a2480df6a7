"""Retries after a trial raises: from checkpoints on a real (shared, 2-CPU) Ray, back-off
and the errors of trials that never got past failing on both backends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from _events import EventLog
from atune.events import TrialErrored
from atune.storage._layout import ERROR_FILE, checkpoint_name, parse_error_records


def _iterations(result: tune.Result) -> list[int]:
    return [int(x) for x in result.metrics_dataframe["training_iteration"]]


def _checkpointing_trainable(config: dict[str, Any]) -> None:
    """Checkpoints every iteration; the first attempt raises before iteration 4."""
    first_attempt = tune.get_checkpoint() is None
    for i in range(resume_point() + 1, config["iterations"] + 1):
        if i == config["fail_at"] and first_attempt:
            raise RuntimeError(f"boom at iteration {i}")
        report_with_checkpoint(i, {"i": i})


@pytest.mark.ray
def test_a_raising_trial_resumes_from_its_checkpoint(storage: str) -> None:
    events = EventLog()
    results = tune.Tuner(
        _checkpointing_trainable,
        param_space={"iterations": 5, "fail_at": 4},
        run_config=tune.RunConfig(
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[events],
        ),
    ).fit()
    (result,) = list(results)
    assert result.error is None
    assert _iterations(result) == [1, 2, 3, 4, 5]  # continued at 4, no repeats
    errored = [e for e in events.events if isinstance(e, TrialErrored)]
    assert len(errored) == 1 and errored[0].will_retry
    assert errored[0].error_type == "builtins.RuntimeError"
    assert result.metrics["i"] == 5
    # Checkpoint numbering continues too: indices are never reused.
    names = sorted(p.name for p in Path(result.path).glob("checkpoint_*"))
    assert names == [checkpoint_name(i) for i in range(5)]


class _AlwaysFails(tune.Trainable):
    def step(self) -> dict[str, Any]:
        if self.iteration == 1:
            raise KeyError("deterministic")
        return {"x": 1}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        Path(checkpoint_dir, "x").write_text("1")

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass


class _Succeeds(tune.Trainable):
    def step(self) -> dict[str, Any]:
        return {"x": 1, "done": self.iteration >= 2}


@pytest.mark.ray
def test_a_deterministic_error_gets_max_failures_plus_one_attempts(storage: str) -> None:
    events = EventLog()
    results = tune.Tuner(
        _AlwaysFails,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[events],
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()
    (result,) = list(results)
    assert isinstance(result.error, KeyError)
    assert "deterministic" in str(result.error)
    errored = [e for e in events.events if isinstance(e, TrialErrored)]
    assert [e.attempt for e in errored] == [0, 1, 2]
    assert [e.will_retry for e in errored] == [True, True, False]
    error_txt = Path(result.path, ERROR_FILE).read_text()
    assert len(parse_error_records(error_txt)) == 3 and "KeyError" in error_txt


@pytest.mark.ray
def test_other_trials_finish_when_one_fails(storage: str) -> None:
    results = tune.Tuner(
        tune.with_resources(_Mixed, {"CPU": 0.5}),
        param_space={"fail": tune.grid_search([True, False, False])},
        run_config=tune.RunConfig(
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    ).fit()
    assert results.num_errors == 1 and results.num_terminated == 2
    assert isinstance(results.errors[0], ValueError)


class _Mixed(tune.Trainable):
    def step(self) -> dict[str, Any]:
        if self.config["fail"]:
            raise ValueError("this one fails")
        return {"x": 1, "done": True}


class _NeverReturns(tune.Trainable):
    def step(self) -> dict[str, Any]:
        if self.iteration >= 2:
            time.sleep(3600)  # a step that never returns
        return {"x": 1}


@pytest.mark.ray
@pytest.mark.timeout(60)  # the property: fit() returns although step() never does
def test_time_budget_ends_fit_even_when_a_step_never_returns(storage: str) -> None:
    from atune.events import TrialCompleted

    events = EventLog()
    results = tune.Tuner(
        _NeverReturns,
        # Long enough for the actor to start and reach the hanging step on a loaded
        # 2-core machine (2 s was not under two busy processes, 4 s not under eight).
        tune_config=tune.TuneConfig(time_budget_s=10),
        run_config=tune.RunConfig(
            storage_path=storage,
            callbacks=[events],
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    ).fit()
    (result,) = list(results)
    assert result.error is None and result.metrics["training_iteration"] == 2
    completed = [e for e in events.events if isinstance(e, TrialCompleted)]
    assert [e.reason for e in completed] == ["time_budget"]  # not mistaken for success


def _always_fails(config: dict[str, Any]) -> None:
    raise ValueError("fails every time")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_trial_that_only_ever_failed_ends_in_error_when_the_budget_ends_it(
    storage: str, backend: str
) -> None:
    events = EventLog()
    # Long enough for a first attempt to fail before the budget ends: on Ray that needs an
    # actor start first, which takes seconds on a loaded 2-core machine.
    budget = 3 if backend == "local" else 10
    results = tune.Tuner(
        _always_fails,
        tune_config=tune.TuneConfig(backend=backend, time_budget_s=budget),  # type: ignore[arg-type]
        run_config=tune.RunConfig(
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=-1),
            callbacks=[events],
            verbose=0,
        ),
    ).fit()
    (result,) = list(results)
    # Ended by the budget while retrying: not a success.
    assert isinstance(result.error, ValueError) and "fails every time" in str(result.error)
    assert results.num_errors == 1 and results.num_terminated == 0
    assert [type(e) for e in results.errors] == [ValueError]
    # Retries back off (0, 1, 2, 4 s) instead of spinning (33 attempts before).
    errored = [e for e in events.events if isinstance(e, TrialErrored)]
    assert 1 <= len(errored) <= 5
    assert all(e.will_retry for e in errored)
