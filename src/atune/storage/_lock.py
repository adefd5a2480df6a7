"""The experiment lock: one ``fit()`` at a time may run (and append to) an experiment.

Two processes resuming the same experiment would both append to its journal and result
files, and the experiment would hold the rows of both. So a ``fit()`` holds an exclusive
:func:`fcntl.flock` on ``<experiment>/.atune-lock`` while it runs. The file names the
holder (``{"pid": ..., "host": ...}``) so that a second ``fit()`` fails at once with an
:class:`~atune.errors.ExperimentLockedError` saying who holds it.

Semantics:

* The lock belongs to an open file description, not to a process: a second ``fit()`` of
  the *same* process on the same experiment is refused too.
* The operating system drops the lock when the holder's file is closed, which it does when
  the process exits, however it exits (``os._exit``, a signal, a crash): a stale lock
  file (from a dead holder) never blocks anyone; its content is overwritten by the next
  holder.
* Reading an experiment never takes the lock.
* ``flock`` locks are advisory and, on some network file systems, local to one machine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from atune.errors import ExperimentLockedError, StorageError
from atune.storage._layout import LOCK_FILE

__all__ = ["ExperimentLock"]

# A holder writes its name right after taking the lock; a reader that finds the file
# empty in that instant waits this long, in steps, for the name to appear.
_HOLDER_WAIT_S = 0.2
_HOLDER_STEP_S = 0.01


class ExperimentLock:
    """The exclusive lock on one experiment directory (blocking calls: use a thread).

    Args:
        experiment_path: The experiment directory; it must exist.
    """

    def __init__(self, experiment_path: str | os.PathLike[str]) -> None:
        self.experiment_path = Path(experiment_path)
        self.path = self.experiment_path / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, and record this process as its holder.

        Raises:
            ExperimentLockedError: Someone else holds it; the message names their pid/host.
            StorageError: The lock file cannot be created or written.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this ExperimentLock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(
                f"cannot create the experiment lock {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StorageError(
                        f"cannot lock the experiment {self.experiment_path}: {exc.strerror}"
                    ) from exc
                pid, host = _read_holder(fd)
            finally:
                os.close(fd)
            holder = f"pid {pid} on host {host}" if pid is not None else "an unknown process"
            raise ExperimentLockedError(
                f"the experiment {self.experiment_path} is being run by {holder}; one fit() "
                "at a time may run an experiment (reading its results stays allowed). Wait "
                "for it to end, or stop it, then restore it",
                path=str(self.experiment_path),
                pid=pid,
                host=host,
            ) from None
        try:
            holder_record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_record.encode() + b"\n", 0)
        except OSError as exc:
            os.close(fd)  # closing drops the lock
            raise StorageError(f"cannot write the experiment lock {self.path}: {exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Release the lock (no-op when not held); the holder record is cleared first."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a full disk must not keep the lock: closing releases it
        os.close(fd)


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """The holder's pid and host from the lock file (None, None when unreadable)."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            data = os.pread(fd, 4096, 0)
        except OSError:
            return None, None
        if data.endswith(b"\n"):
            try:
                record = json.loads(data)
                return int(record["pid"]), str(record["host"])
            except (ValueError, KeyError, TypeError):
                return None, None
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(_HOLDER_STEP_S)
