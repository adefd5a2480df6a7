"""``ExperimentWriter``: every byte the driver writes for an experiment, batched.

The controller's task only *buffers* (journal lines, result rows, params, error texts);
:meth:`ExperimentWriter.flush` writes them, and the driver runs it in a worker thread a few
times a second and once more at the end. So the event loop never touches the disk and a
result costs one list append, however many arrive.

The journal (``events.jsonl``) is appended and flushed in event order, before the result
files of the same batch: whatever ``result.json`` shows, the journal already knows.

Write failures (a full disk, ``EFBIG``, permissions) are a
:class:`~atune.errors.StorageError` naming the file, never a bare ``OSError``, and never
leave a torn journal behind: a failed append is cut back to the end of the last good
flush, and its lines (with everything else of that flush) stay buffered for the next one.
So the journal on disk is always a whole number of flushes, and ``Tuner.restore`` works
on it once the disk has room again.

Memory: the buffers are bounded by bytes, not only by the flush interval. Each journal
line's length is counted as it is buffered (a result's line is about the size of its
rows), and :attr:`ExperimentWriter.buffered_bytes` tells the driver when to flush early
(:data:`FLUSH_AT_BYTES`); a flush writes large buffers in chunks of about
:data:`CHUNK_BYTES`, so it never builds one copy of everything it writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atune.errors import StorageError
from atune.storage._layout import (
    ERROR_FILE,
    JOURNAL_FILE,
    PARAMS_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    format_error_record,
)
from atune.storage._trial_files import ResultFiles, write_params

if TYPE_CHECKING:
    from atune.storage._remote import ExperimentSync

__all__ = ["CHUNK_BYTES", "FLUSH_AT_BYTES", "ExperimentWriter", "create_journal"]

FLUSH_AT_BYTES = 4 << 20
"""Buffered journal bytes past which the driver flushes at once instead of on its timer."""
CHUNK_BYTES = 1 << 20
"""A flush joins at most about this many bytes before writing them."""


def create_journal(experiment_path: Path) -> None:
    """Create the empty journal of a new experiment (blocking).

    Raises:
        StorageError: it exists already, or cannot be created; the message names it.
    """
    path = experiment_path / JOURNAL_FILE
    try:
        with open(path, "xb"):
            pass
    except OSError as exc:
        raise StorageError(f"cannot create the journal {path}: {exc}") from exc


def _append_durably(path: Path, pieces: Iterable[bytes]) -> None:
    """Append ``pieces`` to ``path`` and fsync; on failure, cut the file back to its old end."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            for data in pieces:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            # A short write (full disk, file size limit) must not leave a torn line that a
            # later append would bury in the middle of the journal.
            # If even that fails, the reader drops the torn last line, as after a crash.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _storage_error(path: Path, exc: OSError) -> StorageError:
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot write {path}: {reason}" + (f" ({code})" if code else ""))


