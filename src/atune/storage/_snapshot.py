"""The journal's snapshot (``events.snapshot.json``): its replayed state up to an offset.

Replaying a journal costs its length: 10,000 trials that report 10 results each are about
130,000 events to decode and apply. A snapshot holds what replaying the journal's first
``journal_bytes`` bytes produces (every trial's record, and what restore needs to bring
the search algorithm, scheduler and callbacks up to date), so a reader decodes the
snapshot and only the journal's *tail* after that offset.

The journal stays the source of truth. The snapshot is a cache of it, trusted only while
it provably describes this journal: its format version matches, the journal is at least
``journal_bytes`` long, and a hash of the journal's first and last 64 KiB before that
offset (with the offset itself) matches ``journal_check``. atune only ever appends to the
journal, so a journal that passes describes the same prefix; one replaced, cut short or
regenerated does not, and the snapshot is then ignored with a warning and the whole
journal replayed. A snapshot that does not decode is ignored the same way.

A snapshot is written to a staging file (:func:`~atune.storage._layout.snapshot_staging_name`),
fsynced, and renamed over the old one, so a reader sees the old snapshot or the new one,
never a part; a staging file left by a crash is ignored and removed by the next write.

This module knows the format; what goes in it is :mod:`atune._controller._snapshot`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from atune._gc import collection_paused
from atune._log import get_logger
from atune.events import (
    CallbackStateSaved,
    SchedulerStateSaved,
    SearcherStateSaved,
    _encode_fallback,
)
from atune.storage._layout import (
    JOURNAL_FILE,
    SNAPSHOT_FILE,
    is_snapshot_staging_name,
    snapshot_staging_name,
)

__all__ = [
    "SNAPSHOT_VERSION",
    "CheckpointState",
    "ErrorState",
    "JournalSnapshot",
    "TrialState",
    "journal_check",
    "read_snapshot",
    "snapshot_offset",
    "write_snapshot",
]

_log = get_logger(__name__)

SNAPSHOT_VERSION = 1
"""Bumped whenever the snapshot's meaning changes: a snapshot of another version is ignored."""
_CHECK_WINDOW = 64 << 10


class CheckpointState(msgspec.Struct, array_like=True):
    """A kept checkpoint: ``CheckpointRecord``'s fields."""

    dir_name: str
    training_iteration: int
    metrics: dict[str, Any]


class ErrorState(msgspec.Struct, array_like=True):
    """A failure as the journal records it (``TrialErrored``'s fields)."""

    type_name: str
    message: str
    traceback: str


