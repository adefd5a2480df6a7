"""Tests for the per-trial result files writer and the safe JSON helpers."""

from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from atune.errors import StorageError
from atune.storage._json import decode_json_lines, encode_json
from atune.storage._trial_files import (
    PARAMS_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    ResultFiles,
    read_result_rows,
    write_params,
)


def read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return decode_json_lines(path.read_bytes())


# --- encode_json / decode_json_lines -------------------------------------------------


def test_encode_json_plain_values_match_json() -> None:
    obj = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": {}}}
    assert json.loads(encode_json(obj)) == obj


def test_encode_json_numpy_values_become_python_numbers_and_lists() -> None:
    obj = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "d": np.float64(1.25),
        "b": np.bool_(True),
        "arr": np.arange(3),
        "nested": {"m": np.ones((2, 2))},
    }
    assert json.loads(encode_json(obj)) == {
        "i": 3,
        "f": 0.5,
        "d": 1.25,
        "b": True,
        "arr": [0, 1, 2],
        "nested": {"m": [[1.0, 1.0], [1.0, 1.0]]},
    }


def test_encode_json_unknown_objects_and_keys_become_strings() -> None:
    class Thing:
        def __str__(self) -> str:
            return "<thing>"

    decoded = json.loads(encode_json({"obj": Thing(), (1, 2): "tuple key", 3: "int key"}))
    assert decoded == {"obj": "<thing>", "(1, 2)": "tuple key", "3": "int key"}


@pytest.mark.parametrize(
    ("value", "text"),
    [(math.nan, b"NaN"), (math.inf, b"Infinity"), (-math.inf, b"-Infinity")],
)
def test_encode_json_writes_non_finite_floats_like_python_json(value: float, text: bytes) -> None:
    encoded = encode_json({"loss": value, "none": None})
    assert text in encoded
    assert b'"none":null' in encoded.replace(b" ", b"")
    (row,) = decode_json_lines(encoded + b"\n")
    assert row["none"] is None
    assert math.isnan(row["loss"]) if math.isnan(value) else row["loss"] == value


def test_encode_json_finds_nan_inside_numpy_values() -> None:
    encoded = encode_json({"a": [np.float32("nan")], "b": np.array([1.0, np.inf])})
    row = json.loads(encoded)
    assert math.isnan(row["a"][0])
    assert row["b"] == [1.0, math.inf]


def test_encode_json_sorted_and_indented() -> None:
    text = encode_json({"b": 1, "a": {"d": 2, "c": 3}, 7: "x"}, indent=2, sort_keys=True)
    assert text.decode() == json.dumps(
        {"7": "x", "a": {"c": 3, "d": 2}, "b": 1}, indent=2, sort_keys=True
    )


def test_decode_json_lines_skips_blank_lines_and_drops_a_torn_last_line() -> None:
    data = b'{"a": 1}\n\n{"a": NaN}\n{"a": 3, "b'
    rows = decode_json_lines(data)
    assert rows[0] == {"a": 1}
    assert math.isnan(rows[1]["a"])
    assert len(rows) == 2


def test_decode_json_lines_rejects_a_bad_line_in_the_middle() -> None:
    with pytest.raises(StorageError, match="line 2"):
        decode_json_lines(b'{"a": 1}\n{oops\n{"a": 2}\n')


def test_decode_json_lines_rejects_a_non_object_line() -> None:
    with pytest.raises(StorageError, match=r"line 1 .* list"):
        decode_json_lines(b"[1, 2]\n")


# --- params.json ----------------------------------------------------------------------


