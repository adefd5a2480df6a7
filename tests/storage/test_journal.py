"""Reading the journal back: whole, or a piece of whole lines at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from atune.errors import JournalCorruptError
from atune.events import ResultReported, encode_event
from atune.storage._journal import read_journal, read_journal_in_pieces


def _journal(path: Path, n: int, tail: bytes = b"") -> Path:
    lines = [
        encode_event(ResultReported(ts=float(i), trial_id="t", result={"i": i, "pad": "x" * i}))
        for i in range(n)
    ]
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail)
    return path


@pytest.mark.parametrize("piece_bytes", [1, 50, 333, 1 << 20])
@pytest.mark.parametrize("start_line", [0, 7])
def test_pieces_hold_the_same_events_as_one_read(
    tmp_path: Path, piece_bytes: int, start_line: int
) -> None:
    path = _journal(tmp_path / "events.jsonl", 40, tail=b'{"type": "result_rep')
    start = sum(len(line) + 1 for line in path.read_bytes().split(b"\n")[:start_line])
    whole = read_journal(path, live=True, start=start)
    pieces = list(read_journal_in_pieces(path, live=True, start=start, piece_bytes=piece_bytes))
    assert [e for p in pieces for e in p.events] == whole.events
    assert pieces[-1].valid_bytes == whole.valid_bytes
    assert pieces[-1].torn_line == whole.torn_line == b'{"type": "result_rep'
    assert all(p.torn_line is None for p in pieces[:-1])


def test_a_damaged_line_before_the_end_is_corruption_in_pieces_too(tmp_path: Path) -> None:
    path = _journal(tmp_path / "events.jsonl", 10)
    lines = path.read_bytes().split(b"\n")
    lines[4] = b"not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorruptError):
        list(read_journal_in_pieces(path, piece_bytes=64))
