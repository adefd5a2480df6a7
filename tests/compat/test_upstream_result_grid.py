"""Ray Tune's ``tests/test_result_grid.py``, asserted against atune's ``ResultGrid``.

Upstream builds most grids with ``tune.run``; here every grid comes from ``Tuner.fit()``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import atune as tune
from _checkpointing import read_json_checkpoint as _read, report_json


def _fit(trainable: Any, storage: str, space: dict[str, Any] | None = None, **tc: Any) -> Any:
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(backend="local", **tc),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()


def _checkpoint_twice(config: dict[str, Any]) -> None:
    for step in range(2):
        report_json({"step": step}, {"step": step})


def test_result_holds_checkpoint_metrics_and_config(storage: str) -> None:
    def only_checkpoint(config: dict[str, Any]) -> None:
        report_json({}, {"step": 0})

    result = _fit(only_checkpoint, storage, {"a": 1})[0]
    assert isinstance(result.checkpoint, tune.Checkpoint)
    assert isinstance(result.metrics, dict)
    assert result.config == {"a": 1}
    assert result.metrics["config"] == result.config


def test_result_with_metric_and_mode(storage: str) -> None:
    result = _fit(_checkpoint_twice, storage, {"a": 1}, metric="step", mode="min")[0]
    assert isinstance(result.checkpoint, tune.Checkpoint)
    assert isinstance(result.best_checkpoints, list)
    assert isinstance(result.metrics_dataframe, pd.DataFrame)
    assert len(result.metrics_dataframe) == 2
    # The latest checkpoint is the result's checkpoint, whatever the metric ranks best.
    lowest = min(result.best_checkpoints, key=lambda pair: pair[1]["step"])[0]
    assert os.path.normpath(result.checkpoint.path) != os.path.normpath(lowest.path)
    assert result.config == {"a": 1}
    assert result.metrics["config"] == result.config


def test_result_without_metric_and_mode(storage: str) -> None:
    result = _fit(_checkpoint_twice, storage, {"a": 1})[0]
    assert isinstance(result.checkpoint, tune.Checkpoint)
    assert isinstance(result.metrics_dataframe, pd.DataFrame)
    assert len(result.metrics_dataframe) == 2
    assert result.config == {"a": 1}
    assert result.metrics["config"] == result.config


def test_result_without_checkpoint(storage: str) -> None:
    def nothing(config: dict[str, Any]) -> None:
        pass

    assert _fit(nothing, storage)[0].checkpoint is None


def test_best_result_by_metric(storage: str) -> None:
    def two_reports(config: dict[str, Any]) -> None:
        for _ in range(2):
            tune.report({"x": config["x"]})

    best = _fit(two_reports, storage, {"x": tune.grid_search([1, 2])}).get_best_result(
        metric="x", mode="max"
    )
    assert best.config["x"] == 2
    assert best.metrics["x"] == 2


def test_best_result_keeps_its_checkpoint_history(storage: str) -> None:
    def with_history(config: dict[str, Any]) -> None:
        for step in range(2):
            report_json({"x": config["x"], "step": step}, {"x": config["x"], "step": step})

    grid = _fit(with_history, storage, {"x": tune.grid_search([1, 3])})
    best = grid.get_best_result(metric="x", mode="max")
    assert best.metrics["x"] == 3
    assert len(best.best_checkpoints) == 2
    for step, (checkpoint, metrics) in enumerate(best.best_checkpoints):
        assert isinstance(checkpoint, tune.Checkpoint)
        assert metrics["x"] == 3
        assert metrics["step"] == step
        assert _read(checkpoint) == {"x": 3, "step": step}


def test_best_result_without_reports_raises(storage: str) -> None:
    def nothing(config: dict[str, Any]) -> None:
        pass

    grid = _fit(nothing, storage, {"x": tune.grid_search([1, 2])})
    with pytest.raises(RuntimeError, match="No best trial found"):
        grid.get_best_result(metric="x", mode="max")


def test_result_repr_leaves_out_automatic_keys(storage: str) -> None:
    def one_report(config: dict[str, Any]) -> None:
        tune.report({"loss": 1})

    result = _fit(one_report, storage, {"x": tune.grid_search([1, 2])})[0]
    text = repr(result)
    assert "loss" in text
    for key in ("time_this_iter_s", "timestamp", "pid", "hostname", "node_ip", "date"):
        assert key not in text


def test_best_result_needs_metric_and_mode_with_several_trials(storage: str) -> None:
    def one_report(config: dict[str, Any]) -> None:
        tune.report({"x": 1})

    grid = _fit(one_report, storage, num_samples=2)
    with pytest.raises(ValueError):
        grid.get_best_result()
    with pytest.raises(ValueError):
        grid.get_best_result(metric="x")
    with pytest.raises(ValueError):
        grid.get_best_result(mode="max")


def test_best_result_of_a_single_trial_needs_no_metric(storage: str) -> None:
    def one_report(config: dict[str, Any]) -> None:
        tune.report({"x": 1})

    assert _fit(one_report, storage, num_samples=1).get_best_result()


def test_dataframe_last_or_best_rows(storage: str) -> None:
    def three_reports(config: dict[str, Any]) -> None:
        for factor in (1, 4, 3):
            tune.report({"metric": config["nested"]["param"] * factor})

    grid = _fit(three_reports, storage, {"nested": {"param": tune.grid_search([1, 2])}})
    assert len(grid) == 2
    assert sorted(grid.get_dataframe()["metric"]) == [3, 6]
    assert sorted(grid.get_dataframe(filter_metric="metric", filter_mode="max")["metric"]) == [
        4,
        8,
    ]
    df = grid.get_dataframe(filter_metric="metric", filter_mode="min")
    assert sorted(df["metric"]) == [1, 2]
    assert sorted(df["config/nested/param"]) == [1, 2]


def test_errors_and_terminated_counts(storage: str) -> None:
    def fails_some(config: dict[str, Any]) -> None:
        if config["i"] in (4, 6, 8):
            raise RuntimeError(f"trial {config['i']} fails")
        tune.report({"ok": 1})

    grid = _fit(fails_some, storage, {"i": tune.grid_search(list(range(10)))})
    assert len(grid.errors) == 3
    assert grid.num_errors == 3
    assert grid.num_terminated == 7


def _count_until_stopped(config: dict[str, Any]) -> None:
    data = {"it": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        data = _read(checkpoint)
    while True:
        data["it"] += 1
        due = data["it"] % config["checkpoint_interval"] == 0
        report_json(dict(data), data if due else None)


@pytest.mark.parametrize("checkpoint_interval", [1, 2])
def test_results_read_from_a_moved_experiment(tmp_path: Path, checkpoint_interval: int) -> None:
    total = 6
    grid = tune.Tuner(
        _count_until_stopped,
        param_space={"checkpoint_interval": checkpoint_interval},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="exp_dir",
            storage_path=str(tmp_path / "results"),
            stop={"it": total},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=total),
            verbose=0,
        ),
    ).fit()
    assert grid[0].checkpoint
    assert len(grid[0].best_checkpoints) == total // checkpoint_interval

    shutil.move(tmp_path / "results", tmp_path / "moved")
    moved = tune.ResultGrid.from_path(str(tmp_path / "moved" / "exp_dir"))  # type: ignore[attr-defined]
    assert moved[0].checkpoint
    for checkpoint, _ in moved[0].best_checkpoints:
        assert "moved" in checkpoint.path
    assert len(moved[0].best_checkpoints) == total // checkpoint_interval
