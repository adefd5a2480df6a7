"""``ExperimentWriter``: buffered bytes are counted, and a flush writes them in pieces."""

from __future__ import annotations

from pathlib import Path

from atune.storage import _writer
from atune.storage._writer import JOURNAL_FILE, ExperimentWriter


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
