"""Reading an experiment's journal (``events.jsonl``) back, strictly.

The journal is append-only and fsynced per flush, so the only damage a crash can do is a
torn *last* line (the process died mid-write). That line is dropped with a warning, and
:func:`repair_journal` cuts it off before a resumed run appends. Damage anywhere else
means the file was changed by something other than atune: that is a
:class:`~atune.errors.JournalCorruptError` naming the line, never a silent fresh start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from atune._gc import collection_paused
from atune._log import get_logger
from atune.errors import JournalCorruptError, StorageError
from atune.events import Event, decode_event

__all__ = ["JournalContents", "read_journal", "read_journal_in_pieces", "repair_journal"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class JournalContents:
    """The events of a journal and how much of the file is valid.

    Attributes:
        events: The decoded events, in order.
        valid_bytes: Length of the valid prefix (everything but a torn last line).
        torn_line: The dropped torn line, if there was one.
    """

    events: list[Event]
    valid_bytes: int
    torn_line: bytes | None = None


def read_journal(
    path: str | os.PathLike[str], *, live: bool = False, start: int = 0
) -> JournalContents:
    """Read and decode every event of a journal (from byte ``start`` on); never writes.

    Args:
        path: The journal file.
        live: The journal may belong to an experiment that another process is running:
            a partial last line is then the write in progress, not damage, and is
            dropped without a warning.
        start: Where to begin: 0, or the end of a line (a snapshot's offset). The
            contents' ``valid_bytes`` still count from the start of the file.

    Raises:
        StorageError: The file does not exist.
        JournalCorruptError: A line other than the last cannot be decoded.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if start:
                f.seek(start)
            data = f.read()
    except FileNotFoundError as exc:
        raise StorageError(f"no journal at {path}") from exc
    with collection_paused():
        return _decode(path, data, live=live, start=start)


def read_journal_in_pieces(
    path: str | os.PathLike[str], *, live: bool = False, start: int = 0, piece_bytes: int = 8 << 20
) -> Iterator[JournalContents]:
    """:func:`read_journal`, a piece of whole lines at a time (about ``piece_bytes``).

    Each piece's ``valid_bytes`` is where it ends; the last piece also carries a torn
    last line, as :func:`read_journal` does. A reader that applies each piece and drops
    it holds one piece's events at a time, however large the journal (results of
    megabytes each make a small experiment's journal large).

    Raises:
        StorageError: The file does not exist.
        JournalCorruptError: A line other than the last cannot be decoded.
    """
    path = Path(path)
    offset, rest = start, b""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            while block := f.read(piece_bytes):
                data = rest + block
                cut = data.rfind(b"\n") + 1
                if not cut:
                    rest = data
                    continue
                data, rest = data[:cut], data[cut:]
                with collection_paused():
                    yield _decode(path, data, live=live, start=offset)
                offset += len(data)
    except FileNotFoundError as exc:
        raise StorageError(f"no journal at {path}") from exc
    with collection_paused():
        yield _decode(path, rest, live=live, start=offset)


def _decode(path: Path, data: bytes, *, live: bool, start: int = 0) -> JournalContents:
    events: list[Event] = []
    offset = start
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if not line:
            offset += 1
            continue
        try:
            events.append(decode_event(line))
        except msgspec.DecodeError as exc:
            if is_last and live:  # the writer is appending this line right now
                return JournalContents(events, offset, line)
            if is_last:  # no trailing newline: the write was torn by a crash
                _log.warning(
                    "dropping a torn last line of the journal (the previous run was "
                    "interrupted mid-write)",
                    path=str(path),
                    line=number,
                )
                return JournalContents(events, offset, line)
            where = f"line {number}" + (f" after byte {start}" if start else "")
            raise JournalCorruptError(
                f"the journal {path} is corrupt at {where}: {exc}; it was modified by "
                "something other than atune, and atune will not guess what the experiment was",
                path=str(path),
                line=number,
            ) from exc
        offset += len(line) + (0 if is_last else 1)
    if data and not data.endswith(b"\n"):
        # A complete JSON object without its newline: keep it, but the next append must
        # start on a new line.
        return JournalContents(events, start + len(data), b"")
    return JournalContents(events, start + len(data))


def repair_journal(path: str | os.PathLike[str], contents: JournalContents) -> None:
    """Make the journal safe to append to: cut a torn tail, end with a newline."""
    if contents.torn_line is None:
        return
    with open(path, "r+b") as f:
        f.truncate(contents.valid_bytes)
        if contents.valid_bytes:
            f.seek(contents.valid_bytes - 1)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
