"""One conformance suite, run against every backend (in-process threads and Ray actors).

Every test builds a real ``Tuner`` with ``TuneConfig(backend=...)`` and checks what a user
sees: ``ResultGrid``/``Result`` contents, per-trial files and checkpoint directories. The
expected values are Ray Tune's (semantics reference §1-§3); where atune deliberately
differs, the test says so.

Trainables are module-level functions and classes. Ray workers cannot import this test
module, so the ``backend`` fixture registers it to be pickled by value for the Ray run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune import Checkpoint, CheckpointConfig, RunConfig, Trainable, TuneConfig, Tuner
from atune.result import Result, ResultGrid
from atune.storage._layout import PARAMS_FILE, PROGRESS_FILE, RESULT_FILE, checkpoint_name

# Keys every result carries (semantics reference §3). ``experiment_tag`` is added by the
# driver to ``Result.metrics`` only, never to result.json.
AUTO_KEYS = (
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "done",
    "trial_id",
    "date",
    "timestamp",
    "pid",
    "hostname",
    "node_ip",
    "config",
)


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; for Ray, ship this module's code to the workers by value."""
    if request.param == "ray":
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    return str(request.param)


async def run(
    trainable: Any,
    backend: str,
    storage: str,
    *,
    param_space: dict[str, Any] | None = None,
    name: str = "exp",
    tune_kwargs: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> ResultGrid:
    """Fit ``trainable`` on ``backend`` and return its results."""
    tuner = Tuner(
        trainable,
        param_space=param_space,
        tune_config=TuneConfig(backend=backend, **(tune_kwargs or {})),  # type: ignore[arg-type]
        run_config=RunConfig(name=name, storage_path=storage, **run_kwargs),
    )
    results: ResultGrid = await tuner.fit()
    return results


def rows(trial_dir: str | None) -> list[dict[str, Any]]:
    """The result.json rows of a trial."""
    assert trial_dir is not None
    text = (Path(trial_dir) / RESULT_FILE).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def metrics_of(result: Result) -> dict[str, Any]:
    """``result.metrics``, which must be there."""
    assert result.metrics is not None
    return result.metrics


def objective(step: int, a: float, b: float) -> float:
    """A deterministic score (Ray Tune's tutorial objective)."""
    return (0.1 + a * step / 100) ** (-1) + b * 0.1


class TrainingFailed(RuntimeError):
    """A user exception type defined by the program, not a builtin."""


# --------------------------------------------------------------------- trainables
def report_twenty(config: dict[str, Any]) -> None:
    for i in range(20):
        tune.report({"score": i * config.get("a", 1)})


def report_at_end(config: dict[str, Any]) -> None:
    total = sum(range(10))
    tune.report({"score": total})


def report_then_return(config: dict[str, Any]) -> dict[str, Any]:
    for i in range(3):
        tune.report({"score": i})
    return {"score": 99}


def return_number(config: dict[str, Any]) -> float:
    return 0.5


def yield_results(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for i in range(3):
        yield {"score": i * 10}


async def async_trainable(config: dict[str, Any]) -> None:
    for i in range(3):
        await asyncio.sleep(0)
        tune.report({"score": i + 100})


def return_string(config: dict[str, Any]) -> str:
    return "not-a-result"


def fail_on_one(config: dict[str, Any]) -> None:
    tune.report({"score": config["x"]})
    if config["x"] == 1:
        raise TrainingFailed(f"boom at x={config['x']}")
    tune.report({"score": config["x"] + 10})


def fail_with_value_error(config: dict[str, Any]) -> None:
    tune.report({"score": 0})
    raise ValueError("bad value 42")


def done_at_third(config: dict[str, Any]) -> None:
    for i in range(10):
        tune.report({"score": i, "done": i == 2})


def report_timesteps(config: dict[str, Any]) -> None:
    for i in range(3):
        tune.report({"score": i, "timesteps_this_iter": 5})


def report_context(config: dict[str, Any]) -> None:
    ctx = tune.get_context()
    resources = ctx.get_trial_resources()
    tune.report(
        {
            "ctx_trial_id": ctx.get_trial_id(),
            "ctx_trial_name": ctx.get_trial_name(),
            "ctx_trial_dir": ctx.get_trial_dir(),
            "ctx_experiment_name": ctx.get_experiment_name(),
            "ctx_bundles": None if resources is None else resources.bundles,
        }
    )


def report_checkpoints(config: dict[str, Any]) -> None:
    seen: list[str | None] = []
    for i in range(3):
        current = tune.get_checkpoint()
        if current is None:
            seen.append(None)
        else:
            with current.as_directory() as path:
                seen.append(Path(path, "state.txt").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "state.txt").write_text(str(i))
            tune.report({"score": i, "seen": list(seen)}, checkpoint=Checkpoint.from_directory(tmp))


def late_key(config: dict[str, Any]) -> None:
    for i in range(4):
        metrics: dict[str, Any] = {"score": i}
        if i >= 2:
            metrics["extra"] = i * 100
        tune.report(metrics)


def score_is_a(config: dict[str, Any]) -> None:
    tune.report({"score": config["a"]})


def serial_marker(config: dict[str, Any]) -> None:
    log = Path(config["log"])
    with log.open("a") as f:
        f.write(f"start {config['i']}\n")
    tune.report({"score": 0})
    with log.open("a") as f:
        f.write(f"end {config['i']}\n")
    tune.report({"score": 1})


class Objective(Trainable):
    """A class trainable with dict checkpoints."""

    # Written as Ray Tune users write it; atune's base also takes ``**parameters``.
    def setup(self, config: dict[str, Any]) -> None:  # type: ignore[override]
        self.a = config["a"]
        self.b = config["b"]

    def step(self) -> dict[str, Any]:
        return {"score": objective(self.iteration, self.a, self.b)}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        assert isinstance(checkpoint, dict)
        self.a, self.b = checkpoint["a"], checkpoint["b"]


class NonDictStep(Trainable):
    def step(self) -> Any:
        return 1.5


class DoneAtThird(Trainable):
    def step(self) -> dict[str, Any]:
        return {"score": self.iteration, "done": self.iteration == 2}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        return None

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        pass


class FileCheckpoints(Trainable):
    """Writes the iteration it was saved at into each checkpoint directory."""

    def step(self) -> dict[str, Any]:
        return {"score": self.iteration}

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        Path(checkpoint_dir, "iteration.txt").write_text(str(self.iteration))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        pass


class ClassTimesteps(Trainable):
    def step(self) -> dict[str, Any]:
        return {"score": 1, "timesteps_this_iter": 7}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        return None

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        pass


# ------------------------------------------------------------------ function API
async def test_intermediate_reports(backend: str, storage: str) -> None:
    results = await run(report_twenty, backend, storage, param_space={"a": 2})
    assert len(results) == 1
    result = results[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 20
    assert metrics_of(result)["score"] == 38
    assert [row["score"] for row in rows(result.path)] == [i * 2 for i in range(20)]


async def test_final_report_only(backend: str, storage: str) -> None:
    result = (await run(report_at_end, backend, storage))[0]
    assert metrics_of(result)["training_iteration"] == 1
    assert metrics_of(result)["score"] == 45


async def test_return_dict_is_one_more_report(backend: str, storage: str) -> None:
    result = (await run(report_then_return, backend, storage))[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 4
    assert metrics_of(result)["score"] == 99
    assert [row["score"] for row in rows(result.path)] == [0, 1, 2, 99]


async def test_return_number_is_metric(backend: str, storage: str) -> None:
    result = (await run(return_number, backend, storage))[0]
    assert result.error is None
    assert metrics_of(result)["_metric"] == 0.5
    assert metrics_of(result)["training_iteration"] == 1


async def test_generator_yields_are_reports(backend: str, storage: str) -> None:
    result = (await run(yield_results, backend, storage))[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 3
    assert [row["score"] for row in rows(result.path)] == [0, 10, 20]


async def test_async_def_trainable_reports(backend: str, storage: str) -> None:
    # atune runs an ``async def`` trainable on a loop of its own (Ray Tune errors on it).
    result = (await run(async_trainable, backend, storage))[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 3
    assert metrics_of(result)["score"] == 102


async def test_invalid_return_value_errors_with_value_error(backend: str, storage: str) -> None:
    results = await run(return_string, backend, storage)
    assert results.num_errors == 1
    error = results[0].error
    assert isinstance(error, ValueError)
    assert "not-a-result" in str(error)


async def test_builtin_exception_keeps_type_and_message(backend: str, storage: str) -> None:
    results = await run(fail_with_value_error, backend, storage)
    error = results[0].error
    assert isinstance(error, ValueError)
    assert "bad value 42" in str(error)
    assert metrics_of(results[0])["training_iteration"] == 1


async def test_failing_trial_does_not_stop_the_others(backend: str, storage: str) -> None:
    results = await run(
        fail_on_one, backend, storage, param_space={"x": tune.grid_search([0, 1, 2])}
    )
    assert len(results) == 3
    assert results.num_errors == 1
    assert results.num_terminated == 2
    by_x = {r.config["x"]: r for r in results if r.config is not None}
    assert "boom at x=1" in str(by_x[1].error)
    assert metrics_of(by_x[1])["training_iteration"] == 1
    assert by_x[0].error is None and metrics_of(by_x[0])["score"] == 10
    assert by_x[2].error is None and metrics_of(by_x[2])["score"] == 12


async def test_user_exception_keeps_its_type(backend: str, storage: str) -> None:
    results = await run(fail_on_one, backend, storage, param_space={"x": 1})
    error = results[0].error
    assert isinstance(error, TrainingFailed)
    assert "boom at x=1" in str(error)


# --------------------------------------------------------------------- class API
async def test_class_stop_at_training_iteration(backend: str, storage: str) -> None:
    results = await run(
        Objective,
        backend,
        storage,
        param_space={"a": 0.5, "b": 3.0},
        stop={"training_iteration": 20},
    )
    result = results[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 20
    assert metrics_of(result)["score"] == pytest.approx(objective(19, 0.5, 3.0))
    assert len(rows(result.path)) == 20


async def test_class_step_must_return_dict(backend: str, storage: str) -> None:
    results = await run(NonDictStep, backend, storage, stop={"training_iteration": 3})
    assert results.num_errors == 1
    error = results[0].error
    assert isinstance(error, TypeError)
    assert "1.5" in str(error)


@pytest.mark.parametrize("trainable", [done_at_third, DoneAtThird], ids=["function", "class"])
async def test_done_stops_trial_at_that_iteration(
    backend: str, storage: str, trainable: Any
) -> None:
    result = (await run(trainable, backend, storage))[0]
    assert result.error is None
    assert metrics_of(result)["training_iteration"] == 3
    assert metrics_of(result)["done"] is True
    assert [row["score"] for row in rows(result.path)] == [0, 1, 2]


# ------------------------------------------------------------------ auto-filled metrics
async def test_auto_filled_metrics(backend: str, storage: str) -> None:
    results = await run(report_twenty, backend, storage, param_space={"a": tune.grid_search([1])})
    result = results[0]
    metrics = metrics_of(result)
    for key in AUTO_KEYS:
        assert key in metrics, key
    assert metrics["config"] == {"a": 1}
    assert metrics["experiment_tag"] == "0_a=1"
    assert metrics["iterations_since_restore"] == 20
    assert metrics["time_total_s"] >= metrics["time_this_iter_s"] >= 0
    assert metrics["done"] is True
    assert metrics["checkpoint_dir_name"] is None
    assert "timesteps_total" not in metrics
    assert isinstance(metrics["pid"], int)
    if backend == "ray":
        assert metrics["pid"] != os.getpid()
    logged = rows(result.path)
    assert all("experiment_tag" not in row for row in logged)
    assert all(row["trial_id"] == metrics["trial_id"] for row in logged)
    assert [row["training_iteration"] for row in logged] == list(range(1, 21))


@pytest.mark.parametrize("trainable", [report_timesteps, ClassTimesteps], ids=["function", "class"])
async def test_timesteps_total_when_timesteps_reported(
    backend: str, storage: str, trainable: Any
) -> None:
    result = (await run(trainable, backend, storage, stop={"training_iteration": 3}))[0]
    assert result.error is None
    per_iter = metrics_of(result)["timesteps_this_iter"]
    assert [row["timesteps_total"] for row in rows(result.path)] == [
        per_iter,
        2 * per_iter,
        3 * per_iter,
    ]


# ------------------------------------------------------------------- session API
async def test_context_inside_trial(backend: str, storage: str) -> None:
    result = (await run(report_context, backend, storage, name="ctx_exp"))[0]
    metrics = metrics_of(result)
    trial_id = metrics["trial_id"]
    assert metrics["ctx_trial_id"] == trial_id
    assert metrics["ctx_trial_name"] == f"report_context_{trial_id}"
    assert metrics["ctx_trial_dir"] == result.path
    assert metrics["ctx_experiment_name"] == "ctx_exp"
    assert metrics["ctx_bundles"] == [{"CPU": 1.0}]


def test_session_api_outside_trial_returns_none() -> None:
    assert tune.report({"score": 1}) is None  # type: ignore[func-returns-value]
    assert tune.get_checkpoint() is None
    ctx = tune.get_context()
    assert ctx.get_trial_id() is None
    assert ctx.get_trial_dir() is None


# ------------------------------------------------------------------- checkpoints
async def test_function_checkpoints(backend: str, storage: str) -> None:
    result = (await run(report_checkpoints, backend, storage))[0]
    assert result.error is None
    assert result.path is not None
    trial_dir = Path(result.path)
    names = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("checkpoint_"))
    assert names == [checkpoint_name(0), checkpoint_name(1), checkpoint_name(2)]
    for i, name in enumerate(names):
        assert (trial_dir / name / "state.txt").read_text() == str(i)
    # get_checkpoint() mid-run is the latest reported checkpoint.
    assert metrics_of(result)["seen"] == [None, "0", "1"]
    assert [row["checkpoint_dir_name"] for row in rows(result.path)] == names
    assert result.checkpoint is not None
    assert Path(result.checkpoint.path) == trial_dir / checkpoint_name(2)


async def test_class_checkpoint_frequency_and_at_end(backend: str, storage: str) -> None:
    results = await run(
        FileCheckpoints,
        backend,
        storage,
        stop={"training_iteration": 5},
        checkpoint_config=CheckpointConfig(checkpoint_frequency=2),
    )
    result = results[0]
    assert result.error is None
    assert result.path is not None
    trial_dir = Path(result.path)
    names = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("checkpoint_"))
    assert names == [checkpoint_name(0), checkpoint_name(1), checkpoint_name(2)]
    saved_at = [(trial_dir / n / "iteration.txt").read_text() for n in names]
    assert saved_at == ["2", "4", "5"]
    assert result.checkpoint is not None
    assert Path(result.checkpoint.path) == trial_dir / checkpoint_name(2)


# ---------------------------------------------------------------------- trial files
async def test_trial_files(backend: str, storage: str) -> None:
    result = (await run(late_key, backend, storage, param_space={"lr": 0.1, "n": 3}))[0]
    assert result.path is not None
    trial_dir = Path(result.path)
    assert json.loads((trial_dir / PARAMS_FILE).read_text()) == {"lr": 0.1, "n": 3}
    logged = rows(result.path)
    assert [row["score"] for row in logged] == [0, 1, 2, 3]
    assert ["extra" in row for row in logged] == [False, False, True, True]
    with (trial_dir / PROGRESS_FILE).open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        csv_rows = list(reader)
    # atune extends the header when a key first appears (Ray Tune drops such keys).
    assert "extra" in header and "score" in header
    assert header.index("extra") > header.index("score")
    assert "config" not in header
    assert [r["extra"] for r in csv_rows] == ["", "", "200", "300"]


# ---------------------------------------------------------------------- result grid
async def test_result_grid(backend: str, storage: str) -> None:
    results = await run(
        score_is_a, backend, storage, param_space={"a": tune.grid_search([1, 3, 2])}
    )
    assert len(results) == 3
    assert results.num_errors == 0
    assert results.num_terminated == 3
    best = results.get_best_result("score", "max")
    assert best.config == {"a": 3}
    assert results.get_best_result("score", "min").config == {"a": 1}
    frame = results.get_dataframe()
    assert len(frame) == 3
    assert list(frame["config/a"]) == [1, 3, 2]
    assert list(frame["score"]) == [1, 3, 2]


async def test_grid_repeats_inside_each_sample(backend: str, storage: str) -> None:
    results = await run(
        score_is_a,
        backend,
        storage,
        param_space={"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 1)},
        tune_kwargs={"num_samples": 2},
    )
    assert len(results) == 4
    configs = [r.config for r in results]
    assert [c["a"] for c in configs if c is not None] == [1, 2, 1, 2]
    assert results.num_terminated == 4


async def test_max_concurrent_trials_one_runs_trials_one_at_a_time(
    backend: str, storage: str, tmp_path: Path
) -> None:
    log = tmp_path / "order.log"
    results = await run(
        serial_marker,
        backend,
        storage,
        param_space={"i": tune.grid_search([0, 1, 2]), "log": str(log)},
        tune_kwargs={"max_concurrent_trials": 1},
    )
    assert results.num_terminated == 3
    events = log.read_text().split()
    starts_and_ends = [w for w in events if w in ("start", "end")]
    assert starts_and_ends == ["start", "end"] * 3


# ----------------------------------------------------------------- trial start notice
def _saw_start_notice(marker: str) -> bool:
    """Wait (up to 20 s) for the driver's ``on_trial_start`` to write ``marker``."""
    for _ in range(400):
        if os.path.exists(marker):
            return True
        time.sleep(0.05)
    return False


def slow_first_report(config: dict[str, Any]) -> None:
    tune.report({"saw_start": _saw_start_notice(config["marker"])})


class SlowFirstStep(Trainable):
    def step(self) -> dict[str, Any]:
        return {"saw_start": _saw_start_notice(self.config["marker"]), "done": True}


class _MarkStart(tune.Callback):
    def __init__(self) -> None:
        self.results_before_start = 0
        self.started = 0

    def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
        self.started += 1
        assert trial.status == "RUNNING"
        Path(trial.config["marker"]).touch()

    def on_trial_result(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
        self.results_before_start += self.started == 0


@pytest.mark.parametrize("trainable", [slow_first_report, SlowFirstStep])
async def test_on_trial_start_fires_while_the_first_step_still_runs(
    backend: str, storage: str, tmp_path: Path, trainable: Any
) -> None:
    # The launch and the first step are one call; a long first step must not hold back
    # TrialStarted (Ray Tune calls on_trial_start once the trainable is set up).
    callback = _MarkStart()
    results = await run(
        trainable,
        backend,
        storage,
        param_space={"marker": str(tmp_path / "started")},
        callbacks=[callback],
        checkpoint_config=CheckpointConfig(checkpoint_at_end=False),
    )
    (result,) = list(results)
    assert result.error is None and result.metrics["saw_start"] is True
    assert callback.started == 1 and callback.results_before_start == 0


# ------------------------------------------------------------------------- sync fit
def test_sync_fit_outside_event_loop(backend: str, storage: str) -> None:
    tuner = Tuner(
        report_then_return,
        tune_config=TuneConfig(backend=backend),  # type: ignore[arg-type]
        run_config=RunConfig(name="sync", storage_path=storage),
    )
    results = tuner.fit()
    assert isinstance(results, ResultGrid)
    assert metrics_of(results[0])["training_iteration"] == 4
    assert tuner.get_results() is results
