"""Ray Tune's ``tests/test_tuner.py``, asserted against atune's ``Tuner``.

Upstream runs most of these with Ray Train trainers; the Tuner behaviour they assert
(failures, fail-fast, checkpoint options, working directory) is tested here with
function trainables.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import atune as tune


def _always_fails(config: dict[str, Any]) -> None:
    raise RuntimeError("There is an error in trainer!")


def _run(**kw: Any) -> tune.RunConfig:
    kw.setdefault("verbose", 0)
    return tune.RunConfig(**kw)


def test_failing_trials_are_results_with_errors(storage: str) -> None:
    grid = tune.Tuner(
        _always_fails,
        param_space={"n": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local", metric="iteration", mode="max"),
        run_config=_run(storage_path=storage),
    ).fit()
    assert len(grid) == 2
    assert all(result.error for result in grid)


def test_fail_fast_stops_after_the_first_error(storage: str) -> None:
    grid = tune.Tuner(
        _always_fails,
        param_space={"n": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=1),
        run_config=_run(storage_path=storage, failure_config=tune.FailureConfig(fail_fast=True)),
    ).fit()
    assert len([result.error for result in grid if result.error]) == 1


def test_fail_fast_raise_reraises_the_error(storage: str) -> None:
    tuner = tune.Tuner(
        _always_fails,
        param_space={"n": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run(storage_path=storage, failure_config=tune.FailureConfig(fail_fast="raise")),
    )
    with pytest.raises(RuntimeError, match="error in trainer"):
        tuner.fit()


class _FailAfter(tune.Callback):
    """Fails the driver once ``count`` results have arrived."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: Any, **info: Any
    ) -> None:
        self.seen += 1
        if self.seen == self.count:
            raise RuntimeError("driver failure injected")


def _three_steps(config: dict[str, Any]) -> None:
    for step in range(3):
        tune.report({"step": step})


def test_driver_failure_then_restore_finishes_every_trial(storage: str) -> None:
    tuner = tune.Tuner(
        _three_steps,
        param_space={"n": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=1),
        run_config=_run(name="driver_fail", storage_path=storage, callbacks=[_FailAfter(5)]),
    )
    # atune names the callback in a TuneError (Ray Tune < 2.3 raised TuneError too).
    with pytest.raises(tune.TuneError, match="driver failure injected"):
        tuner.fit()
    grid = tune.Tuner.restore(os.path.join(storage, "driver_fail"), _three_steps).fit()
    assert len(grid) == 4
    assert not grid.errors


@pytest.mark.parametrize(
    ("tune_config", "run_config"),
    [
        (tune.TuneConfig(backend="local"), _run(progress_reporter=tune.CLIReporter())),
        (tune.TuneConfig(backend="local", reuse_actors=True), _run()),
        (tune.TuneConfig(backend="local"), _run(log_to_file="some_file")),
        (tune.TuneConfig(backend="local", max_concurrent_trials=3), _run()),
        (tune.TuneConfig(backend="local", time_budget_s=60), _run()),
    ],
    ids=["progress_reporter", "reuse_actors", "log_to_file", "max_concurrent", "time_budget"],
)
def test_tuner_options_are_accepted_and_run(
    storage: str, tune_config: tune.TuneConfig, run_config: tune.RunConfig
) -> None:
    run_config.storage_path = storage
    grid = tune.Tuner(lambda config: 1, tune_config=tune_config, run_config=run_config).fit()
    assert grid[0].metrics["_metric"] == 1


@pytest.mark.parametrize(
    "checkpoint_config",
    [tune.CheckpointConfig(checkpoint_at_end=True), tune.CheckpointConfig(checkpoint_frequency=1)],
)
def test_function_trainable_refuses_class_checkpoint_options(
    checkpoint_config: tune.CheckpointConfig,
) -> None:
    with pytest.raises(ValueError):
        tune.Tuner(lambda config: 1, run_config=_run(checkpoint_config=checkpoint_config))


@pytest.mark.parametrize("at_end", [False, None])
def test_function_trainable_accepts_checkpoint_at_end_false_or_none(
    storage: str, at_end: bool | None
) -> None:
    tune.Tuner(
        lambda config: 1,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run(
            storage_path=storage, checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=at_end)
        ),
    ).fit()


def test_non_serializable_trainable_fails_at_tuner() -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError, match="non-serializable"):
        tune.Tuner(lambda config: print(lock))


def _write_in_trial_dir(config: dict[str, Any]) -> None:
    original = Path(os.environ["TUNE_ORIG_WORKING_DIR"])
    expect_chdir = config["chdir"]  # the driver reads RAY_CHDIR_TO_TRIAL_DIR, not the worker
    trial_dir = Path(tune.get_context().get_trial_dir())
    if expect_chdir:
        assert Path.cwd() == trial_dir
    else:
        # The worker's own directory (a shared test Ray started elsewhere), not the trial's.
        assert Path.cwd() != trial_dir
    assert (original / "read.txt").read_text() == "data"
    (trial_dir / "write.txt").write_text(str(config["id"]))
    tune.report({"id": config["id"]})


@pytest.mark.ray
@pytest.mark.parametrize("chdir", [True, False], ids=["chdir", "no_chdir"])
def test_trial_working_directory(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdir: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("read.txt").write_text("data")
    if not chdir:
        monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    grid = tune.Tuner(
        _write_in_trial_dir,
        param_space={"id": tune.grid_search(list(range(2))), "chdir": chdir},
        tune_config=tune.TuneConfig(backend="ray"),
        run_config=_run(storage_path=storage),
    ).fit()
    assert not grid.errors
    for result in grid:
        assert (Path(result.path) / "write.txt").read_text() == str(result.config["id"])
