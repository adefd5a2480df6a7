"""Tests for Result and ResultGrid, reading trial directories written by ResultFiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from atune.errors import ConfigError, StorageError, TrialError
from atune.result import Result, ResultGrid
from atune.result_grid import ResultGrid as ReexportedResultGrid
from atune.storage._layout import (
    ERROR_FILE,
    RESULT_FILE,
    TEMP_CHECKPOINT_PREFIX,
    checkpoint_name,
    format_error_record,
)
from atune.storage._trial_files import ResultFiles
from atune.trainable._checkpoint import Checkpoint


def write_trial(trial_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Writes ``rows`` as one trial's results through the real writer."""
    files = ResultFiles()
    for row in rows:
        files.append(trial_dir, row)
    files.flush()
    return trial_dir


def trial_with(tmp_path: Path, name: str, losses: Sequence[float], **extra: Any) -> Result:
    """A trial reporting ``loss`` once per value, read back with ``Result.from_path``."""
    rows = [
        {
            "loss": loss,
            "training_iteration": i + 1,
            "trial_id": name,
            "config": {"id": name},
            **extra,
        }
        for i, loss in enumerate(losses)
    ]
    return Result.from_path(write_trial(tmp_path / name, rows))


def grid(results: Sequence[Result], **kwargs: Any) -> ResultGrid:
    return ResultGrid(results, experiment_path="/exp", **kwargs)


def ids(result: Result) -> str:
    assert result.config is not None
    return str(result.config["id"])


# --- Result ---------------------------------------------------------------------------


def test_result_fields_and_config() -> None:
    result = Result(
        metrics={"a": 1, "config": {"lr": 0.1}}, checkpoint=None, error=None, path="/x/trial"
    )
    assert result.config == {"lr": 0.1}
    assert result.path == "/x/trial"
    assert result.filesystem is None
    assert result.best_checkpoints is None


@pytest.mark.parametrize("metrics", [None, {}, {"a": 1}])
def test_result_config_is_none_when_never_reported(metrics: dict[str, Any] | None) -> None:
    assert Result(metrics=metrics, checkpoint=None, error=None, path="/x").config is None


def test_metrics_dataframe_is_read_lazily_from_result_json(tmp_path: Path) -> None:
    result = Result(metrics={"loss": 2}, checkpoint=None, error=None, path=tmp_path)
    write_trial(
        tmp_path,
        [
            {"loss": 1, "m": {"a": 1}, "config": {"lr": 0.1}},
            {"loss": 2, "m": {"a": 2}, "config": {"lr": 0.1}},
        ],
    )
    frame = result.metrics_dataframe
    assert frame is not None
    assert list(frame.columns) == ["loss", "m/a", "config/lr"]
    assert frame["loss"].tolist() == [1, 2]


def test_metrics_dataframe_is_none_without_files(tmp_path: Path) -> None:
    result = Result(metrics=None, checkpoint=None, error=None, path=tmp_path)
    assert result.metrics_dataframe is None


def test_metrics_dataframe_given_is_kept_and_used_as_history(tmp_path: Path) -> None:
    frame = pd.DataFrame({"loss": [3.0, 1.0], "acc": [math.nan, 0.5]})
    given = Result(
        metrics={"loss": 1.0, "acc": 0.5, "config": {"id": "given"}},
        checkpoint=None,
        error=None,
        path=tmp_path / "none",
        metrics_dataframe=frame,
    )
    assert given.metrics_dataframe is frame
    other = trial_with(tmp_path, "other", [2.5, 1.0])
    rg = grid([given, other])
    assert ids(rg.get_best_result("loss", "max", scope="all")) == "given"  # 3.0 from frame
    assert ids(rg.get_best_result("loss", "min", scope="avg")) == "other"  # 1.75 < 2.0
    # The NaN cell is "not reported": acc's average is 0.5, not NaN.
    assert ids(rg.get_best_result("acc", "max", scope="avg")) == "given"


