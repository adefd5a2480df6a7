"""The experiment lock: one ``fit()`` at a time runs an experiment; reading stays allowed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.errors import ExperimentLockedError, StorageError
from atune.storage._layout import JOURNAL_FILE, LOCK_FILE

ITERATIONS = 20


def slow_trainable(config: dict[str, Any]) -> None:
    """Checkpoints every iteration, resumes from its checkpoint, slow enough to overlap."""
    for i in range(resume_point() + 1, ITERATIONS + 1):
        time.sleep(0.05)
        report_with_checkpoint(i, {"i": i})


RUN_IN_ANOTHER_PROCESS = """
import sys
sys.path.insert(0, {tests_dir!r})
sys.path.insert(0, {here!r})
import atune as tune
from test_lock import slow_trainable

tune.Tuner.restore({path!r}, slow_trainable).fit()
"""

HOLD_IN_ANOTHER_PROCESS = """
import sys
from atune.storage._lock import ExperimentLock

ExperimentLock({path!r}).acquire()
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes our stdin, or kills us
"""


def _new_experiment(storage: str) -> Path:
    """A claimed experiment that no one has run yet (so a restore runs it)."""
    tuner = tune.Tuner(
        slow_trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0),
    )
    return Path(tuner.experiment_path)


def _journal_count(path: Path, kind: str) -> int:
    journal = path / JOURNAL_FILE
    return journal.read_text().count(f'"{kind}"') if journal.exists() else 0


def _rows(result: tune.Result) -> list[int]:
    return [int(i) for i in result.metrics_dataframe["training_iteration"]]


def test_a_second_process_cannot_run_an_experiment_that_one_runs(storage: str) -> None:
    path = _new_experiment(storage)
    script = RUN_IN_ANOTHER_PROCESS.format(
        tests_dir=str(Path(__file__).parents[1]), here=str(Path(__file__).parent), path=str(path)
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while _journal_count(path, "result_reported") < 4:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the other process reported nothing"
            time.sleep(0.05)
        # Reading is allowed while it runs ...
        assert tune.Tuner.can_restore(path)
        tuner = tune.Tuner.restore(str(path), slow_trainable)
        # ... running is not: at once, naming the holder.
        with pytest.raises(ExperimentLockedError) as info:
            tuner.fit()
        assert info.value.pid == proc.pid and info.value.host == socket.gethostname()
        assert f"pid {proc.pid}" in str(info.value) and str(path) in str(info.value)
        assert isinstance(info.value, StorageError)
        assert proc.poll() is None  # refused before it disturbed the other run
    finally:
        proc.kill()  # dies holding the lock: the OS releases it
        proc.wait()
    # The dead holder's lock is gone: the experiment can be resumed to its end.
    results = tune.Tuner.restore(str(path), slow_trainable).fit()
    assert results.num_errors == 0
    assert all(r.metrics["training_iteration"] == ITERATIONS for r in results)


def test_the_holder_is_named_and_a_dead_holder_blocks_no_one(tmp_path: Path) -> None:
    from atune.storage._lock import ExperimentLock

    script = HOLD_IN_ANOTHER_PROCESS.format(path=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        lock = ExperimentLock(tmp_path)
        with pytest.raises(ExperimentLockedError, match=f"pid {proc.pid} on host") as info:
            lock.acquire()
        assert info.value.pid == proc.pid and info.value.path == str(tmp_path)
        assert not lock.held
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock.acquire()  # the OS dropped the dead holder's lock; its record is replaced
    try:
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record == {"pid": os.getpid(), "host": socket.gethostname()}
    finally:
        lock.release()


def test_the_lock_is_per_fit_not_per_process(tmp_path: Path) -> None:
    from atune.storage._lock import ExperimentLock

    first, second = ExperimentLock(tmp_path), ExperimentLock(tmp_path)
    first.acquire()
    with pytest.raises(ExperimentLockedError, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


async def test_two_concurrent_resumes_in_one_process_run_it_once(storage: str) -> None:
    path = _new_experiment(storage)
    outcomes: list[Any] = []

    async def resume() -> None:
        try:
            outcomes.append(await tune.Tuner.restore(str(path), slow_trainable).fit())
        except ExperimentLockedError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(resume)
        tg.start_soon(resume)
    errors = [o for o in outcomes if isinstance(o, ExperimentLockedError)]
    grids = [o for o in outcomes if not isinstance(o, ExperimentLockedError)]
    assert len(errors) == 1 and len(grids) == 1
    assert errors[0].pid == os.getpid()
    assert all(_rows(r) == list(range(1, ITERATIONS + 1)) for r in grids[0])
    assert _journal_count(path, "experiment_started") == 1


class _Boom(tune.Callback):
    def on_trial_result(self, **info: Any) -> None:
        raise RuntimeError("callback failed")


async def test_the_lock_is_released_however_fit_ends(storage: str) -> None:
    from atune.storage._lock import ExperimentLock

    path = _new_experiment(storage)
    # cancelled
    with anyio.move_on_after(0.5):
        await tune.Tuner.restore(str(path), slow_trainable).fit()
    lock = ExperimentLock(path)
    lock.acquire()
    lock.release()
    # failed
    tuner = tune.Tuner(
        slow_trainable,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="boom", storage_path=storage, callbacks=[_Boom()]),
    )
    with pytest.raises(tune.TuneError, match="callback failed"):
        await tuner.fit()
    lock = ExperimentLock(tuner.experiment_path)
    lock.acquire()
    lock.release()
    # completed: and the next resume of the cancelled run finishes it
    results = await tune.Tuner.restore(str(path), slow_trainable).fit()
    assert results.num_errors == 0
    lock = ExperimentLock(path)
    lock.acquire()
    lock.release()
