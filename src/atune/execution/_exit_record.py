"""Why a trial's worker process died: recorded in the worker, read back by the driver.

When a Ray actor's process dies, Ray often knows only that its connection closed, and its
message then lists common causes (the OOM killer, ``ray stop --force``, a segfault): a
guess. This module lets atune name the real cause instead.

In the worker (a Ray actor process, never the driver), :func:`install` sets up, once per
process, three ways of writing down a death before it happens:

* ``os._exit(n)`` is wrapped so that it first writes ``exited with code n (os._exit)``.
* :mod:`faulthandler` writes fatal signals (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) and
  the Python stack of every thread to :data:`FAULT_FILE`.
* Catchable terminating signals (SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, ...) are caught by
  :func:`faulthandler.register` into a pipe; a watcher thread writes ``received SIGHUP``,
  puts the previous handler back and raises the signal again, so the process still dies
  of it: by the default action, or for SIGTERM by Ray's own handler, which exits the
  worker. ``signal.signal`` cannot be used: it works only on the main thread, and an async
  Ray actor runs everything on another. Other signals with a Python handler are left
  alone: SIGINT raises ``KeyboardInterrupt``, which a Ray worker survives.

``sys.exit(n)`` in user code is not a death: it is an exception that the trainable host
catches and reports like any other.

Records live in the trial directory, which the driver can read (same machine or shared
storage): :func:`watch` points them at the current trial (on ``start``, and on ``reset``,
since a reused actor changes trial: the open fault file is renamed into the new trial's
directory, so a trial switch costs no new file) and :func:`unwatch` removes them when the
actor's work for a trial ends normally. After a death, the driver calls :func:`collect` (blocking file
I/O: run it in a thread), which reads and removes them, and :func:`describe_death` turns
the records and Ray's report into the message. Only the first record after :func:`watch`
is kept: it is the cause, anything later is a consequence.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import select
import signal
import sys
import threading
from typing import BinaryIO, NoReturn

__all__ = [
    "EXIT_FILE",
    "FAULT_FILE",
    "collect",
    "describe_death",
    "install",
    "unwatch",
    "watch",
]

EXIT_FILE = ".worker_exit"
"""Name of the record of an ``os._exit`` or a caught signal, in the trial directory."""

FAULT_FILE = ".worker_fault"
"""Name of :mod:`faulthandler`'s record of a fatal signal, in the trial directory."""

_WATCHED_SIGNALS = (
    "SIGTERM",
    "SIGINT",
    "SIGHUP",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGXCPU",
)
_RAY_GUESS = "Some common causes"


class _State:
    """The process's recording state (one per worker process)."""

    installed = False
    exit_path = ""
    fault_path = ""
    fault_file: BinaryIO | None = None


_state = _State()
_real_exit = os._exit


# ---------------------------------------------------------------------- worker side
def install() -> None:
    """Set up death recording in this worker process (idempotent).

    Call it only in a process that atune owns (a Ray actor): it wraps ``os._exit`` and
    takes over the default action of terminating signals for the whole process. Nothing
    is written until :func:`watch` names a trial directory.
    """
    if _state.installed:
        return
    _state.installed = True
    os._exit = _recording_exit
    pipes: dict[int, signal.Signals] = {}
    for name in _WATCHED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        handler = signal.getsignal(signum)
        exits = handler is signal.SIG_DFL or (name == "SIGTERM" and callable(handler))
        if not exits:
            continue
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # a full pipe must never block a signal handler
        faulthandler.register(signum, file=write_fd, all_threads=False, chain=False)
        pipes[read_fd] = signal.Signals(signum)
    if pipes:
        threading.Thread(
            target=_watch_signals, args=(pipes,), name="atune-signal-watch", daemon=True
        ).start()


def watch(trial_dir: str | None) -> None:
    """Record deaths into ``trial_dir`` from now on (blocking: file operations).

    A previous trial's records go away (that trial ended normally): when one is being
    watched, its open fault file is moved into ``trial_dir`` (one rename, while faulthandler
    keeps writing to it), otherwise a new one is opened. An empty or absent ``trial_dir``
    turns recording off.
    """
    if not trial_dir:
        unwatch()
        return
    exit_path = os.path.join(trial_dir, EXIT_FILE)
    fault_path = os.path.join(trial_dir, FAULT_FILE)
    _remove(exit_path)  # left by an earlier attempt whose death was never collected
    if _state.fault_file is not None and _state.fault_path != fault_path:
        try:
            os.rename(_state.fault_path, fault_path)
        except OSError:  # another file system, a directory gone: open a new file instead
            pass
        else:
            _state.fault_path, _state.exit_path = fault_path, exit_path
            return
    unwatch()
    os.makedirs(trial_dir, exist_ok=True)
    fault_file = open(fault_path, "wb", buffering=0)  # noqa: SIM115 (held until unwatch)
    faulthandler.enable(file=fault_file, all_threads=True)
    _state.fault_file, _state.fault_path, _state.exit_path = fault_file, fault_path, exit_path