def test_from_path_reads_metrics_checkpoints_and_error(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trial"
    for name in (checkpoint_name(0), checkpoint_name(2), checkpoint_name(10)):
        (trial_dir / name).mkdir(parents=True)
    (trial_dir / f"{TEMP_CHECKPOINT_PREFIX}abc").mkdir()  # not a checkpoint
    rows = [
        {"score": 1, "checkpoint_dir_name": checkpoint_name(0), "trial_id": "t1"},
        {"score": 5, "checkpoint_dir_name": None, "trial_id": "t1"},
        {"score": 3, "checkpoint_dir_name": checkpoint_name(2), "trial_id": "t1"},
        {
            "score": 2,
            "checkpoint_dir_name": checkpoint_name(10),
            "trial_id": "t1",
            "config": {"lr": 0.5},
        },
    ]
    write_trial(trial_dir, rows)
    (trial_dir / ERROR_FILE).write_text(
        format_error_record(1, 1704067200.0, "Traceback ...\nKeyError: 'x'\n")
        + format_error_record(
            2,
            1704067260.0,
            'Traceback (most recent call last):\n  File "t.py", line 1\nValueError: boom: really',
        )
    )

    result = Result.from_path(trial_dir)
    assert result.metrics == rows[-1]
    assert result.config == {"lr": 0.5}
    assert result.path == str(trial_dir)
    assert result.checkpoint == Checkpoint(trial_dir / checkpoint_name(10))
    assert result.best_checkpoints == [
        (Checkpoint(trial_dir / checkpoint_name(0)), rows[0]),
        (Checkpoint(trial_dir / checkpoint_name(2)), rows[2]),
        (Checkpoint(trial_dir / checkpoint_name(10)), rows[3]),
    ]
    error = result.error
    assert isinstance(error, TrialError)
    assert error.trial_id == "t1"
    assert error.error_type == "ValueError"
    assert error.error_message == "boom: really"
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "KeyError" not in error.traceback  # the last failure only
    assert str(error) == "ValueError: boom: really"
    frame = result.metrics_dataframe
    assert frame is not None
    assert frame["score"].tolist() == [1, 5, 3, 2]


def test_from_path_with_only_progress_csv(tmp_path: Path) -> None:
    write_trial(tmp_path, [{"loss": 0.5, "config": {"a": 1}}, {"loss": 0.25}])
    (tmp_path / RESULT_FILE).unlink()
    result = Result.from_path(tmp_path)
    assert result.metrics == {"loss": 0.25}
    assert result.error is None
    assert result.checkpoint is None
    assert result.best_checkpoints == []


def test_from_path_of_a_trial_that_never_reported(tmp_path: Path) -> None:
    (tmp_path / ERROR_FILE).write_text("something odd happened")
    result = Result.from_path(tmp_path)
    assert result.metrics == {}
    assert result.config is None
    assert isinstance(result.error, TrialError)
    assert result.error.error_message == "something odd happened"
    assert result.metrics_dataframe is None


def test_from_path_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="nope"):
        Result.from_path(tmp_path / "nope")


def test_get_best_checkpoint(tmp_path: Path) -> None:
    checkpoints = [Checkpoint(tmp_path / f"c{i}") for i in range(3)]
    result = Result(
        metrics={},
        checkpoint=checkpoints[-1],
        error=None,
        path=tmp_path,
        best_checkpoints=[
            (checkpoints[0], {"acc": 0.5, "m": {"x": 3}}),
            (checkpoints[1], {"acc": 0.9, "m": {"x": 1}}),
            (checkpoints[2], {"m": {"x": 2}}),
        ],
    )
    assert result.get_best_checkpoint("acc", "max") == checkpoints[1]
    assert result.get_best_checkpoint("acc", "min") == checkpoints[0]
    assert result.get_best_checkpoint("m/x", "max") == checkpoints[0]
    with pytest.raises(RuntimeError, match="'nope'"):
        result.get_best_checkpoint("nope", "max")
    with pytest.raises(ValueError, match="'maximum'"):
        result.get_best_checkpoint("acc", "maximum")


