"""``ExperimentWriter``: what the files show, the journal already knows; under write
failures, a ``StorageError`` naming the file, a journal that stays whole (restorable), and
nothing of a failed flush lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.errors import StorageError
from atune.events import ResultReported, encode_event
from atune.storage import _writer
from atune.storage._journal import read_journal
from atune.storage._layout import (
    ERROR_FILE,
    JOURNAL_FILE,
    RESULT_FILE,
    format_error_record,
)
from atune.storage._trial_files import read_result_rows
from atune.storage._writer import ExperimentWriter

ITERATIONS = 20


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_keeps_the_flush_buffered_and_writes_nothing_else(tmp_path: Path) -> None:
    writer = ExperimentWriter(str(tmp_path))
    trial_dir = tmp_path / "trial"
    writer.journal(b'{"n": 1}')
    writer.result(trial_dir, {"training_iteration": 1})
    writer.flush()
    journal = tmp_path / JOURNAL_FILE
    good = journal.read_bytes()
    journal.unlink()
    journal.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    writer.journal(b'{"n": 2}')
    writer.result(trial_dir, {"training_iteration": 2})
    writer.error(trial_dir, 1, 1700000000.0, "Traceback ...\nKeyError: 'x'")
    with pytest.raises(StorageError, match=f"{journal}.*ENOSPC"):
        writer.flush()
    # Nothing of the failed flush went anywhere: result rows never run ahead of the journal.
    assert (trial_dir / RESULT_FILE).read_text().count("\n") == 1
    assert not (trial_dir / ERROR_FILE).exists()
    journal.unlink()
    journal.write_bytes(good)  # the disk has room again
    writer.journal(b'{"n": 3}')
    writer.flush()
    assert journal.read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'
    rows = [json.loads(line) for line in (trial_dir / RESULT_FILE).read_text().splitlines()]
    assert [r["training_iteration"] for r in rows] == [1, 2]
    assert (trial_dir / ERROR_FILE).read_text() == format_error_record(
        1, 1700000000.0, "Traceback ...\nKeyError: 'x'"
    )


def padded_trainable(config: dict[str, Any]) -> None:
    """Results big enough to pass a small file size limit after a few flushes (2 s a run)."""
    for i in range(resume_point() + 1, ITERATIONS + 1):
        time.sleep(0.1)
        report_with_checkpoint(i, {"i": i, "pad": "x" * 2000})


FILE_SIZE_LIMITED = """
import os, resource, signal, sys
sys.path.insert(0, {tests_dir!r})
sys.path.insert(0, {here!r})
import atune as tune
from atune.errors import StorageError
from test_writer import padded_trainable

tuner = tune.Tuner(
    padded_trainable,
    param_space={{"x": tune.grid_search([1, 2])}},
    tune_config=tune.TuneConfig(backend="local"),
    run_config=tune.RunConfig(name="efbig", storage_path={storage!r}, verbose=0),
)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
try:
    tuner.fit()
except StorageError as exc:
    print("StorageError:", exc, flush=True)
    # os._exit: an interrupted in-process fit can leave trainable threads that crash the
    # interpreter's shutdown (a known, separate defect); this test is about the error.
    os._exit(3)
"""


def test_a_file_size_limit_fails_the_experiment_cleanly_and_restore_finishes_it(
    storage: str,
) -> None:
    limit = 48 * 1024
    script = FILE_SIZE_LIMITED.format(
        tests_dir=str(Path(__file__).parents[1]),
        here=str(Path(__file__).parent),
        storage=storage,
        limit=limit,
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    path = Path(storage, "efbig")
    journal = path / JOURNAL_FILE
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"StorageError: cannot write {journal}" in proc.stdout and "EFBIG" in proc.stdout
    # The journal holds whole flushes only, up to the last good one: no torn line.
    assert 0 < journal.stat().st_size <= limit
    contents = read_journal(journal)
    assert contents.torn_line is None and contents.valid_bytes == journal.stat().st_size
    results = tune.Tuner.restore(str(path), padded_trainable).fit()
    assert results.num_errors == 0 and len(results) == 2
    for result in results:
        iterations = [int(i) for i in result.metrics_dataframe["training_iteration"]]
        assert iterations == list(range(1, ITERATIONS + 1))


def _record(writer: ExperimentWriter, trial_dir: Path, i: int) -> None:
    """What the driver does per result: journal the event, then buffer the row."""
    result = {"i": i}
    writer.journal(encode_event(ResultReported(ts=0.0, trial_id="t", result=result)))
    writer.result(trial_dir, result)


def test_rows_recorded_during_a_flush_wait_for_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ExperimentWriter(str(tmp_path))
    trial_dir = tmp_path / "trial"
    _record(writer, trial_dir, 1)
    real_fsync = os.fsync
    recorded = []

    def fsync_while_the_loop_records(fd: Any) -> None:
        # The event loop keeps recording while the flush thread syncs the journal.
        if not recorded:
            recorded.append(True)
            _record(writer, trial_dir, 2)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_while_the_loop_records)
    writer.flush()
    journaled = (tmp_path / JOURNAL_FILE).read_text().count('"result_reported"')
    rows = read_result_rows(trial_dir) or []
    assert recorded and journaled == 1
    assert [row["i"] for row in rows] == [1]  # the second row waits for its journal line
    writer.flush()
    assert (tmp_path / JOURNAL_FILE).read_text().count('"result_reported"') == 2
    assert [row["i"] for row in read_result_rows(trial_dir) or []] == [1, 2]


def test_buffered_bytes_count_journal_lines_until_a_flush(tmp_path: Path) -> None:
    writer = ExperimentWriter(str(tmp_path))
    writer.journal(b"a" * 10)
    writer.journal(b"b" * 5)
    assert writer.buffered_bytes == 15
    writer.flush()
    assert writer.buffered_bytes == 0
    assert (tmp_path / JOURNAL_FILE).read_bytes() == b"a" * 10 + b"\n" + b"b" * 5 + b"\n"


def test_a_large_journal_is_written_in_pieces_line_by_line_intact(tmp_path: Path) -> None:
    lines = [bytes([65 + i % 26]) * (_writer.CHUNK_BYTES // 3) for i in range(10)]
    pieces = list(_writer._chunks(lines))
    assert len(pieces) > 1
    assert all(len(piece) <= _writer.CHUNK_BYTES + len(lines[0]) + 1 for piece in pieces)
    writer = ExperimentWriter(str(tmp_path))
    for line in lines:
        writer.journal(line)
    writer.flush()
    assert (tmp_path / JOURNAL_FILE).read_bytes().split(b"\n") == [*lines, b""]