def unwatch() -> None:
    """Stop recording and remove this trial's records: its work ended without a death."""
    exit_path, fault_path, fault_file = _state.exit_path, _state.fault_path, _state.fault_file
    _state.exit_path = _state.fault_path = ""
    _state.fault_file = None
    if fault_file is not None:
        try:
            faulthandler.enable(file=sys.stderr, all_threads=False)  # Ray's own setting
        except (AttributeError, ValueError, OSError):  # stderr without a file descriptor
            faulthandler.disable()
        fault_file.close()
    for path in (exit_path, fault_path):
        if path:
            _remove(path)


def _record(text: str) -> None:
    """Write the first record of a death; later ones are consequences and are dropped."""
    path = _state.exit_path
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return
    try:
        os.write(fd, text.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def _recording_exit(status: int) -> NoReturn:
    _record(f"exited with code {status} (os._exit)")
    _real_exit(status)


def _watch_signals(pipes: dict[int, signal.Signals]) -> None:
    while True:
        ready, _, _ = select.select(list(pipes), [], [])
        for fd in ready:
            os.read(fd, 1 << 16)
            signum = pipes[fd]
            _record(f"received {signum.name}")
            faulthandler.unregister(signum)  # back to the previous handler
            signal.raise_signal(signum)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# ---------------------------------------------------------------------- driver side
def collect(trial_dir: str | None) -> tuple[str, str]:
    """Read and remove the records of a death in ``trial_dir`` (blocking file I/O).

    Returns:
        The exit record (``"exited with code 3 (os._exit)"``, ``"received SIGHUP"``) and
        faulthandler's report; each is ``""`` when nothing was recorded. The files are
        removed, so a retry of the trial starts clean.
    """
    if not trial_dir:
        return "", ""
    texts = []
    for name in (EXIT_FILE, FAULT_FILE):
        path = os.path.join(trial_dir, name)
        try:
            with open(path, "rb") as f:
                texts.append(f.read().decode(errors="replace").strip())
            os.remove(path)
        except OSError:
            texts.append("")
    return texts[0], texts[1]


def describe_death(
    ray_report: str, *, exit_record: str = "", fault_record: str = "", preempted: bool = False
) -> str:
    """The cause of a worker's death, in words, without guessing.

    In order of preference: the node was lost or preempted (as Ray reports it); a crash
    recorded by faulthandler; an exit or signal recorded in the worker; a cause Ray states
    itself (an exit code, SIGTERM, ``ray.kill``, Ray's memory monitor); and when nothing
    was recorded, the inference by elimination that the worker was killed by SIGKILL or
    its node was lost, said to be one.

    Args:
        ray_report: ``str()`` of Ray's ``RayActorError``.
        exit_record: The worker's exit record (see :func:`collect`).
        fault_record: faulthandler's report (see :func:`collect`).
        preempted: Ray's flag that the actor's node was preempted.

    Returns:
        A phrase such as ``"the worker exited with code 3 (os._exit)"``.
    """
    ray_lines = [line.strip() for line in ray_report.splitlines() if line.strip()]
    node_lines = [line for line in ray_lines if "node has died" in line or "preempted" in line]
    if preempted or node_lines:
        what = "was preempted" if preempted else "died"
        detail = f" (Ray: {' '.join(node_lines)})" if node_lines else ""
        return f"the worker's node {what}{detail}"
    if fault_record:
        return f"the worker crashed: {fault_record.splitlines()[0].strip()}"
    if exit_record:
        return f"the worker {exit_record.splitlines()[0].strip()}"
    stated = _ray_stated_cause(ray_lines)
    if stated:
        return stated
    return (
        "the worker was killed by SIGKILL (the one signal a process cannot observe) or its "
        "node was lost: inferred by elimination, since the worker recorded no exit, "
        "catchable signal or crash"
    )


def _ray_stated_cause(ray_lines: list[str]) -> str:
    """The cause Ray states as a fact, or "" when Ray only lists possible causes."""
    text = " ".join(ray_lines)
    if not text or _RAY_GUESS in text:
        return ""
    detail = text.split("Worker exit detail:", 1)[-1].strip()
    if "SIGTERM" in detail:
        return "the worker received SIGTERM"
    code = re.search(r"exit code (-?\d+)", detail)
    if code:
        return f"the worker exited with code {code.group(1)}"
    if "creation task" in text:  # __init__ raised: Ray's message holds the error
        return f"the worker could not be created: {ray_lines[0]}"
    return f"Ray reports: {ray_lines[-1]}"
