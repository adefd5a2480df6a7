"""A stopped trial stops exactly at the report that stopped it, on every backend.

Ray Tune's function API hands each result over in lock-step (semantics reference §1.4):
``report()`` blocks until the driver asks for the next result, so when a result stops the
trial, the code after that ``report()`` never runs and no further iteration happens. A
class trainable's ``step()`` is called once per iteration, never after the stopping one.

atune may run several iterations per call to the runner (batching) when no driver-side
decision needs each result; these tests also pin that a batch never overshoots a stop.

Each trainable appends one line per event to ``marker.txt`` in its trial directory, so
the tests count what really ran, in whichever process ran it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune import RunConfig, Trainable, TuneConfig, Tuner
from atune.result import Result
from atune.stopper import MaximumIterationStopper
from atune.storage._layout import RESULT_FILE

MARKER = "marker.txt"


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; for Ray, ship this module's code to the workers by value."""
    if request.param == "ray":
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    return str(request.param)


def _mark(trial_dir: str | None, line: str) -> None:
    assert trial_dir is not None
    with (Path(trial_dir) / MARKER).open("a") as f:
        f.write(line + "\n")


def report_and_mark(config: dict[str, Any]) -> None:
    """Reports 1..10 and marks after each report returns; ``done`` at ``done_at``."""
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(1, 11):
        tune.report({"score": i, "nested": {"score": i}, "done": i == config["done_at"]})
        _mark(trial_dir, f"after {i}")


