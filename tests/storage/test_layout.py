"""The on-disk layout: names (Ray Tune's where it has one), checkpoint naming, error records."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from atune.storage import _layout
from atune.storage._layout import (
    ErrorRecord,
    checkpoint_name,
    format_error_record,
    is_snapshot_staging_name,
    is_staging_name,
    parse_checkpoint_name,
    parse_error_records,
    snapshot_staging_name,
    staging_name,
)


def test_file_names_are_ray_tunes_and_atunes_own() -> None:
    # Pinned here, once: every other test and module uses the names.
    assert {name: getattr(_layout, name) for name in _layout.__all__ if name.isupper()} == {
        "SPEC_FILE": "experiment.json",
        "JOURNAL_FILE": "events.jsonl",
        "SNAPSHOT_FILE": "events.snapshot.json",
        "LOCK_FILE": ".atune-lock",
        "PARAMS_FILE": "params.json",
        "RESULT_FILE": "result.json",
        "PROGRESS_FILE": "progress.csv",
        "ERROR_FILE": "error.txt",
        "CHECKPOINT_STATE_FILE": ".atune_state.json",
        "CHECKPOINT_METADATA_FILE": ".metadata.json",
        "DICT_CHECKPOINT_JSON": "_dict_checkpoint.json",
        "DICT_CHECKPOINT_PICKLE": "_dict_checkpoint.pkl",
        "SIGNATURE_SUFFIX": ".sig",
        "TEMP_CHECKPOINT_PREFIX": "checkpoint_tmp_",
    }


@pytest.mark.parametrize("index", [0, 1, 3, 999_999, 1_000_000, 12_345_678])
def test_checkpoint_names_round_trip(index: int) -> None:
    name = checkpoint_name(index)
    assert parse_checkpoint_name(name) == index
    assert not is_staging_name(name)


def test_checkpoint_names_have_six_digits_at_least() -> None:
    assert checkpoint_name(3) == "checkpoint_000003"
    assert checkpoint_name(1_234_567) == "checkpoint_1234567"
    assert parse_checkpoint_name("checkpoint_3") == 3  # fewer digits still read


@pytest.mark.parametrize(
    "name",
    [
        "checkpoint_",
        "checkpoint_tmp_1a2b",
        "checkpoint_00001x",
        "checkpoint_-00001",
        "checkpoint_000001/",
        "xcheckpoint_000001",
        "checkpoint_000001.tmp-1a2b3c4d",
        ".checkpoint_000001.tmp-1a2b3c4d",
        "Checkpoint_000001",
        "params.json",
        "",
    ],
)
def test_other_names_are_not_checkpoints(name: str) -> None:
    assert parse_checkpoint_name(name) is None


def test_a_negative_checkpoint_index_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="-1"):
        checkpoint_name(-1)


def test_staging_names_are_fresh_and_recognised() -> None:
    names = {staging_name(4) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert name.startswith(f".{checkpoint_name(4)}.tmp-")
        assert is_staging_name(name)
        assert parse_checkpoint_name(name) is None
    assert not is_staging_name(checkpoint_name(4))
    assert not is_staging_name(".checkpoint_000004")
    assert not is_staging_name(".checkpoint_tmp.tmp-1")


def test_an_error_record_is_written_as_ray_tune_writes_it() -> None:
    ts = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))  # local time, as the header is
    text = format_error_record(2, ts, "Traceback ...\nKeyError: 'x'")
    assert text == "Failure # 2 (occurred at 2024-01-02_03-04-05)\nTraceback ...\nKeyError: 'x'\n"


def test_error_records_round_trip() -> None:
    first = "Traceback (most recent call last):\n  File \"t.py\", line 1\nKeyError: 'x'"
    second = 'Traceback (most recent call last):\n  File "t.py", line 9\nValueError: a: b'
    text = format_error_record(1, 0.0, first) + format_error_record(2, 60.0, second)
    records = parse_error_records(text)
    assert [(r.number, r.traceback) for r in records] == [(1, first), (2, second)]
    assert [r.occurred_at for r in records] == [
        time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(t)) for t in (0.0, 60.0)
    ]
    assert (records[1].error_type, records[1].error_message) == ("ValueError", "a: b")
    assert (records[0].error_type, records[0].error_message) == ("KeyError", "'x'")


def test_text_without_header_is_one_record_and_blank_ones_are_dropped() -> None:
    assert parse_error_records("") == []
    assert parse_error_records("\n  \n") == []
    odd = parse_error_records("something odd happened\n")
    assert odd == [ErrorRecord(None, None, "something odd happened")]
    assert (odd[0].error_type, odd[0].error_message) == ("", "something odd happened")
    # A header with nothing after it adds no record; the one before stays the last.
    text = format_error_record(1, 0.0, "KeyError: 'x'") + format_error_record(2, 0.0, "")
    assert [r.number for r in parse_error_records(text)] == [1]


def test_an_error_line_without_a_message() -> None:
    record = parse_error_records(format_error_record(1, 0.0, "Traceback ...\nStopIteration"))[0]
    assert (record.last_line, record.error_type, record.error_message) == (
        "StopIteration",
        "StopIteration",
        "",
    )


def test_importing_the_layout_is_cheap() -> None:
    # The trainable runtime of every Ray worker imports it: nothing beyond what
    # ``import atune`` itself loads, and no atune module but the package's own.
    code = (
        "import json, sys\n"
        "import atune.storage\n"
        "before = set(sys.modules)\n"
        "import atune.storage._layout\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.splitlines()[-1]) == ["atune.storage._layout"]


def test_snapshot_staging_names_are_fresh_and_recognised() -> None:
    names = {snapshot_staging_name() for _ in range(20)}
    assert len(names) == 20
    assert all(
        is_snapshot_staging_name(n) and n.startswith(".events.snapshot.json.") for n in names
    )
    assert not is_snapshot_staging_name("events.snapshot.json")
    assert not is_snapshot_staging_name(staging_name(3))