@pytest.mark.parametrize("best", [None, []])
def test_get_best_checkpoint_without_checkpoints(best: list[Any] | None) -> None:
    result = Result(metrics={}, checkpoint=None, error=None, path="/x", best_checkpoints=best)
    with pytest.raises(RuntimeError, match="no checkpoint"):
        result.get_best_checkpoint("acc", "max")


def test_result_repr_is_short() -> None:
    result = Result(
        metrics={"loss": 0.1, "training_iteration": 3, "config": {"a": 1}, "date": "d"},
        checkpoint=None,
        error=ValueError("boom"),
        path="/x/t",
    )
    text = repr(result)
    assert "'loss': 0.1" in text
    assert "/x/t" in text
    assert "ValueError('boom')" in text
    assert "training_iteration" not in text
    assert "config" not in text


# --- ResultGrid basics ----------------------------------------------------------------


def test_grid_sequence_protocol_and_counts() -> None:
    ok = Result(metrics={"a": 1}, checkpoint=None, error=None, path="/e/0")
    bad = Result(metrics=None, checkpoint=None, error=RuntimeError("x"), path="/e/1")
    rg = grid([ok, bad])
    assert len(rg) == 2
    assert rg[0] is ok and rg[1] is bad and rg[-1] is bad
    assert list(rg) == [ok, bad]
    assert rg.experiment_path == "/exp"
    assert rg.filesystem is None
    assert rg.errors == [bad.error]
    assert rg.num_errors == 1
    assert rg.num_terminated == 1
    assert ReexportedResultGrid is ResultGrid


def test_grid_statuses_count_unfinished_trials_as_neither() -> None:
    results = [
        Result(metrics={"a": i}, checkpoint=None, error=None, path=f"/e/{i}") for i in range(4)
    ]
    results[3].error = ValueError("failed")
    rg = grid(results, statuses=["TERMINATED", "RUNNING", "PAUSED", "ERROR"])
    assert rg.num_terminated == 1
    assert rg.num_errors == 1
    assert rg.errors == [results[3].error]
    assert rg.statuses == ["TERMINATED", "RUNNING", "PAUSED", "ERROR"]
    rg.statuses.clear()  # a copy: the grid's own list is untouched
    assert rg.num_terminated == 1


def test_grid_metric_mode_and_default_statuses() -> None:
    ok = Result(metrics={"a": 1}, checkpoint=None, error=None, path="/e/0")
    bad = Result(metrics=None, checkpoint=None, error=RuntimeError("x"), path="/e/1")
    rg = ResultGrid([ok, bad], experiment_path="/exp", metric="a", mode="max")
    assert (rg.metric, rg.mode) == ("a", "max")
    assert rg.statuses == ["TERMINATED", "ERROR"]
    assert (grid([ok]).metric, grid([ok]).mode) == (None, None)


def test_grid_rejects_bad_statuses() -> None:
    result = Result(metrics={}, checkpoint=None, error=None, path="/e/0")
    with pytest.raises(ConfigError, match="'DONE'"):
        grid([result], statuses=["DONE"])
    with pytest.raises(ConfigError, match="2 entries for 1 results"):
        grid([result], statuses=["ERROR", "ERROR"])


# --- get_best_result ------------------------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> list[Result]:
    """Three trials whose best trial differs by scope (loss is minimized).

    last: a=5, b=4, c=9        -> b (min), c (max)
    avg: a=3, b=7.5, c=8.5     -> a (min), c (max)
    last-5-avg: a=2.4, b=4.2, c=9    -> a
    all: min a=1 (min), max b=20 (max)
    """
    return [
        trial_with(tmp_path, "a", [1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 2, 3, 5]),
        trial_with(tmp_path, "b", [20, 20, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]),
        trial_with(tmp_path, "c", [8, 9, 9]),
    ]


