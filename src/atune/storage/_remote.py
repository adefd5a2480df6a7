"""Experiments on remote storage (``s3://``, ``gs://``, a ``storage_filesystem``).

A ``storage_path`` that is a URI other than ``file://``, or any path with a
``storage_filesystem``, puts the experiment on a :mod:`pyarrow.fs` file system (the
``remote`` extra, as Ray Tune does). Nothing then assumes a disk that two machines share:

* **Node-local scratch.** Every machine works in a scratch directory of its own,
  ``<ATUNE_SCRATCH_DIR or the temp dir>/atune-scratch/<key>`` (:func:`scratch_dir`),
  where ``key`` names one run of the experiment (its name plus a random suffix, chosen by
  the driver, so two runs never share a scratch directory). The driver's scratch is the
  experiment's local mirror: the journal and the result files are written there exactly
  as for a local experiment, then uploaded (:class:`ExperimentSync`).
* **Trials upload their own checkpoints.** A checkpoint is committed in the scratch of
  the node that ran the trial, then uploaded by that node (:func:`upload_checkpoint`)
  before the save returns: by the time the journal records a checkpoint, it is in the
  storage. A trial restored on a node whose scratch lacks the checkpoint downloads it
  first (:func:`fetch_checkpoint`). The journal is the commit point: a checkpoint whose
  upload was torn is never in the journal, and its directory is cleared before the next
  upload under that name.
* **Uploads are batched.** The driver uploads from the writer's worker thread, after the
  writer's flush: the journal first, then the result files the flush changed, then the
  deletions of checkpoints the journal made obsolete. So the storage never holds a result
  row the journal lacks (a restore writes rows the journal has and ``result.json`` does
  not; see ``reconcile_disk``). An upload happens when a checkpoint was journaled, when
  :data:`SYNC_PERIOD_S` passed since the last one, and at the end of ``fit()``.
* **The lock lives in the storage** (:class:`RemoteLock`).
* **Restore needs the storage alone**: :func:`download_experiment` fills a fresh mirror
  with everything but the checkpoints, which trials fetch when they need them.

A local path (and ``file://``) takes none of these paths: local experiments are written
exactly as before.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from atune.errors import ConfigError, ExperimentLockedError, StorageError
from atune.storage._layout import (
    JOURNAL_FILE,
    LOCK_FILE,
    SPEC_FILE,
    is_staging_name,
    parse_checkpoint_name,
)

__all__ = [
    "SCRATCH_ENV",
    "SYNC_PERIOD_S",
    "ExperimentSync",
    "RemoteLock",
    "RemoteRun",
    "RemoteStorage",
    "TrialStorage",
    "claim_remote_experiment",
    "download_dir",
    "download_experiment",
    "fetch_checkpoint",
    "is_remote",
    "localize_trial_dir",
    "new_run_key",
    "open_remote_experiment",
    "open_storage",
    "publish_new_experiment",
    "remote_experiment",
    "scratch_dir",
    "upload_checkpoint",
    "upload_file",
]

SCRATCH_ENV = "ATUNE_SCRATCH_DIR"
"""Environment variable: the node-local scratch root (default: the temp directory)."""
SYNC_PERIOD_S = 5.0
"""The driver uploads changed files at least this often (and on every checkpoint)."""
LOCK_TTL_S = 60.0
"""A lock object whose holder has not refreshed it for this long is stale."""
_LOCK_REFRESH_S = LOCK_TTL_S / 4
_CLAIM_FILE = ".atune-claim"
_MAX_SUFFIX = 10_000
_T = TypeVar("_T")
_EXTRA_HINT = "install the remote extra: pip install 'atune[remote]'"


def _pyarrow_fs() -> Any:
    try:
        import pyarrow.fs
    except ImportError as exc:
        raise ConfigError(
            f"remote storage needs pyarrow ({exc}); {_EXTRA_HINT}", value="pyarrow"
        ) from exc
    return pyarrow.fs


def is_remote(storage_path: str, storage_filesystem: Any = None) -> bool:
    """Whether ``storage_path`` (with ``storage_filesystem``) names remote storage.

    No I/O and no import: a URI of another scheme than ``file``, or any path with a
    file system other than pyarrow's ``LocalFileSystem``.
    """
    if storage_filesystem is not None:
        return type(storage_filesystem).__name__ != "LocalFileSystem"
    scheme, sep, _ = storage_path.partition("://")
    return bool(sep) and scheme.lower() != "file" and "/" not in scheme


@dataclass(frozen=True)
class RemoteStorage:
    """A directory on a :mod:`pyarrow.fs` file system; pickles (workers receive it).

    Attributes:
        filesystem: The pyarrow file system.
        path: The directory on it (no scheme: ``bucket/prefix``).
        uri: How to name it to people and to ``Tuner.restore`` (``s3://bucket/prefix``).
    """

    filesystem: Any
    path: str
    uri: str

    def child(self, *parts: str) -> RemoteStorage:
        """The storage of a directory below this one."""
        return RemoteStorage(
            self.filesystem,
            posixpath.join(self.path, *parts),
            posixpath.join(self.uri.split("?", 1)[0], *parts) + _query(self.uri),
        )

    def join(self, *parts: str) -> str:
        """The path on the file system of ``parts`` below this directory."""
        return posixpath.join(self.path, *parts)

    def exists(self, *parts: str) -> bool:
        """Whether a file or directory exists at ``parts`` (blocking)."""
        fs = _pyarrow_fs()
        info = _call(self, "read", lambda: self.filesystem.get_file_info(self.join(*parts)))
        return bool(info.type != fs.FileType.NotFound)

    def read_bytes(self, *parts: str) -> bytes | None:
        """The content of the file at ``parts``, None when there is none (blocking)."""
        path = self.join(*parts)

        def read() -> bytes | None:
            try:
                with self.filesystem.open_input_stream(path) as f:
                    return bytes(f.read())
            except FileNotFoundError:
                return None

        return _call(self, f"read {path}", read)

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Replace the file at ``parts`` with ``data`` (blocking)."""
        path = self.join(*parts)

        def write() -> None:
            with self.filesystem.open_output_stream(path) as f:
                f.write(data)

        _call(self, f"write {path}", write)

    def delete_file(self, *parts: str) -> None:
        """Delete the file at ``parts``; no error when there is none (blocking)."""
        path = self.join(*parts)

        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(path)

        _call(self, f"delete {path}", delete)

    def delete_dir(self, *parts: str) -> None:
        """Delete the directory at ``parts`` and everything in it (blocking)."""
        path = self.join(*parts)

        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_dir(path)

        _call(self, f"delete {path}", delete)


def _query(uri: str) -> str:
    _, sep, query = uri.partition("?")
    return sep + query


def _call(storage: RemoteStorage, what: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn``; a failure of the file system is a StorageError naming the storage."""
    try:
        return fn()
    except (OSError, ValueError) as exc:  # pyarrow's errors are OSError / ArrowInvalid
        raise StorageError(f"remote storage {storage.uri}: cannot {what}: {exc}") from exc


def open_storage(
    storage_path: str, storage_filesystem: Any = None, what: str = "RunConfig.storage_path"
) -> RemoteStorage:
    """The remote storage that ``storage_path`` names (blocking: may ask the server).

    With ``storage_filesystem``, ``storage_path`` is a path on that file system (a URI's
    scheme is stripped); otherwise it is a URI that :meth:`pyarrow.fs.FileSystem.from_uri`
    resolves (its query carries options: ``?endpoint_override=...&region=...``).

    Raises:
        ConfigError: pyarrow is missing, or the URI is one pyarrow cannot resolve; the
            message names the value.
    """
    try:
        fs = _pyarrow_fs()
    except ConfigError as exc:
        raise ConfigError(f"{what}={storage_path!r}: {exc}", value=storage_path) from exc
    if storage_filesystem is not None:
        if not isinstance(storage_filesystem, fs.FileSystem):
            raise ConfigError(
                f"storage_filesystem must be a pyarrow.fs.FileSystem, got {storage_filesystem!r}",
                value=storage_filesystem,
            )
        path = storage_path.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
        return RemoteStorage(storage_filesystem, path, storage_path.rstrip("/"))
    try:
        filesystem, path = fs.FileSystem.from_uri(storage_path)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise ConfigError(
            f"{what}={storage_path!r}: pyarrow cannot open this storage: {exc}",
            value=storage_path,
        ) from exc
    base, query = storage_path.split("?", 1)[0].rstrip("/"), _query(storage_path)
    return RemoteStorage(filesystem, path.rstrip("/"), base + query)


def remote_experiment(storage: RemoteStorage) -> bool:
    """Whether ``storage`` holds an atune experiment (spec and journal; blocking)."""
    return storage.exists(SPEC_FILE) and storage.exists(JOURNAL_FILE)


def claim_remote_experiment(root: RemoteStorage, name: str) -> RemoteStorage:
    """Claim ``<root>/<name>`` (or the first free ``<name>_N``) for a new experiment.

    Object stores have no exclusive create that pyarrow exposes, so this is best effort:
    a name is free when nothing exists under it; the claimer writes a claim object with a
    random token and reads it back. Two claims racing for one name in the same instant
    could both pass; atune's own ``Tuner`` names are unique (microseconds).

    Raises:
        StorageError: the storage cannot be read or written.
    """
    token = uuid.uuid4().hex
    for n in range(1, _MAX_SUFFIX + 1):
        candidate = root.child(name if n == 1 else f"{name}_{n}")
        if candidate.exists():
            continue
        _call(candidate, "create the directory", functools.partial(_create_dir, candidate))
        candidate.write_bytes(token.encode(), _CLAIM_FILE)
        if candidate.read_bytes(_CLAIM_FILE) == token.encode():
            return candidate
    raise StorageError(f"{root.uri}/{name} and its suffixed variants all exist")


def _create_dir(storage: RemoteStorage) -> None:
    storage.filesystem.create_dir(storage.path, recursive=True)


def new_run_key(name: str) -> str:
    """A scratch name for one run of experiment ``name``, unique to that run."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def scratch_dir(key: str) -> Path:
    """This machine's scratch directory of the run ``key`` (not created)."""
    root = os.environ.get(SCRATCH_ENV) or os.path.join(tempfile.gettempdir(), "atune-scratch")
    return Path(root, key)


# ------------------------------------------------------------------------- trials
@dataclass(frozen=True)
class TrialStorage:
    """What a trial's runner needs to use remote storage (sent in ``TrialInfo``).

    Attributes:
        storage: The experiment directory on the remote storage.
        key: The run's scratch name (:func:`scratch_dir`), the same on every node.
        driver_path: The driver's mirror of the experiment: the paths the driver sends
            (trial directories, checkpoints to restore) are under it.
    """

    storage: RemoteStorage
    key: str
    driver_path: str

    def relative(self, driver_side: str) -> str:
        """A path the driver sent, relative to the experiment directory."""
        return os.path.relpath(driver_side, self.driver_path)

    def local(self, driver_side: str) -> str:
        """Where the path the driver sent lives in this machine's scratch."""
        return os.path.join(scratch_dir(self.key), self.relative(driver_side))


def localize_trial_dir(storage: TrialStorage | None, trial_dir: str | None) -> str | None:
    """The trial directory in this machine's scratch (unchanged without remote storage)."""
    if storage is None or not trial_dir:
        return trial_dir
    return storage.local(trial_dir)


def upload_checkpoint(storage: TrialStorage | None, local_dir: str) -> None:
    """Upload a committed checkpoint from this machine's scratch (blocking; no-op locally).

    ``local_dir`` is ``<scratch>/<trial>/checkpoint_NNNNNN``. Whatever a torn earlier
    upload left under that name is removed first, so the storage holds this checkpoint's
    files only.

    Raises:
        StorageError: the upload failed; the save fails with it (and is retried as any
            failed save).
    """
    if storage is None:
        return
    rel = os.path.relpath(local_dir, scratch_dir(storage.key))
    target = storage.storage.join(*Path(rel).parts)
    fs = _pyarrow_fs()

    def upload() -> None:
        with contextlib.suppress(FileNotFoundError):
            storage.storage.filesystem.delete_dir(target)
        fs.copy_files(
            local_dir,
            target,
            source_filesystem=fs.LocalFileSystem(),
            destination_filesystem=storage.storage.filesystem,
        )

    _call(storage.storage, f"upload the checkpoint {rel}", upload)


def fetch_checkpoint(storage: TrialStorage | None, driver_side: str) -> str:
    """The local directory of the checkpoint the driver named, downloaded if missing.

    Without remote storage the path is returned as is. Otherwise the checkpoint is looked
    up in this machine's scratch, and downloaded from the storage into it (through a
    staging directory renamed into place) when absent. A checkpoint missing from the
    storage too comes back as its (absent) local path: restoring from it then fails as a
    missing checkpoint.

    Raises:
        StorageError: the download failed.
    """
    if storage is None:
        return driver_side
    local = storage.local(driver_side)
    if os.path.isdir(local):
        return local
    rel = storage.relative(driver_side)
    source = storage.storage.join(*Path(rel).parts)
    if not storage.storage.exists(*Path(rel).parts):
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(local))
    try:
        download_dir(RemoteStorage(storage.storage.filesystem, source, source), staging)
        try:
            os.rename(staging, local)
        except OSError:  # another download of it finished first
            if not os.path.isdir(local):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return local


def download_dir(storage: RemoteStorage, local: str) -> None:
    """Copy the directory ``storage`` into the existing local directory ``local``.

    Raises:
        StorageError: the download failed.
    """
    fs = _pyarrow_fs()
    _call(
        storage,
        f"download {storage.path}",
        lambda: fs.copy_files(
            storage.path,
            local,
            source_filesystem=storage.filesystem,
            destination_filesystem=fs.LocalFileSystem(),
        ),
    )


# ------------------------------------------------------------------ the experiment
def _skipped(rel_parts: tuple[str, ...]) -> bool:
    """Files a mirror does not download: checkpoints, staging, the lock and claim."""
    if rel_parts and rel_parts[-1] in (LOCK_FILE, _CLAIM_FILE):
        return True
    return any(parse_checkpoint_name(p) is not None or is_staging_name(p) for p in rel_parts)


def download_experiment(storage: RemoteStorage, mirror: Path) -> dict[str, tuple[int, int]]:
    """Copy the experiment's files, all but checkpoints, into ``mirror`` (created if
    missing; files of the same name are replaced).

    Blocking. Returns the local state of what was written (see :class:`ExperimentSync`),
    so that unchanged files are not uploaded again.

    Raises:
        StorageError: the storage cannot be listed or read.
    """
    fs = _pyarrow_fs()
    selector = fs.FileSelector(storage.path, recursive=True)
    infos = _call(
        storage, "list the experiment", lambda: storage.filesystem.get_file_info(selector)
    )
    mirror.mkdir(parents=True, exist_ok=True)
    state: dict[str, tuple[int, int]] = {}
    prefix = storage.path.rstrip("/") + "/"
    for info in infos:
        if info.type != fs.FileType.File or not info.path.startswith(prefix):
            continue
        rel = info.path[len(prefix) :]
        parts = tuple(rel.split("/"))
        if _skipped(parts):
            continue
        data = storage.read_bytes(*parts)
        if data is None:
            continue
        local = mirror.joinpath(*parts)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        stat = local.stat()
        state[rel] = (stat.st_size, stat.st_mtime_ns)
    return state


def publish_new_experiment(storage: RemoteStorage, mirror: Path) -> dict[str, tuple[int, int]]:
    """Upload a new experiment's ``experiment.json`` and empty journal (blocking).

    From then on ``Tuner.can_restore`` is true for the storage, as for a local
    experiment. Returns the mirror's state of what was uploaded.

    Raises:
        StorageError: the upload failed.
    """
    state = {}
    for rel in (SPEC_FILE, JOURNAL_FILE):
        upload_file(storage, mirror / rel, rel)
        stat = (mirror / rel).stat()
        state[rel] = (stat.st_size, stat.st_mtime_ns)
    storage.delete_file(_CLAIM_FILE)  # the spec holds the name now
    return state


def open_remote_experiment(
    path: str, storage_filesystem: Any, what: str
) -> tuple[RemoteStorage, str, Path, dict[str, tuple[int, int]]]:
    """Open the experiment at ``path`` and download it into a fresh local mirror.

    Returns:
        The storage, the run's scratch name, the mirror, and the mirror's upload state.

    Raises:
        ConfigError: ``path`` cannot be opened (see :func:`open_storage`).
        StorageError: it is not an atune experiment, or cannot be read.
    """
    storage = open_storage(path, storage_filesystem, what)
    if not remote_experiment(storage):
        raise StorageError(
            f"{storage.uri} is not an atune experiment (no {SPEC_FILE} and {JOURNAL_FILE})"
        )
    key = new_run_key(posixpath.basename(storage.path))
    mirror = scratch_dir(key)
    return storage, key, mirror, download_experiment(storage, mirror)


def upload_file(storage: RemoteStorage, local: Path, rel: str) -> None:
    """Upload one local file to ``rel`` below ``storage`` (blocking)."""
    target = storage.join(*rel.split("/"))

    def upload() -> None:
        try:
            dst = storage.filesystem.open_output_stream(target)
        except FileNotFoundError:  # a file system with real directories (not S3, GCS)
            storage.filesystem.create_dir(posixpath.dirname(target), recursive=True)
            dst = storage.filesystem.open_output_stream(target)
        with open(local, "rb") as src, dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    _call(storage, f"upload {rel}", upload)


@dataclass
class ExperimentSync:
    """Uploads the driver's mirror of an experiment to its remote storage, in batches.

    Called by :class:`~atune.storage._writer.ExperimentWriter` at the end of each flush,
    in the flush's worker thread (never on the event loop), with the files that flush
    changed. See the module docstring for the order and the cadence.

    Args:
        storage: The experiment directory on the remote storage.
        mirror: The driver's local mirror of it.
        state: What the mirror holds that the storage already has (size, mtime).
        lock: The experiment's lock, refreshed as uploads go.
    """

    storage: RemoteStorage
    mirror: Path
    state: dict[str, tuple[int, int]] = field(default_factory=dict)
    lock: RemoteLock | None = None
    _dirty: set[str] = field(default_factory=set)
    _deletions: list[str] = field(default_factory=list)
    _urgent: bool = False
    _last: float = field(default_factory=time.monotonic)
    _walk: bool = True  # the first sync compares every file of the mirror

    def changed(self, paths: Iterable[Path], *, urgent: bool = False) -> None:
        """Files of the mirror that a flush wrote; ``urgent`` uploads them at once."""
        for path in paths:
            self._dirty.add(self._rel(path))
        self._urgent = self._urgent or urgent

    def deleted(self, paths: Iterable[Path]) -> None:
        """Checkpoint directories of the mirror the journal made obsolete."""
        for path in paths:
            self._deletions.append(self._rel(path))
            self._urgent = True

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.mirror).as_posix()

    def sync(self, *, final: bool = False) -> None:
        """Upload what changed, if it is time (always when ``final``; blocking).

        ``final`` also compares every file of the mirror with what was uploaded (files
        written outside the writer: a scheduler's own files).

        Raises:
            StorageError: an upload failed; what was not uploaded stays pending.
        """
        now = time.monotonic()
        if self.lock is not None and self.lock.held:
            self.lock.refresh()
        due = final or self._urgent or now - self._last >= SYNC_PERIOD_S
        if not due:
            return
        if final or self._walk:
            self._dirty |= set(self._walk_mirror())
            self._walk = False
        pending = sorted(self._dirty, key=lambda rel: rel != JOURNAL_FILE)  # journal first
        for rel in pending:
            local = self.mirror / rel
            try:
                stat = local.stat()
            except FileNotFoundError:
                self._dirty.discard(rel)
                continue
            mark = (stat.st_size, stat.st_mtime_ns)
            if self.state.get(rel) != mark:
                upload_file(self.storage, local, rel)
                self.state[rel] = mark
            self._dirty.discard(rel)
        while self._deletions:
            self.storage.delete_dir(*self._deletions[0].split("/"))
            self._deletions.pop(0)
        self._urgent = False
        self._last = now

    def _walk_mirror(self) -> Iterable[str]:
        for path in self.mirror.rglob("*"):
            rel = path.relative_to(self.mirror)
            hidden = any(part.startswith(".") for part in rel.parts)  # staging, exit records
            if path.is_file() and not hidden and not _skipped(rel.parts):
                yield rel.as_posix()