class TrialState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One trial's record as the journal's prefix leaves it (``Trial``'s fields and more).

    ``resources`` and ``strategy`` are the request as ``TrialCreated`` recorded it;
    ``pinned_by`` is the donor checkpoint ``(donor id, dir name)`` an exploit assigned it;
    ``assigned_loaded``: it started from that assignment.
    """

    trial_id: str
    trial_name: str
    dirname: str
    config: dict[str, Any]
    experiment_tag: str
    resources: list[dict[str, float]]
    strategy: str = "PACK"
    status: str = "PENDING"
    last_result: dict[str, Any] = msgspec.field(default_factory=dict)
    num_results: int = 0
    num_failures: int = 0
    restore_failures: int = 0
    attempt: int = 0
    checkpoints: list[CheckpointState] = msgspec.field(default_factory=list)
    next_checkpoint_index: int = 0
    error: ErrorState | None = None
    pending_error: ErrorState | None = None
    failure_streak: int = 0
    end_reason: str | None = None
    assigned_checkpoint: str | None = None
    pinned_by: tuple[str, str] | None = None
    assigned_loaded: bool = False


class JournalSnapshot(msgspec.Struct, kw_only=True):
    """The replayed state of the journal's first ``journal_bytes`` bytes.

    Attributes:
        version: :data:`SNAPSHOT_VERSION`.
        journal_bytes: The offset covered: the end of a line of the journal.
        journal_check: :func:`journal_check` of the journal at that offset.
        trials: Every trial, in creation order.
        searcher: The last ``SearcherStateSaved`` in the prefix, if any.
        searcher_current: No event the search algorithm would be told on restore came
            after ``searcher`` in the prefix (restore needs no event before the offset).
        scheduler: The last ``SchedulerStateSaved`` in the prefix, if any.
        scheduler_current: As ``searcher_current``, for the scheduler.
        callbacks: The last ``CallbackStateSaved`` in the prefix, if any.
        failing: Trials that failed with a retry pending and reported nothing since.
        waiting: Trials paused, or resumed and not started again.
    """

    version: int = SNAPSHOT_VERSION
    journal_bytes: int
    journal_check: str
    trials: list[TrialState]
    searcher: SearcherStateSaved | None = None
    searcher_current: bool = False
    scheduler: SchedulerStateSaved | None = None
    scheduler_current: bool = False
    callbacks: CallbackStateSaved | None = None
    failing: list[str] = msgspec.field(default_factory=list)
    waiting: list[str] = msgspec.field(default_factory=list)


# The journal's own conversions (numpy values, reprs of foreign objects), so a value reads
# back from the snapshot exactly as it reads back from the journal.
_encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)
_decoder = msgspec.json.Decoder(JournalSnapshot)


def journal_check(journal: Path, offset: int) -> str:
    """A hash of ``offset`` and the journal's first and last 64 KiB before it.

    Raises:
        OSError: the journal cannot be read.
    """
    digest = hashlib.sha256(str(offset).encode())
    with open(journal, "rb") as f:
        digest.update(f.read(min(offset, _CHECK_WINDOW)))
        tail_start = max(0, offset - _CHECK_WINDOW)
        f.seek(tail_start)
        digest.update(f.read(offset - tail_start))
    return digest.hexdigest()


# ``JournalSnapshot`` encodes its fields in order, so the offset is in the first bytes.
_OFFSET = re.compile(rb'\A\{"version":(\d+),"journal_bytes":(\d+),')


def snapshot_offset(experiment_path: Path) -> int | None:
    """The journal offset the snapshot says it covers, from its first bytes; unchecked.

    For deciding cheaply whether a new snapshot is worth writing; None when there is no
    snapshot or its start is not as this version writes it.
    """
    try:
        with open(experiment_path / SNAPSHOT_FILE, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    match = _OFFSET.match(head)
    if match is None or int(match.group(1)) != SNAPSHOT_VERSION:
        return None
    return int(match.group(2))


def read_snapshot(experiment_path: Path) -> JournalSnapshot | None:
    """The experiment's snapshot when it matches its journal, else None.

    No snapshot is None silently; one that does not decode, has another version, or does
    not match the journal (shorter, or other bytes before its offset) is None with a
    warning: the caller replays the whole journal.
    """
    path = experiment_path / SNAPSHOT_FILE
    journal = experiment_path / JOURNAL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _ignored(path, f"it cannot be read: {exc}")
    try:
        with collection_paused():
            snapshot = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        return _ignored(path, f"it is damaged: {exc}")
    if snapshot.version != SNAPSHOT_VERSION:
        return _ignored(path, f"it has format version {snapshot.version}")
    try:
        size = journal.stat().st_size
        if size < snapshot.journal_bytes:
            return _ignored(path, "the journal is shorter than the offset it covers")
        if journal_check(journal, snapshot.journal_bytes) != snapshot.journal_check:
            return _ignored(path, "it was made from another journal")
    except OSError as exc:
        return _ignored(path, f"the journal cannot be read: {exc}")
    return snapshot


def _ignored(path: Path, why: str) -> JournalSnapshot | None:
    """Warn that the snapshot at ``path`` is not used, and why; None."""
    _log.warning(
        f"ignoring the journal's snapshot: {why}; replaying the whole journal", path=str(path)
    )
    return None


def write_snapshot(experiment_path: Path, snapshot: JournalSnapshot) -> None:
    """Write ``snapshot`` atomically (staging file, fsync, rename); blocking.

    Staging files of earlier, interrupted writes are removed.

    Raises:
        OSError: it cannot be written (the old snapshot, if any, stays).
    """
    for child in experiment_path.iterdir():
        if is_snapshot_staging_name(child.name):
            with contextlib.suppress(OSError):
                child.unlink()
    staging = experiment_path / snapshot_staging_name()
    try:
        with open(staging, "xb") as f:
            f.write(_encoder.encode(snapshot))
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, experiment_path / SNAPSHOT_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise
