"""Driver-side writer of the per-trial files ``params.json``, ``result.json``, ``progress.csv``.

The layout and formats are Ray Tune's (``JsonLoggerCallback``, ``CSVLoggerCallback``):

* ``params.json``: the trial config, ``indent=2``, sorted keys, rewritten whole (PBT
  changes a trial's config). No ``params.pkl``: atune never writes or loads pickles in an
  experiment directory.
* ``result.json``: JSON lines, one unflattened result per line (see
  :mod:`atune.storage._json` for non-JSON values and NaN).
* ``progress.csv``: results flattened with ``/``, ``config`` removed, columns in the order
  keys were first seen.

One deliberate difference: Ray Tune fixes the CSV header from a trial's first row and
silently drops keys that appear later. Here a row that brings a new key extends the
header: the file is rewritten with the new columns at the end and empty cells in the rows
before. That is rare, so its cost does not matter; the common path only appends.

:class:`ResultFiles` is built for the hot path (thousands of results a second):
``append`` only buffers, ``flush`` writes every buffered row of a trial with one write
per file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from atune._flatten import flatten_dict, unflatten_dict
from atune.errors import StorageError
from atune.storage._json import decode_json_lines, encode_json
from atune.storage._layout import PARAMS_FILE, PROGRESS_FILE, RESULT_FILE

__all__ = ["ResultFiles", "read_result_rows", "write_params"]

_CHUNK_BYTES = 1 << 20  # a flush joins at most about this many bytes of rows at once


def _atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_params(trial_dir: Path, config: dict[str, Any]) -> None:
    """Writes ``<trial_dir>/params.json`` (created if missing), replacing it atomically.

    Non-JSON values are written safely: numpy values as numbers and lists, other objects
    as ``str(value)``, non-string keys as ``str(key)``.

    Args:
        trial_dir: The trial's directory; created with its parents if missing.
        config: The trial config.

    Raises:
        StorageError: The file cannot be written.
    """
    data = encode_json(config, indent=2, sort_keys=True)
    try:
        trial_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(trial_dir / PARAMS_FILE, data)
    except OSError as exc:
        raise StorageError(f"cannot write {trial_dir / PARAMS_FILE}: {exc}") from exc


def _repair_tail(path: Path) -> None:
    """Cuts a line torn by a crash (no final newline) off the end of ``path``."""
    try:
        f = path.open("rb+")
    except FileNotFoundError:
        return
    with f:
        end = pos = f.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


def read_result_rows(trial_dir: Path) -> list[dict[str, Any]] | None:
    """Reads every result a trial wrote, unflattened, in report order.

    ``result.json`` is read when it exists; otherwise ``progress.csv`` (which has no
    ``config``, and whose empty cells mean "not reported"; pandas infers the cell types,
    so a string that looks like a number comes back as a number).

    Args:
        trial_dir: The trial's directory.

    Returns:
        The rows, or None when the trial has neither file.

    Raises:
        StorageError: A file exists but cannot be read or parsed.
    """
    result_file = trial_dir / RESULT_FILE
    try:
        data = result_file.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot read {result_file}: {exc}") from exc
    else:
        try:
            return decode_json_lines(data)
        except StorageError as exc:
            raise StorageError(f"{result_file}: {exc}") from exc
    progress = trial_dir / PROGRESS_FILE
    if not progress.is_file():
        return None
    return _read_progress_rows(progress)


def _read_progress_rows(progress: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_csv(progress)
    except pd.errors.EmptyDataError:
        return []
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {progress}: {exc}") from exc
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, float) and value != value:  # NaN: an empty cell
                continue
            row[str(key)] = value.item() if hasattr(value, "item") else value
        try:
            rows.append(unflatten_dict(row, delimiter="/"))
        except TypeError:  # both "a" and "a/b" are columns: keep the row flat
            rows.append(row)
    return rows


class _CsvColumns:
    """The columns of one trial's ``progress.csv``: in memory, and as written in its header."""

    __slots__ = ("columns", "known", "written")

    def __init__(self, header: list[str]) -> None:
        self.columns = list(header)
        self.known = set(header)
        self.written = len(header)  # how many of ``columns`` the file's header holds


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


