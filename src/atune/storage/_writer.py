"""``ExperimentWriter``: every byte the driver writes for an experiment, batched.

The controller's task only *buffers* (journal lines, result rows, params, error texts);
:meth:`ExperimentWriter.flush` writes them, and the driver runs it in a worker thread a few
times a second and once more at the end. So the event loop never touches the disk and a
result costs one list append, however many arrive.

The journal (``events.jsonl``) is appended and flushed in event order, before the result
files of the same batch: whatever ``result.json`` shows, the journal already knows.

Memory: the buffers are bounded by bytes, not only by the flush interval. Each journal
line's length is counted as it is buffered (a result's line is about the size of its
rows), and :attr:`ExperimentWriter.buffered_bytes` tells the driver when to flush early
(:data:`FLUSH_AT_BYTES`); a flush writes large buffers in chunks of about
:data:`CHUNK_BYTES`, so it never builds one copy of everything it writes.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atune.storage._trial_files import ResultFiles, write_params

__all__ = ["CHUNK_BYTES", "FLUSH_AT_BYTES", "JOURNAL_FILE", "ExperimentWriter"]

JOURNAL_FILE = "events.jsonl"
FLUSH_AT_BYTES = 4 << 20
"""Buffered journal bytes past which the driver flushes at once instead of on its timer."""
CHUNK_BYTES = 1 << 20
"""A flush joins at most about this many bytes before writing them."""


class ExperimentWriter:
    """Buffers an experiment's writes; :meth:`flush` performs them (thread-safe).

    Args:
        experiment_path: The experiment directory (created by :meth:`flush` if missing).
    """

    def __init__(self, experiment_path: str) -> None:
        self.path = Path(experiment_path)
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

    def error(self, trial_dir: Path, text: str) -> None:
        """Buffer a failure report, appended to the trial's ``error.txt``."""
        with self._lock:
            self._errors.append((trial_dir, text))

    def delete_checkpoint(self, checkpoint_dir: Path) -> None:
        """Delete a checkpoint directory, after the journal recording why is durable."""
        with self._lock:
            self._deletions.append(checkpoint_dir)

    def close_trial(self, trial_dir: Path) -> None:
        """The trial ended: drop its in-memory file state after the next flush."""
        self._results.close(trial_dir)

    # -------------------------------------------------------------- thread side
    def flush(self) -> None:
        """Write everything buffered so far (call from a worker thread)."""
        with self._flush_lock:
            with self._lock:
                journal, self._journal = self._journal, []
                params, self._params = self._params, []
                errors, self._errors = self._errors, []
                deletions, self._deletions = self._deletions, []
                size, self._buffered = self._buffered, 0
            self.path.mkdir(parents=True, exist_ok=True)
            if journal:
                with open(self.path / JOURNAL_FILE, "ab") as f:
                    if size < CHUNK_BYTES:  # the common case: one join, one write
                        f.write(b"\n".join([*journal, b""]))
                    else:
                        for chunk in _chunks(journal):
                            f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            # Only now that the journal holds the newer checkpoint (fsynced above) may older
            # ones go: a crash at any point leaves the journal's latest checkpoint on disk.
            for checkpoint_dir in deletions:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            for trial_dir, config in params:
                time.sleep(0)  # let the event loop thread take the GIL (see ResultFiles.flush)
                trial_dir.mkdir(parents=True, exist_ok=True)
                write_params(trial_dir, config)
            self._results.flush()
            for trial_dir, text in errors:
                trial_dir.mkdir(parents=True, exist_ok=True)
                with open(trial_dir / "error.txt", "a") as f:
                    f.write(text)


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