@pytest.mark.parametrize(
    ("scope", "mode", "expected"),
    [
        ("last", "min", "b"),
        ("last", "max", "c"),
        ("avg", "min", "a"),
        ("avg", "max", "c"),
        ("last-5-avg", "min", "a"),
        ("last-5-avg", "max", "c"),
        ("last-10-avg", "min", "a"),
        ("last-10-avg", "max", "c"),
        ("all", "min", "a"),
        ("all", "max", "b"),
    ],
)
def test_get_best_result_scopes(three: list[Result], scope: str, mode: str, expected: str) -> None:
    assert ids(grid(three).get_best_result("loss", mode, scope=scope)) == expected


def test_scope_windows_use_the_last_values(tmp_path: Path) -> None:
    # last-5: x=2 (5 twos after big values), y=3; last-10: x=(5*100+5*2)/10=51, y=3.
    x = trial_with(tmp_path, "x", [100] * 5 + [2] * 5)
    y = trial_with(tmp_path, "y", [3] * 10)
    rg = grid([x, y])
    assert ids(rg.get_best_result("loss", "min", scope="last-5-avg")) == "x"
    assert ids(rg.get_best_result("loss", "min", scope="last-10-avg")) == "y"


def test_get_best_result_uses_the_grid_metric_and_mode(three: list[Result]) -> None:
    rg = grid(three, metric="loss", mode="max")
    assert ids(rg.get_best_result()) == "c"
    assert ids(rg.get_best_result(mode="min")) == "b"


def test_get_best_result_nested_metric(tmp_path: Path) -> None:
    r1 = Result.from_path(
        write_trial(tmp_path / "1", [{"m": {"acc": {"top1": 0.3}}, "config": {"id": "1"}}])
    )
    r2 = Result.from_path(
        write_trial(tmp_path / "2", [{"m": {"acc": {"top1": 0.7}}, "config": {"id": "2"}}])
    )
    rg = grid([r1, r2])
    assert ids(rg.get_best_result("m/acc/top1", "max")) == "2"
    assert ids(rg.get_best_result("m/acc/top1", "min", scope="avg")) == "1"


def test_one_trial_is_returned_whatever_the_arguments(tmp_path: Path) -> None:
    only = trial_with(tmp_path, "only", [1.0])
    rg = grid([only])
    assert rg.get_best_result() is only
    assert rg.get_best_result("missing", "bogus", scope="bogus") is only


def test_get_best_result_missing_metric_or_mode(three: list[Result]) -> None:
    with pytest.raises(ValueError, match="no metric"):
        grid(three).get_best_result(mode="min")
    with pytest.raises(ValueError, match="no mode"):
        grid(three).get_best_result(metric="loss")
    with pytest.raises(ValueError, match="no mode"):
        grid(three, metric="loss").get_best_result()


def test_get_best_result_bad_mode_or_scope(three: list[Result]) -> None:
    with pytest.raises(ValueError, match="'minimum'"):
        grid(three).get_best_result("loss", "minimum")
    with pytest.raises(ValueError, match="'last-3-avg'"):
        grid(three).get_best_result("loss", "min", scope="last-3-avg")


def test_nothing_qualifies(three: list[Result]) -> None:
    with pytest.raises(RuntimeError, match="No best trial found for the given metric: acc"):
        grid(three).get_best_result("acc", "max")


def test_nan_and_inf_are_filtered(tmp_path: Path) -> None:
    nan_last = trial_with(tmp_path, "nan", [0.1, math.nan])
    inf_last = trial_with(tmp_path, "inf", [0.2, -math.inf])
    fine = trial_with(tmp_path, "fine", [0.5, 0.3])
    rg = grid([nan_last, inf_last, fine])
    assert ids(rg.get_best_result("loss", "min")) == "fine"
    assert ids(rg.get_best_result("loss", "min", scope="avg")) == "fine"
    # "all" takes each trial's best finite value.
    assert ids(rg.get_best_result("loss", "min", scope="all")) == "nan"
    # Unfiltered, -inf wins a minimization; a NaN never beats anything.
    assert ids(rg.get_best_result("loss", "min", filter_nan_and_inf=False)) == "inf"