def test_write_params_is_sorted_indented_and_safe(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trial_0"
    config = {"lr": np.float64(0.1), "layers": [64, 32], "b": {"z": 1, "a": object}}
    write_params(trial_dir, config)
    text = (trial_dir / PARAMS_FILE).read_text()
    assert text == json.dumps(
        {"b": {"a": str(object), "z": 1}, "layers": [64, 32], "lr": 0.1},
        indent=2,
        sort_keys=True,
    )
    assert not (trial_dir / "params.pkl").exists()


def test_write_params_replaces_the_previous_config(tmp_path: Path) -> None:
    write_params(tmp_path, {"lr": 0.1})
    write_params(tmp_path, {"lr": 0.2})
    assert json.loads((tmp_path / PARAMS_FILE).read_text()) == {"lr": 0.2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [PARAMS_FILE]


# --- result.json / progress.csv -------------------------------------------------------


def test_flush_writes_unflattened_json_lines_and_flattened_csv(tmp_path: Path) -> None:
    files = ResultFiles()
    for i in range(3):
        files.append(
            tmp_path,
            {
                "loss": 1.0 / (i + 1),
                "info": {"lr": 0.1},
                "training_iteration": i + 1,
                "config": {"lr": 0.1},
            },
        )
    assert not (tmp_path / RESULT_FILE).exists()  # append alone does no I/O
    files.flush()

    rows = read_json_lines(tmp_path / RESULT_FILE)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]
    assert rows[0] == {
        "loss": 1.0,
        "info": {"lr": 0.1},
        "training_iteration": 1,
        "config": {"lr": 0.1},
    }
    csv_rows = read_csv_rows(tmp_path / PROGRESS_FILE)
    assert csv_rows[0] == ["loss", "info/lr", "training_iteration"]  # no config
    assert csv_rows[1:] == [["1.0", "0.1", "1"], ["0.5", "0.1", "2"], [str(1.0 / 3), "0.1", "3"]]


def test_flush_appends_across_flushes_without_repeating_the_header(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"x": 1})
    files.flush()
    files.append(tmp_path, {"x": 2})
    files.flush()
    files.flush()  # nothing buffered: writes nothing
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [["x"], ["1"], ["2"]]
    assert read_json_lines(tmp_path / RESULT_FILE) == [{"x": 1}, {"x": 2}]


@pytest.mark.parametrize("flush_between", [False, True])
def test_csv_header_grows_when_a_key_first_appears_later(
    tmp_path: Path, flush_between: bool
) -> None:
    files = ResultFiles()
    rows: list[dict[str, Any]] = [{"a": 1}, {"a": 2}, {"a": 3, "late": {"x": "y"}}, {"a": 4}]
    for row in rows:
        files.append(tmp_path, row)
        if flush_between:
            files.flush()
    files.flush()
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [
        ["a", "late/x"],
        ["1", ""],
        ["2", ""],
        ["3", "y"],
        ["4", ""],
    ]
    frame = pd.read_csv(tmp_path / PROGRESS_FILE)
    assert list(frame.columns) == ["a", "late/x"]
    assert frame["late/x"].isna().tolist() == [True, True, False, True]


def test_csv_keeps_quoted_multiline_cells_when_rewriting(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"note": "two\nlines, with comma"})
    files.flush()
    files.append(tmp_path, {"note": "x", "new": 1})
    files.flush()
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [
        ["note", "new"],
        ["two\nlines, with comma", ""],
        ["x", "1"],
    ]


def test_append_after_close_reuses_the_header_from_the_file(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"b": 1, "a": 2})
    files.close(tmp_path)
    files.flush()
    assert files.num_open == 0  # state dropped once flushed
    files.append(tmp_path, {"a": 3, "b": 4})
    files.append(tmp_path, {"c": 5})
    files.flush()
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [
        ["b", "a", "c"],
        ["1", "2", ""],
        ["4", "3", ""],
        ["", "", "5"],
    ]


def test_a_new_instance_appends_to_files_an_earlier_one_wrote(tmp_path: Path) -> None:
    first = ResultFiles()
    first.append(tmp_path, {"y": 1, "x": 1})
    first.flush()

    second = ResultFiles()  # a resumed experiment
    second.append(tmp_path, {"x": 2, "y": 2})
    second.flush()
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [["y", "x"], ["1", "1"], ["2", "2"]]
    assert read_json_lines(tmp_path / RESULT_FILE) == [{"y": 1, "x": 1}, {"x": 2, "y": 2}]


def test_a_new_instance_cuts_lines_torn_by_a_crash(tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).write_bytes(b'{"x": 1}\n{"x": 2, "y"')
    (tmp_path / PROGRESS_FILE).write_bytes(b"x\r\n1\r\n2")
    files = ResultFiles()
    files.append(tmp_path, {"x": 3})
    files.flush()
    assert read_json_lines(tmp_path / RESULT_FILE) == [{"x": 1}, {"x": 3}]
    assert read_csv_rows(tmp_path / PROGRESS_FILE) == [["x"], ["1"], ["3"]]