class ResultFiles:
    """Buffers results and appends them to each trial's ``result.json`` and ``progress.csv``.

    Thread-safety: :meth:`append` and :meth:`close` may be called from one thread (the
    event loop) while :meth:`flush` runs in another (a worker thread). ``append`` and
    ``close`` only touch the buffer, under a lock held for a list append; ``flush`` swaps
    the whole buffer out under that lock and then writes without holding it, so the event
    loop never waits for I/O. Concurrent ``flush`` calls are serialized by a second lock,
    so rows of one trial are written in the order they were appended.

    Memory: per-trial column state is kept only for trials not yet closed. After
    :meth:`close`, the state is dropped at the next flush; a later append to that trial
    still works, because the header is read back from its ``progress.csv``. The same
    happens for a trial first seen by this instance whose files were written earlier (a
    resumed experiment): its existing header is reused and rows are appended.

    Crash safety: when a trial's files are first opened, a last line torn by an earlier
    crash (not ending in a newline) is cut off before appending.
    """

    def __init__(self) -> None:
        """Creates an empty writer; no file is touched until :meth:`flush`."""
        self._lock = threading.Lock()
        self._flush_lock = threading.RLock()  # held across take() and write() by flush()
        self._pending: dict[Path, list[dict[str, Any]]] = {}
        self._closing: set[Path] = set()
        self._columns: dict[Path, _CsvColumns] = {}

    def append(self, trial_dir: Path, result: dict[str, Any]) -> None:
        """Buffers one result of a trial; no I/O.

        A shallow copy of ``result`` is buffered, so keys the caller adds or replaces
        later are not written; nested values must not be mutated until the next flush.

        Args:
            trial_dir: The trial's directory.
            result: The unflattened result, as reported (including ``config``).
        """
        row = dict(result)
        with self._lock:
            rows = self._pending.get(trial_dir)
            if rows is None:
                self._pending[trial_dir] = [row]
            else:
                rows.append(row)

    def close(self, trial_dir: Path) -> None:
        """Marks a trial finished: its column state is dropped at the next flush; no I/O.

        Rows already appended are still written by that flush. Appending to the trial
        again afterwards is allowed (its header is then read back from the file).

        Args:
            trial_dir: The trial's directory.
        """
        with self._lock:
            self._closing.add(trial_dir)

    @property
    def num_open(self) -> int:
        """Number of trials whose column state is held in memory."""
        return len(self._columns)

    def flush(self) -> None:
        """Writes every buffered row; blocking, so call it from a worker thread.

        Each trial's rows are written with one append to ``result.json`` and one to
        ``progress.csv`` (or one rewrite, when a row brought a new column). A trial whose
        files cannot be written does not stop the others.

        Raises:
            StorageError: The files of one or more trials could not be written; the
                message names them. Their rows of this flush are lost.
        """
        with self._flush_lock:
            self.write(self.take())

    def take(self) -> tuple[dict[Path, list[dict[str, Any]]], set[Path]]:
        """Takes every buffered row (and close) out of the buffer, for :meth:`write`; no I/O.

        Lets a caller cut the buffer at a point of its choosing (``ExperimentWriter`` cuts
        it together with the journal) and write it later, in another thread.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
            closing, self._closing = self._closing, set()
        return pending, closing

    def untake(self, taken: tuple[dict[Path, list[dict[str, Any]]], set[Path]]) -> None:
        """Puts what :meth:`take` returned back in front of the buffer (its write failed
        before it began: the journal could not be appended), keeping every trial's order."""
        pending, closing = taken
        with self._lock:
            for trial_dir, rows in self._pending.items():
                pending.setdefault(trial_dir, []).extend(rows)
            self._pending = pending
            self._closing |= closing

    def write(self, taken: tuple[dict[Path, list[dict[str, Any]]], set[Path]]) -> None:
        """Writes what :meth:`take` returned (blocking); see :meth:`flush`.

        Raises:
            StorageError: as :meth:`flush`.
        """
        pending, closing = taken
        with self._flush_lock:
            failures: list[str] = []
            first_error: Exception | None = None
            for trial_dir, rows in pending.items():
                # Hand the GIL back between trials: this runs in a worker thread, and an
                # event loop waiting for the GIL would otherwise wait a switch interval.
                time.sleep(0)
                try:
                    self._write_trial(trial_dir, rows)
                except Exception as exc:  # one trial's failure must not lose the others' rows
                    self._columns.pop(trial_dir, None)  # re-read from the file next time
                    failures.append(f"{trial_dir}: {exc!r}")
                    first_error = first_error or exc
            for trial_dir in closing:
                self._columns.pop(trial_dir, None)
        if failures:
            raise StorageError(
                "cannot write trial result files: " + "; ".join(failures)
            ) from first_error

    def _open(self, trial_dir: Path) -> _CsvColumns:
        state = self._columns.get(trial_dir)
        if state is None:
            trial_dir.mkdir(parents=True, exist_ok=True)
            _repair_tail(trial_dir / RESULT_FILE)
            _repair_tail(trial_dir / PROGRESS_FILE)
            state = _CsvColumns(_read_header(trial_dir / PROGRESS_FILE))
            self._columns[trial_dir] = state
        return state

    def _write_trial(self, trial_dir: Path, rows: list[dict[str, Any]]) -> None:
        state = self._open(trial_dir)
        with (trial_dir / RESULT_FILE).open("ab") as f:
            # Joined in pieces of about 1 MiB: one join of large rows would double them.
            pieces: list[bytes] = []
            size = 0
            for row in rows:
                line = encode_json(row)
                pieces.append(line)
                size += len(line)
                if size >= _CHUNK_BYTES:
                    f.write(b"\n".join([*pieces, b""]))
                    pieces, size = [], 0
            if pieces:
                f.write(b"\n".join([*pieces, b""]))

        flat_rows = []
        for row in rows:
            flat = flatten_dict({k: v for k, v in row.items() if k != "config"}, delimiter="/")
            if not all(type(key) is str for key in flat):
                flat = {str(key): value for key, value in flat.items()}
            for key in flat:
                if key not in state.known:
                    state.known.add(key)
                    state.columns.append(key)
            flat_rows.append(flat)
        if not state.columns:
            return  # nothing but config reported so far: no CSV to write
        progress = trial_dir / PROGRESS_FILE
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=state.columns, restval="", extrasaction="ignore")
        if state.written == len(state.columns):
            with progress.open("a", newline="", encoding="utf-8") as f:
                # Straight into the file (buffered), not through one string of every row.
                csv.DictWriter(
                    f, fieldnames=state.columns, restval="", extrasaction="ignore"
                ).writerows(flat_rows)
            return
        writer.writeheader()
        if state.written:
            self._copy_rows(progress, buf, len(state.columns))
        writer.writerows(flat_rows)
        _atomic_write(progress, buf.getvalue().encode("utf-8"))
        state.written = len(state.columns)

    @staticmethod
    def _copy_rows(progress: Path, buf: io.StringIO, width: int) -> None:
        """Copies the data rows of ``progress`` into ``buf``, padded to ``width`` cells."""
        with progress.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader, None)  # the old header
            writer = csv.writer(buf)
            for cells in reader:
                writer.writerow(cells + [""] * (width - len(cells)))
