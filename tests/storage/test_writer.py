"""``ExperimentWriter``: what the files show, the journal already knows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from atune.events import ResultReported, encode_event
from atune.storage._trial_files import read_result_rows
from atune.storage._writer import JOURNAL_FILE, ExperimentWriter


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