class ExperimentWriter:
    """Buffers an experiment's writes; :meth:`flush` performs them (thread-safe).

    Args:
        experiment_path: The experiment directory (created by :meth:`flush` if missing).
        sync: Remote storage only: uploads the directory (the driver's local mirror of
            the experiment) after each flush (:class:`~atune.storage._remote.ExperimentSync`).
    """

    def __init__(self, experiment_path: str, sync: ExperimentSync | None = None) -> None:
        self.path = Path(experiment_path)
        self.sync = sync
        self._urgent = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._journal: list[bytes] = []
        self._params: list[tuple[Path, dict[str, Any]]] = []
        self._errors: list[tuple[Path, str]] = []
        self._deletions: list[Path] = []
        self._buffered = 0
        self._results = ResultFiles()

    @property
    def buffered_bytes(self) -> int:
        """Bytes of journal lines buffered since the last flush began (a proxy for rows)."""
        return self._buffered

    # ---------------------------------------------------------------- loop side
    def journal(self, line: bytes) -> None:
        """Buffer one encoded event for the journal."""
        with self._lock:
            self._journal.append(line)
            self._buffered += len(line)

    def params(self, trial_dir: Path, config: dict[str, Any]) -> None:
        """Buffer the trial's ``params.json``."""
        with self._lock:
            self._params.append((trial_dir, config))

    def result(self, trial_dir: Path, result: dict[str, Any]) -> None:
        """Buffer one result row (``result.json`` and ``progress.csv``)."""
        self._results.append(trial_dir, result)

    def error(self, trial_dir: Path, number: int, ts: float, traceback: str) -> None:
        """Buffer failure number ``number`` (at ``ts``), appended to the trial's ``error.txt``.

        The record's format is :func:`~atune.storage._layout.format_error_record`'s.
        """
        text = format_error_record(number, ts, traceback)
        with self._lock:
            self._errors.append((trial_dir, text))

    def delete_checkpoint(self, checkpoint_dir: Path) -> None:
        """Delete a checkpoint directory, after the journal recording why is durable."""
        with self._lock:
            self._deletions.append(checkpoint_dir)

    def checkpoint_recorded(self) -> None:
        """A checkpoint was journaled: with remote storage, the next flush uploads at once."""
        self._urgent = True

    def close_trial(self, trial_dir: Path) -> None:
        """The trial ended: drop its in-memory file state after the next flush."""
        self._results.close(trial_dir)

    # -------------------------------------------------------------- thread side
    def finish(self) -> None:
        """Remote storage: upload everything the mirror holds that the storage lacks.

        Called after the run's last :meth:`flush` (blocking; a no-op for local storage).

        Raises:
            StorageError: an upload failed.
        """
        if self.sync is not None:
            with self._flush_lock:
                self.sync.sync(final=True)

    def flush(self) -> None:
        """Write everything buffered so far (call from a worker thread).

        With remote storage, what the flush wrote is then uploaded (when it is time, see
        :class:`~atune.storage._remote.ExperimentSync`).

        Raises:
            StorageError: a file cannot be written; the message names it. When the
                journal could not be appended, nothing of this flush was written and all
                of it stays buffered (the journal is cut back to its previous end); a
                failure after that (result files, ``params.json``, ``error.txt``) loses
                only those files' part of this flush.
        """
        with self._flush_lock:
            with self._lock:
                journal, self._journal = self._journal, []
                params, self._params = self._params, []
                errors, self._errors = self._errors, []
                deletions, self._deletions = self._deletions, []
                # Cut the result rows at the same point as the journal: a row buffered
                # after this cut waits for the next flush, so result.json never holds a
                # row whose ResultReported is not in the journal (the driver journals an
                # event before it buffers its row).
                rows = self._results.take()
                size, self._buffered = self._buffered, 0
                urgent, self._urgent = self._urgent, False
            journal_path = self.path / JOURNAL_FILE
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                if journal:
                    # The common case is one join and one write; large buffers go in pieces.
                    pieces = [b"\n".join([*journal, b""])] if size < CHUNK_BYTES else None
                    _append_durably(journal_path, pieces or _chunks(journal))
            except OSError as exc:
                with self._lock:  # keep all of it for the next flush, in order
                    self._journal[:0] = journal
                    self._params[:0] = params
                    self._errors[:0] = errors
                    self._deletions[:0] = deletions
                    self._buffered += size
                    self._urgent = self._urgent or urgent
                self._results.untake(rows)
                raise _storage_error(journal_path, exc) from exc
            # Only now that the journal holds the newer checkpoint (fsynced above) may older
            # ones go: a crash at any point leaves the journal's latest checkpoint on disk.
            for checkpoint_dir in deletions:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            # The rest goes on past a failure (one file's trouble must not lose the
            # others'); the first failure is raised at the end.
            failure: StorageError | None = None
            for trial_dir, config in params:
                time.sleep(0)  # let the event loop thread take the GIL (see ResultFiles.flush)
                try:
                    write_params(trial_dir, config)  # creates trial_dir
                except StorageError as exc:
                    failure = failure or exc
            try:
                self._results.write(rows)
            except StorageError as exc:
                failure = failure or exc
            for trial_dir, text in errors:
                try:
                    trial_dir.mkdir(parents=True, exist_ok=True)
                    with open(trial_dir / ERROR_FILE, "a") as f:
                        f.write(text)
                except OSError as exc:
                    if failure is None:
                        failure = _storage_error(trial_dir / ERROR_FILE, exc)
                        failure.__cause__ = exc
            if failure is not None:
                raise failure
            if self.sync is not None:
                self._sync(journal, params, rows[0], errors, deletions, urgent)

    def _sync(
        self,
        journal: list[bytes],
        params: list[tuple[Path, dict[str, Any]]],
        rows: dict[Path, list[dict[str, Any]]],
        errors: list[tuple[Path, str]],
        deletions: list[Path],
        urgent: bool,
    ) -> None:
        """Hand what this flush wrote to the remote sync, and let it upload (blocking)."""
        assert self.sync is not None
        changed: list[Path] = [self.path / JOURNAL_FILE] if journal else []
        changed += [trial_dir / PARAMS_FILE for trial_dir, _ in params]
        for trial_dir in rows:
            changed += [trial_dir / RESULT_FILE, trial_dir / PROGRESS_FILE]
        changed += [trial_dir / ERROR_FILE for trial_dir, _ in errors]
        self.sync.changed(changed, urgent=urgent)
        self.sync.deleted(deletions)
        self.sync.sync()


def _chunks(lines: list[bytes]) -> Iterator[bytes]:
    """``lines`` newline-terminated, joined into pieces of about :data:`CHUNK_BYTES`."""
    start, size = 0, 0
    for end, line in enumerate(lines, start=1):
        size += len(line) + 1
        if size >= CHUNK_BYTES:
            yield b"\n".join([*lines[start:end], b""])
            start, size = end, 0
    if start < len(lines):
        yield b"\n".join([*lines[start:], b""])