@dataclass(frozen=True)
class RemoteRun:
    """What ``fit()`` on remote storage hands the driver: its sync and the trials' view."""

    sync: ExperimentSync
    trials: TrialStorage


# ----------------------------------------------------------------------- the lock
class RemoteLock:
    """The experiment lock on remote storage: a lock object with its holder's lease.

    Object stores offer no ``flock``, and pyarrow exposes no conditional put, so this is
    a lease, best effort: the object ``.atune-lock`` names its holder (pid, host, a
    random token, a time stamp) and is refreshed as the holder uploads (at least every
    :data:`LOCK_TTL_S`/4 while ``fit()`` runs). ``acquire`` refuses a lock that is
    fresh, unless its holder is a process of this host that no longer exists; a lock not
    refreshed for :data:`LOCK_TTL_S` (its holder crashed elsewhere) is stale and taken
    over. After writing, the object is read back: of two processes that wrote in the same
    instant, the one whose token is not there gives up. ``release`` deletes the object
    when it still holds this holder's token.

    Blocking calls: use a worker thread.
    """

    def __init__(self, storage: RemoteStorage) -> None:
        self.storage = storage
        self._token: str | None = None
        self._refreshed = 0.0
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._token is not None

    def _record(self) -> bytes:
        assert self._token is not None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": self._token,
            "ts": time.time(),
        }
        return json.dumps(record).encode() + b"\n"

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            ExperimentLockedError: another holder's lease is fresh; names its pid/host.
            StorageError: the storage cannot be read or written.
        """
        if self._token is not None:
            raise RuntimeError(f"{self.storage.uri} is already held by this RemoteLock")
        holder = _parse(self.storage.read_bytes(LOCK_FILE))
        if holder is not None and _alive(holder):
            raise self._locked(holder)
        self._token = uuid.uuid4().hex
        self.storage.write_bytes(self._record(), LOCK_FILE)
        now = _parse(self.storage.read_bytes(LOCK_FILE))
        if now is None or now.get("token") != self._token:
            self._token = None
            raise self._locked(now or {})
        self._refreshed = time.monotonic()

    def refresh(self) -> None:
        """Renew the lease when a quarter of its time has passed (blocking)."""
        with self._guard:
            if self._token is None or time.monotonic() - self._refreshed < _LOCK_REFRESH_S:
                return
            self.storage.write_bytes(self._record(), LOCK_FILE)
            self._refreshed = time.monotonic()

    def release(self) -> None:
        """Release the lock (no-op when not held); errors are ignored (the lease ends)."""
        with self._guard:
            token, self._token = self._token, None
        if token is None:
            return
        with contextlib.suppress(StorageError):
            holder = _parse(self.storage.read_bytes(LOCK_FILE))
            if holder is not None and holder.get("token") == token:
                self.storage.delete_file(LOCK_FILE)

    def _locked(self, holder: dict[str, Any]) -> ExperimentLockedError:
        pid, host = holder.get("pid"), holder.get("host")
        who = f"pid {pid} on host {host}" if pid is not None else "another process"
        return ExperimentLockedError(
            f"the experiment {self.storage.uri} is being run by {who}; one fit() at a time "
            "may run an experiment (reading its results stays allowed). Wait for it to "
            f"end, or stop it, then restore it (a lock not renewed for {LOCK_TTL_S:.0f} s "
            "is taken over)",
            path=self.storage.uri,
            pid=pid if isinstance(pid, int) else None,
            host=host if isinstance(host, str) else None,
        )


def _parse(data: bytes | None) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's holder may still be running."""
    ts = holder.get("ts")
    if not isinstance(ts, (int, float)) or time.time() - ts > LOCK_TTL_S:
        return False
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True