def test_trials_are_written_to_their_own_directories(tmp_path: Path) -> None:
    files = ResultFiles()
    dirs = [tmp_path / f"trial_{i}" for i in range(3)]
    for step in range(2):
        for i, trial_dir in enumerate(dirs):
            files.append(trial_dir, {"trial": i, "step": step})
    files.flush()
    for i, trial_dir in enumerate(dirs):
        assert read_json_lines(trial_dir / RESULT_FILE) == [
            {"trial": i, "step": 0},
            {"trial": i, "step": 1},
        ]
    assert files.num_open == 3
    for trial_dir in dirs:
        files.close(trial_dir)
    files.flush()
    assert files.num_open == 0


def test_append_buffers_a_copy(tmp_path: Path) -> None:
    files = ResultFiles()
    result: dict[str, Any] = {"x": 1}
    files.append(tmp_path, result)
    result["experiment_tag"] = "0_lr=0.1"  # added later by the caller: not written
    files.flush()
    assert read_json_lines(tmp_path / RESULT_FILE) == [{"x": 1}]


def test_non_json_values_are_written_safely(tmp_path: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    files = ResultFiles()
    files.append(
        tmp_path,
        {
            "acc": np.float32(0.75),
            "step": np.int64(2),
            "vec": np.array([1, 2]),
            "obj": Opaque(),
            "loss": math.nan,
        },
    )
    files.flush()
    (row,) = read_json_lines(tmp_path / RESULT_FILE)
    assert row["acc"] == 0.75
    assert row["step"] == 2
    assert row["vec"] == [1, 2]
    assert row["obj"] == "Opaque()"
    assert math.isnan(row["loss"])
    header, cells = read_csv_rows(tmp_path / PROGRESS_FILE)
    assert dict(zip(header, cells, strict=True)) == {
        "acc": "0.75",
        "step": "2",
        "vec": "[1 2]",
        "obj": "Opaque()",
        "loss": "nan",
    }


def test_config_only_results_write_no_csv(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"config": {"a": 1}})
    files.flush()
    assert read_json_lines(tmp_path / RESULT_FILE) == [{"config": {"a": 1}}]
    assert not (tmp_path / PROGRESS_FILE).exists()


def test_flush_reports_unwritable_trials_and_writes_the_others(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    good = tmp_path / "good"
    files = ResultFiles()
    files.append(blocker / "trial", {"x": 1})
    files.append(good, {"x": 1})
    with pytest.raises(StorageError, match="not_a_dir"):
        files.flush()
    assert read_json_lines(good / RESULT_FILE) == [{"x": 1}]


def test_append_while_flushing_from_another_thread_loses_nothing(tmp_path: Path) -> None:
    files = ResultFiles()
    n = 2000
    done = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not done.is_set():
                files.flush()
            files.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=flusher)
    thread.start()
    for i in range(n):
        files.append(tmp_path / f"t{i % 4}", {"i": i, **({"extra": i} if i == 1000 else {})})
    done.set()
    thread.join()
    assert not errors
    for t in range(4):
        rows = read_json_lines(tmp_path / f"t{t}" / RESULT_FILE)
        assert [r["i"] for r in rows] == list(range(t, n, 4))
        frame = pd.read_csv(tmp_path / f"t{t}" / PROGRESS_FILE)
        assert frame["i"].tolist() == list(range(t, n, 4))


# --- read_result_rows -----------------------------------------------------------------


def test_read_result_rows_prefers_result_json(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"m": {"a": 1}, "config": {"lr": 1}})
    files.flush()
    assert read_result_rows(tmp_path) == [{"m": {"a": 1}, "config": {"lr": 1}}]


def test_read_result_rows_falls_back_to_progress_csv(tmp_path: Path) -> None:
    files = ResultFiles()
    files.append(tmp_path, {"m": {"a": 1}, "name": "x"})
    files.append(tmp_path, {"m": {"a": 2.5}, "extra": True})
    files.flush()
    (tmp_path / RESULT_FILE).unlink()
    assert read_result_rows(tmp_path) == [
        {"m": {"a": 1.0}, "name": "x"},
        {"m": {"a": 2.5}, "extra": True},
    ]


def test_read_result_rows_without_files_is_none(tmp_path: Path) -> None:
    assert read_result_rows(tmp_path) is None
