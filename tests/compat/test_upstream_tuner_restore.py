"""Ray Tune's ``tests/test_tuner_restore.py``, asserted against ``Tuner.restore``.

atune's ``Tuner.restore`` takes the trainable (as Ray Tune >= 2.5 does), so upstream's
"restore without re-specifying the trainable" parts do not apply.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from _checkpointing import read_json_checkpoint as _read, report_json


def _sometimes_failing(config: dict[str, Any]) -> None:
    """Reports ``num_epochs`` checkpoints, fails while the marker exists, then reports once more."""
    checkpoint = tune.get_checkpoint()
    state = {"it": _read(checkpoint)["it"]} if checkpoint else {"it": 0}
    for _ in range(config.get("num_epochs", 1)):
        state["it"] += 1
        report_json(dict(state), state)
    marker = config.get("fail_marker")
    if marker and os.path.exists(marker):
        raise RuntimeError("I am failing")
    state["it"] += 1
    report_json(dict(state), state)


def _tuner(storage: str, name: str, space: dict[str, Any], **rc: Any) -> tune.Tuner:
    return tune.Tuner(
        _sometimes_failing,
        param_space=space,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, **rc),
    )


async def _fit_within(tuner: tune.Tuner, seconds: float = 20) -> Any:
    with anyio.fail_after(seconds):  # today a finished experiment's fit() never returns
        return await tuner.fit()


async def test_restore_finished_keeps_trial_count(storage: str) -> None:
    def one(config: dict[str, Any]) -> int:
        return 1

    tuner = tune.Tuner(
        one,
        tune_config=tune.TuneConfig(num_samples=4, metric="_metric", mode="max", backend="local"),
        run_config=tune.RunConfig(name="num_trials", storage_path=storage, verbose=0),
    )
    results = await tuner.fit()
    assert len(results) == 4
    restored = tune.Tuner.restore(os.path.join(storage, "num_trials"), one)
    results = restored.get_results()
    assert len(results) == 4
    assert results.get_best_result().metrics["_metric"] == 1
    results = await _fit_within(restored)
    assert len(results) == 4
    assert results.get_best_result().metrics["_metric"] == 1


@pytest.mark.parametrize(
    ("resume", "expected"), [("resume_errored", [2, 3, 2, 3]), ("restart_errored", [2, 2, 2, 2])]
)
def test_restore_errored_trials(
    storage: str, tmp_path: Path, resume: str, expected: list[int]
) -> None:
    marker = tmp_path / "fail_marker"
    marker.write_text("")
    space = {"fail_marker": tune.grid_search([None, str(marker), None, str(marker)])}
    results = _tuner(storage, "errored", space).fit()
    assert len(results) == 4
    assert len(results.errors) == 2
    assert [r.metrics["it"] for r in results] == [2, 1, 2, 1]

    marker.unlink()
    results = tune.Tuner.restore(
        os.path.join(storage, "errored"), _sometimes_failing, **{resume: True}
    ).fit()
    assert len(results) == 4
    assert not results.errors
    assert [r.metrics["it"] for r in results] == expected


def _hang_while(config: dict[str, Any]) -> None:
    checkpoint = tune.get_checkpoint()
    state = {"it": _read(checkpoint)["it"]} if checkpoint else {"it": 0}
    state["it"] += 1
    report_json(dict(state), state)
    if config["mode"] == "fail" and os.path.exists(config["marker"]):
        raise RuntimeError("I am failing")
    if config["mode"] == "hang":
        while os.path.exists(config["marker"]):  # stopped at its next report
            time.sleep(0.02)
    state["it"] += 1
    report_json(dict(state), state)


class _FailOnError(tune.Callback):
    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        raise RuntimeError("Failing")


def _interrupted_run(storage: str, tmp_path: Path, name: str) -> str:
    marker = tmp_path / "marker"
    marker.write_text("")
    space = {"mode": tune.grid_search(["ok", "hang", "fail", "hang"]), "marker": str(marker)}
    tuner = tune.Tuner(
        _hang_while,
        param_space=space,
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=[_FailOnError()]
        ),
    )
    with pytest.raises(tune.TuneError, match="Failing"):
        tuner.fit()
    marker.unlink()
    return os.path.join(storage, name)


def test_resume_unfinished_continues_running_and_pending(storage: str, tmp_path: Path) -> None:
    # After the interruption: one TERMINATED at 2, one RUNNING at 1, one ERROR at 1, one PENDING.
    path = _interrupted_run(storage, tmp_path, "unfinished")
    results = tune.Tuner.restore(path, _hang_while).fit()
    assert len(results) == 4
    assert len(results.errors) == 1
    assert sorted(r.metrics["it"] for r in results) == [1, 2, 2, 3]


def test_resume_errored_only(storage: str, tmp_path: Path) -> None:
    path = _interrupted_run(storage, tmp_path, "errored_only")
    results = tune.Tuner.restore(
        path, _hang_while, resume_unfinished=False, resume_errored=True
    ).fit()
    assert len(results) == 4
    assert len(results.errors) == 0
    assert sorted((r.metrics or {}).get("it", 0) for r in results) == [0, 1, 2, 3]


def test_restore_falls_back_to_latest_available_checkpoint(storage: str, tmp_path: Path) -> None:
    marker = tmp_path / "fail_marker"
    marker.write_text("")
    results = _tuner(storage, "latest", {"fail_marker": str(marker), "num_epochs": 4}).fit()
    [result] = list(results)
    assert result.error is not None
    assert result.metrics["it"] == 4
    marker.unlink()
    kept = sorted(p for p in os.listdir(result.path) if p.startswith("checkpoint_"))
    for name in kept[-2:]:
        shutil.rmtree(os.path.join(result.path, name))
    results = tune.Tuner.restore(
        os.path.join(storage, "latest"), _sometimes_failing, resume_errored=True
    ).fit()
    [result] = list(results)
    assert result.error is None
    assert result.metrics["it"] == 7  # from it=2, four epochs and one more report
    assert result.metrics["iterations_since_restore"] == 5


class _RestoreFailsOnce(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.idx = 0
        self.tag = config["tag"]
        self.restored = False

    def step(self) -> dict[str, Any]:
        if self.idx == 0 and self.restored:
            raise RuntimeError("restored trial cannot start from scratch")
        if self.idx == 2 and not self.restored:
            raise RuntimeError("first run fails at idx=2")
        self.idx += 1
        return {"score": self.idx}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"idx": self.idx}

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.restored = True
        if not os.path.exists(self.tag):
            Path(self.tag).touch()
            raise RuntimeError("failing first restore")
        self.idx = checkpoint["idx"]


def _restore_retry_run(storage: str, tmp_path: Path) -> Any:
    return tune.Tuner(
        _RestoreFailsOnce,
        param_space={"tag": str(tmp_path / "tag")},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 5},
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()


def test_failed_restore_counts_as_a_failure_without_retry(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", "0")
    [result] = list(_restore_retry_run(storage, tmp_path))
    assert result.metrics["score"] == 2


def test_restore_retry_env_var(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", "1")
    [result] = list(_restore_retry_run(storage, tmp_path))
    assert result.metrics["score"] == 5


def test_restore_with_another_trainable_raises(storage: str, tmp_path: Path) -> None:
    def train_func_1(config: dict[str, Any]) -> None:
        report_json({"data": 1}, {"data": 1})
        raise RuntimeError("Failing!")

    def train_func_2(config: dict[str, Any]) -> None:
        pass

    tune.Tuner(
        train_func_1,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="overwrite", storage_path=storage, verbose=0),
    ).fit()
    with pytest.raises(ValueError):
        tune.Tuner.restore(os.path.join(storage, "overwrite"), train_func_2, resume_errored=True)


class _Big:
    def __init__(self) -> None:
        self.data = list(range(100_000))


def _fn_with_data(
    config: dict[str, Any], data_str: str | None = None, data_obj: Any = None
) -> None:
    assert data_str is not None and data_obj is not None
    _sometimes_failing(config)


class _ClassWithData(tune.Trainable):
    def setup(
        self, config: dict[str, Any], data_str: str | None = None, data_obj: Any = None
    ) -> None:
        assert data_str is not None and data_obj is not None
        self.idx = 0
        self.marker = config["fail_marker"]

    def step(self) -> dict[str, Any]:
        if os.path.exists(self.marker):
            raise RuntimeError("run is failing")
        self.idx += 1
        return {"score": self.idx}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"idx": self.idx}

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.idx = checkpoint["idx"]


@pytest.mark.parametrize("function", [True, False], ids=["function", "class"])
def test_restore_with_parameters(storage: str, tmp_path: Path, function: bool) -> None:
    trainable = _fn_with_data if function else _ClassWithData

    def wrapped() -> Any:
        return tune.with_parameters(trainable, data_str="data", data_obj=_Big())

    marker = tmp_path / "fail_marker"
    marker.write_text("")
    results = tune.Tuner(
        wrapped(),
        param_space={"fail_marker": str(marker)},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="with_params",
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 3},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0 if function else 1),
        ),
    ).fit()
    assert results.errors
    marker.unlink()
    results = tune.Tuner.restore(
        os.path.join(storage, "with_params"), wrapped(), resume_errored=True
    ).fit()
    assert not results.errors


def test_restore_from_moved_experiment(tmp_path: Path) -> None:
    marker = tmp_path / "fail_marker"
    marker.write_text("")
    old = tmp_path / "results"
    results = _tuner(
        str(old),
        "exp_dir",
        {"fail_marker": str(marker)},
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    ).fit()
    assert len(results.errors) == 1
    assert results[0].metrics["training_iteration"] == 1

    new = tmp_path / "new_results"
    shutil.move(str(old), str(new))
    os.rename(new / "exp_dir", new / "new_exp_dir")
    marker.unlink()
    results = tune.Tuner.restore(
        str(new / "new_exp_dir"), _sometimes_failing, resume_errored=True
    ).fit()
    assert not results.errors
    assert results[0].metrics["training_iteration"] == 3
    assert results[0].checkpoint
    assert len(results[0].best_checkpoints) == 2
    dirs = sorted(p for p in os.listdir(results[0].path) if p.startswith("checkpoint_"))
    assert len(dirs) == 2
    assert not old.exists()


async def test_restore_from_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def score(config: dict[str, Any]) -> None:
        tune.report({"score": 1})

    await tune.Tuner(
        score,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path="relative_dir", name="exp_name", verbose=0),
    ).fit()
    results = await _fit_within(tune.Tuner.restore("relative_dir/exp_name", score))
    assert not results.errors
    assert results[0].metrics["score"] == 1


def test_checkpoints_after_resume_continue_numbering_and_retention(
    storage: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fail_marker"
    marker.write_text("")
    results = _tuner(
        storage,
        "numbering",
        {"fail_marker": str(marker), "num_epochs": 2},
        checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
    ).fit()
    assert results[0].metrics["training_iteration"] == 2
    first = sorted(p for p in os.listdir(results[0].path) if p.startswith("checkpoint_"))
    assert len(first) == 2
    marker.unlink()
    results = tune.Tuner.restore(
        os.path.join(storage, "numbering"), _sometimes_failing, resume_errored=True
    ).fit()
    assert not results.errors
    assert results[0].metrics["training_iteration"] == 5
    dirs = sorted(p for p in os.listdir(results[0].path) if p.startswith("checkpoint_"))
    assert dirs[0] == first[1]  # the oldest went; the first run's names were not reused
    assert len(dirs) == 4
    values = [
        _read(tune.Checkpoint.from_directory(os.path.join(results[0].path, d)))["it"] for d in dirs
    ]
    assert values == [2, 3, 4, 5]