def test_only_nan_values_qualify_nothing(tmp_path: Path) -> None:
    rg = grid([trial_with(tmp_path, "a", [math.nan]), trial_with(tmp_path, "b", [math.inf])])
    with pytest.raises(RuntimeError, match="NaN"):
        rg.get_best_result("loss", "min")
    assert ids(rg.get_best_result("loss", "max", filter_nan_and_inf=False)) == "b"
    assert ids(rg.get_best_result("loss", "min", filter_nan_and_inf=False)) == "b"


def test_errored_trials_without_metrics_are_skipped(tmp_path: Path) -> None:
    failed = Result(metrics=None, checkpoint=None, error=ValueError("x"), path=tmp_path / "f")
    failed_late = trial_with(tmp_path, "late", [0.01])
    failed_late.error = ValueError("after reporting")
    ok = trial_with(tmp_path, "ok", [0.5])
    rg = grid([failed, failed_late, ok])
    for scope in ("last", "avg", "all"):
        assert ids(rg.get_best_result("loss", "min", scope=scope)) == "late"


def test_ties_go_to_the_first_trial(tmp_path: Path) -> None:
    rg = grid([trial_with(tmp_path, "first", [1.0]), trial_with(tmp_path, "second", [1.0])])
    assert ids(rg.get_best_result("loss", "min")) == "first"
    assert ids(rg.get_best_result("loss", "max")) == "first"


def test_last_scope_falls_back_to_history_when_the_last_result_lacks_it(
    tmp_path: Path,
) -> None:
    rows = [{"loss": 0.1, "config": {"id": "a"}}, {"other": 1, "config": {"id": "a"}}]
    a = Result.from_path(write_trial(tmp_path / "a", rows))
    b = trial_with(tmp_path, "b", [0.2])
    assert ids(grid([a, b]).get_best_result("loss", "min")) == "a"


# --- get_dataframe --------------------------------------------------------------------


def test_get_dataframe_last_rows_with_logdir(three: list[Result]) -> None:
    frame = grid(three).get_dataframe()
    assert frame["loss"].tolist() == [5, 4, 9]
    assert frame["config/id"].tolist() == ["a", "b", "c"]
    assert frame["logdir"].tolist() == [r.path for r in three]
    assert frame["training_iteration"].tolist() == [13, 14, 3]


def test_get_dataframe_best_rows(three: list[Result]) -> None:
    rg = grid(three)
    best_min = rg.get_dataframe(filter_metric="loss", filter_mode="min")
    assert best_min["loss"].tolist() == [1, 3, 8]
    assert best_min["training_iteration"].tolist() == [1, 3, 1]  # first best row
    best_max = rg.get_dataframe(filter_metric="loss", filter_mode="max")
    assert best_max["loss"].tolist() == [5, 20, 9]


def test_get_dataframe_skips_trials_that_never_reported(tmp_path: Path) -> None:
    never = Result(metrics=None, checkpoint=None, error=ValueError("x"), path=tmp_path / "n")
    in_memory = Result(
        metrics={"loss": 1, "config": {"a": 2}}, checkpoint=None, error=None, path=tmp_path / "m"
    )
    frame = grid([never, in_memory]).get_dataframe()
    assert frame.to_dict("records") == [{"loss": 1, "config/a": 2, "logdir": str(tmp_path / "m")}]


def test_get_dataframe_bad_filters(three: list[Result]) -> None:
    with pytest.raises(ValueError, match="'best'"):
        grid(three).get_dataframe(filter_metric="loss", filter_mode="best")
    with pytest.raises(ValueError, match="needs filter_metric"):
        grid(three).get_dataframe(filter_mode="min")


def test_grid_repr_lists_results(three: list[Result]) -> None:
    text = repr(grid(three))
    assert text.startswith("ResultGrid<[")
    assert text.count("Result(") == 3