def yield_and_mark(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A generator trainable: marks after each ``yield`` resumes."""
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(1, 11):
        yield {"score": i}
        _mark(trial_dir, f"after {i}")


async def async_report_and_mark(config: dict[str, Any]) -> None:
    """An ``async def`` trainable (atune runs it; Ray Tune does not)."""
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(1, 11):
        tune.report({"score": i})
        _mark(trial_dir, f"after {i}")


def report_many(config: dict[str, Any]) -> None:
    """Reports fast, many times: batches of several results per runner call."""
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(1, 2001):
        tune.report({"score": i})
        if i % 100 == 0 or i > 295:
            _mark(trial_dir, f"after {i}")


class StepAndMark(Trainable):
    """Marks every ``step()`` call."""

    def step(self) -> dict[str, Any]:
        _mark(self.logdir, f"step {self.iteration + 1}")
        return {"score": self.iteration + 1, "nested": {"score": self.iteration + 1}}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        return None

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        pass


def stop_at_three(trial_id: str, result: dict[str, Any]) -> bool:
    """A function stopper (evaluated in the driver, one result at a time)."""
    return bool(result["training_iteration"] >= 3)


# Factories, so that a stateful Stopper is fresh in every test.
STOPS: dict[str, Callable[[], Any]] = {
    "dict": lambda: {"training_iteration": 3},
    "dict-metric": lambda: {"score": 3},
    "dict-nested": lambda: {"nested/score": 3},
    "callable": lambda: stop_at_three,
    "stopper": lambda: MaximumIterationStopper(3),
}


async def fit_one(trainable: Any, backend: str, storage: str, **kwargs: Any) -> Result:
    """Run one trial and return its result, which must not have failed."""
    config = kwargs.pop("config", {})
    tuner = Tuner(
        trainable,
        param_space=config,
        tune_config=TuneConfig(backend=backend),  # type: ignore[arg-type]
        run_config=RunConfig(name="stop", storage_path=storage, **kwargs),
    )
    results = await tuner.fit()
    assert len(results) == 1
    result: Result = results[0]
    assert result.error is None
    return result


def metrics_of(result: Result) -> dict[str, Any]:
    """``result.metrics``, which must be there."""
    assert result.metrics is not None
    return result.metrics


def marks(result: Result) -> list[str]:
    assert result.path is not None
    path = Path(result.path) / MARKER
    return path.read_text().splitlines() if path.exists() else []


def logged_iterations(result: Result) -> list[int]:
    assert result.path is not None
    lines = (Path(result.path) / RESULT_FILE).read_text().splitlines()
    return [json.loads(line)["training_iteration"] for line in lines if line.strip()]


@pytest.mark.parametrize("stop", list(STOPS.values()), ids=list(STOPS))
async def test_function_code_after_stopping_report_never_runs(
    backend: str, storage: str, stop: Callable[[], Any]
) -> None:
    result = await fit_one(report_and_mark, backend, storage, config={"done_at": 0}, stop=stop())
    assert marks(result) == ["after 1", "after 2"]
    assert metrics_of(result)["training_iteration"] == 3
    assert logged_iterations(result) == [1, 2, 3]


async def test_function_done_result_stops_at_that_report(backend: str, storage: str) -> None:
    result = await fit_one(report_and_mark, backend, storage, config={"done_at": 3})
    assert marks(result) == ["after 1", "after 2"]
    assert metrics_of(result)["done"] is True
    assert logged_iterations(result) == [1, 2, 3]


@pytest.mark.parametrize("stop", list(STOPS.values()), ids=list(STOPS))
async def test_class_step_never_called_after_stop(
    backend: str, storage: str, stop: Callable[[], Any]
) -> None:
    result = await fit_one(StepAndMark, backend, storage, stop=stop())
    assert marks(result) == ["step 1", "step 2", "step 3"]
    assert metrics_of(result)["training_iteration"] == 3
    assert logged_iterations(result) == [1, 2, 3]


@pytest.mark.parametrize(
    "trainable", [yield_and_mark, async_report_and_mark], ids=["generator", "async"]
)
@pytest.mark.parametrize("stop", [STOPS["dict"], STOPS["callable"]], ids=["dict", "callable"])
async def test_other_function_kinds_stop_at_the_boundary(
    backend: str, storage: str, trainable: Any, stop: Callable[[], Any]
) -> None:
    result = await fit_one(trainable, backend, storage, stop=stop())
    assert marks(result) == ["after 1", "after 2"]
    assert logged_iterations(result) == [1, 2, 3]


async def test_dict_stop_across_many_batches_is_exact(backend: str, storage: str) -> None:
    result = await fit_one(report_many, backend, storage, stop={"training_iteration": 300})
    assert logged_iterations(result) == list(range(1, 301))
    assert marks(result) == [
        "after 100",
        "after 200",
        *(f"after {i}" for i in range(296, 300)),
    ]


async def test_reused_runner_stops_each_trial_at_its_boundary(backend: str, storage: str) -> None:
    tuner = Tuner(
        report_and_mark,
        param_space={"done_at": 0, "i": tune.grid_search([0, 1, 2])},
        tune_config=TuneConfig(
            backend=backend,  # type: ignore[arg-type]
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=RunConfig(name="reuse", storage_path=storage, stop={"training_iteration": 3}),
    )
    results = await tuner.fit()
    assert results.num_terminated == 3
    for result in results:
        assert marks(result) == ["after 1", "after 2"]
        assert logged_iterations(result) == [1, 2, 3]
    if backend == "ray":  # one actor served all three trials
        assert len({metrics_of(result)["pid"] for result in results}) == 1


def _hangs_after_one_report(config: dict[str, Any]) -> None:
    tune.report({"i": 1})
    time.sleep(4)  # past the time budget and its grace: the trial is abandoned here
    tune.report({"i": 2})


def test_report_outside_a_trial_ignores_an_abandoned_in_process_trial(storage: str) -> None:
    """An abandoned trial's thread lives on until its function returns; ``report()`` from
    outside any trial must not fall back on that trial's session (it raised its internal
    stop signal instead of returning None)."""
    tune.Tuner(
        _hangs_after_one_report,
        tune_config=tune.TuneConfig(backend="local", time_budget_s=0.5),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert tune.report({"score": 1}) is None  # type: ignore[func-returns-value]
