"""Experiments on remote storage, against a real S3-compatible server (moto, over HTTP).

The in-process tests run trials on the local backend; the cluster test runs a two-node
``ray.cluster_utils.Cluster`` whose nodes share no scratch directory, kills the driver,
and restores from the storage alone in a fresh process (``_remote_scenario.py``).
Every test here is skipped, with the reason printed, when the ``remote`` extra (pyarrow)
or moto's server is not installed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _s3 import BUCKET, S3_ENV, S3Server, missing_extra, moto_s3
from atune.errors import ConfigError, ExperimentLockedError

_reason = missing_extra()
if _reason is not None:
    print(f"tests/storage/test_remote.py skipped: {_reason}", file=sys.stderr)
    pytest.skip(_reason, allow_module_level=True)

pytestmark = [pytest.mark.remote_storage]

_SCENARIO = Path(__file__).resolve().parents[1] / "_remote_scenario.py"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (a free port) with one bucket, for this module."""
    with moto_s3() as server:
        yield server


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's node-local scratch root (``ATUNE_SCRATCH_DIR``)."""
    root = tmp_path / "scratch"
    monkeypatch.setenv("ATUNE_SCRATCH_DIR", str(root))
    return root


_FAIL_AT: dict[str, int] = {}  # x -> the iteration at which that trial raises (phase one)


def _counting(config: dict[str, Any]) -> None:
    from _checkpointing import report_with_checkpoint, resume_point

    start = resume_point()
    for i in range(start + 1, 6):
        if _FAIL_AT.get(str(config["x"])) == i:
            raise RuntimeError(f"failing at {i}")
        report_with_checkpoint(i, {"i": i, "start": start})


def _run_config(s3: S3Server, name: str, **kwargs: Any) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=f"{BUCKET}/in-process",
        storage_filesystem=s3.filesystem(),
        verbose=0,
        **kwargs,
    )


def _rows(result: tune.Result) -> list[dict[str, Any]]:
    text = Path(result.path, "result.json").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_a_run_on_s3_is_restored_from_the_storage_alone(
    s3: S3Server, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial fails after two checkpoints; the local scratch is deleted; a restore with
    ``resume_errored`` continues it from its checkpoint, downloaded from the bucket, and the
    stored rows have every iteration exactly once."""
    monkeypatch.setitem(_FAIL_AT, "2", 3)
    tuner = tune.Tuner(
        _counting,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run_config(s3, "errored"),
    )
    first = tuner.fit()
    assert tuner.experiment_path == f"{BUCKET}/in-process/errored"
    assert first.experiment_path == tuner.experiment_path
    assert sorted(r.error is not None for r in first) == [False, True]
    fs = s3.filesystem()
    stored = f"{BUCKET}/in-process/errored"
    names = {
        info.path[len(stored) + 1 :]
        for info in fs.get_file_info(_selector(stored))
        if info.type.name == "File"
    }
    assert {"experiment.json", "events.jsonl"} <= names
    assert ".atune-lock" not in names  # released at the end of fit()
    assert any(re.fullmatch(r"[^/]+/checkpoint_000001/state\.json", n) for n in names)

    shutil.rmtree(scratch)  # a fresh machine: nothing but the bucket
    monkeypatch.delitem(_FAIL_AT, "2")
    assert tune.Tuner.can_restore(stored, storage_filesystem=fs)
    restored = tune.Tuner.restore(
        stored, _counting, resume_errored=True, storage_filesystem=fs
    ).fit()
    assert all(r.error is None for r in restored)

    shutil.rmtree(scratch)
    grid = tune.load_results(stored, storage_filesystem=fs)
    assert grid.experiment_path == stored
    rows = {r.config["x"]: _rows(r) for r in grid}
    assert [row["i"] for row in rows[1]] == [1, 2, 3, 4, 5]
    assert [row["i"] for row in rows[2]] == [1, 2, 3, 4, 5]  # no row twice, none lost
    assert [row["start"] for row in rows[2]] == [0, 0, 2, 2, 2]  # resumed from checkpoint 2

    # The results' checkpoints are in the bucket (the local mirror has none of them now).
    result = next(r for r in grid if r.config["x"] == 2)
    checkpoint = result.checkpoint
    assert checkpoint is not None and checkpoint.filesystem is not None
    assert checkpoint.path.startswith(f"{stored}/") and checkpoint.path.endswith(
        "/checkpoint_000004"
    )
    with checkpoint.as_directory() as local:
        assert json.loads(Path(local, "state.json").read_text()) == {"i": 5}
    assert not Path(local).exists()  # the temporary copy is gone
    checkpoint.set_metadata({"note": "kept"})
    assert pickle.loads(pickle.dumps(checkpoint)).get_metadata() == {"note": "kept"}
    assert [c.path for c, _ in result.best_checkpoints][-1] == checkpoint.path


def test_a_restored_tuner_continues_what_the_storage_holds_when_it_fits(
    s3: S3Server, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tuners restored from the same experiment; the second fits first. When the
    first fits, it continues from the storage as the second left it (downloaded again
    under the lock), not from its own older copy, which would drop the second's run."""
    monkeypatch.setitem(_FAIL_AT, "1", 3)
    tuner = tune.Tuner(
        _counting,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run_config(s3, "twice"),
    )
    tuner.fit()
    monkeypatch.delitem(_FAIL_AT, "1")
    fs, path = s3.filesystem(), tuner.experiment_path
    early = tune.Tuner.restore(path, _counting, resume_errored=True, storage_filesystem=fs)
    tune.Tuner.restore(path, _counting, resume_errored=True, storage_filesystem=fs).fit()
    assert early.fit()[0].metrics["i"] == 5
    with fs.open_input_stream(f"{path}/events.jsonl") as f:
        journal = f.read().decode()
    assert journal.count('"experiment_started","ts"') == 3  # nothing was lost
    assert journal.count('"name":"twice"') == 3  # the experiment's name, not a scratch name
    assert journal.count('"trial_started"') == 2  # the first run and the second's resume


def _selector(path: str) -> Any:
    import pyarrow.fs

    return pyarrow.fs.FileSelector(path, recursive=True)


def test_a_uri_storage_path_works_and_names_the_experiment_by_uri(
    s3: S3Server, scratch: Path
) -> None:
    """``storage_path="s3://...?endpoint_override=..."`` (credentials from the
    environment): the experiment's path is its URI, which restore and load take."""
    tuner = tune.Tuner(
        _counting,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="by-uri", storage_path=s3.uri("uris"), verbose=0),
    )
    results = tuner.fit()
    assert results.experiment_path == s3.uri("uris/by-uri")
    shutil.rmtree(scratch)
    assert tune.Tuner.can_restore(results.experiment_path)
    assert not tune.Tuner.can_restore(s3.uri("uris/none"))
    grid = tune.load_results(results.experiment_path)
    assert [row["i"] for row in _rows(grid[0])] == [1, 2, 3, 4, 5]
    # Nothing left to run: restoring finishes at once with the stored results.
    again = tune.Tuner.restore(results.experiment_path, _counting).fit()
    assert again[0].metrics["i"] == 5


def test_the_experiment_lock_lives_in_the_storage(s3: S3Server, scratch: Path) -> None:
    """While a lock object with a live holder is in the storage, ``fit()`` is refused
    with the holder named; a lock left by a process that no longer exists is taken over."""
    from atune.storage._remote import RemoteLock, open_storage

    tuner = tune.Tuner(
        _counting,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run_config(s3, "locked"),
    )
    held = RemoteLock(open_storage(tuner.experiment_path, s3.filesystem()))
    held.acquire()
    try:
        with pytest.raises(ExperimentLockedError, match=f"pid {os.getpid()}") as info:
            tuner.fit()
        assert info.value.pid == os.getpid()
    finally:
        held.release()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    record = {"pid": int(dead.stdout), "host": os.uname().nodename, "token": "x", "ts": 1e18}
    held.storage.write_bytes(json.dumps(record).encode() + b"\n", ".atune-lock")
    assert tuner.fit()[0].metrics["i"] == 5  # the dead holder's lock was stale


def test_checkpoints_retired_by_num_to_keep_leave_the_storage(s3: S3Server, scratch: Path) -> None:
    """``num_to_keep=1``: once the journal saying so is uploaded, the older checkpoints
    are deleted from the bucket too; the kept one stays."""
    tuner = tune.Tuner(
        _counting,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=_run_config(s3, "kept", checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    tuner.fit()
    fs = s3.filesystem()
    checkpoints = {
        info.base_name
        for info in fs.get_file_info(_selector(tuner.experiment_path))
        if info.type.name == "Directory" and info.base_name.startswith("checkpoint_")
    }
    assert checkpoints == {"checkpoint_000004"}


def test_a_local_file_system_object_means_the_local_path(tmp_path: Path) -> None:
    """``storage_filesystem=pyarrow.fs.LocalFileSystem()`` is local storage: written in
    place, no scratch, no upload."""
    import pyarrow.fs

    results = tune.Tuner(
        _counting,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="local",
            storage_path=str(tmp_path / "results"),
            storage_filesystem=pyarrow.fs.LocalFileSystem(),
            verbose=0,
        ),
    ).fit()
    assert results.experiment_path == str(tmp_path / "results" / "local")
    assert Path(results[0].path, "checkpoint_000004").is_dir()


def test_the_lock_lease_is_renewed_while_held(s3: S3Server) -> None:
    from atune.storage import _remote

    storage = _remote.open_storage(f"{BUCKET}/leases/one", s3.filesystem())
    lock = _remote.RemoteLock(storage)
    lock.acquire()
    try:
        first = json.loads(storage.read_bytes(".atune-lock") or b"{}")
        lock._refreshed -= _remote.LOCK_TTL_S  # as if a quarter of the lease had passed
        lock.refresh()
        renewed = json.loads(storage.read_bytes(".atune-lock") or b"{}")
        assert renewed["token"] == first["token"] and renewed["ts"] > first["ts"]
        with pytest.raises(ExperimentLockedError):
            _remote.RemoteLock(storage).acquire()  # a second holder, same process
    finally:
        lock.release()
    assert storage.read_bytes(".atune-lock") is None


def test_a_storage_uri_pyarrow_cannot_open_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("'nosuch://bucket/x'")):
        tune.Tuner(
            _counting,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path="nosuch://bucket/x", verbose=0),
        )


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_on_a_cluster_without_a_shared_disk_a_killed_run_restores_from_s3(
    s3: S3Server, tmp_path: Path
) -> None:
    """Two nodes with separate scratch directories; trials on node B upload their own
    checkpoints (the head never has them); the driver is SIGKILLed, every scratch
    directory deleted, and a fresh process restores from the bucket alone: every trial
    resumes from its third checkpoint and the stored rows hold each iteration once."""
    out = tmp_path / "report.json"
    ray_tmp = tempfile.mkdtemp(prefix="atr-", dir="/tmp")  # short: Ray's socket paths
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, **S3_ENV)
    env.pop("RAY_ADDRESS", None)
    tests_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, str(_SCENARIO), str(out), s3.endpoint, BUCKET, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.exists(), proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert "failed" not in report, report["failed"]
    assert report["first_alive"], report["first_log"]  # killed mid-run, not finished
    assert "second" in report, report["second_log"]
    second = report["second"]
    # The trials on node B checkpointed in B's scratch only: nothing shares a disk.
    b_trials = {name for name, files in report["scratch_b"].items() if "checkpoint_000001" in files}
    assert len(b_trials) == 2, report["scratch_b"]
    for name in b_trials:
        assert not any(f.startswith("checkpoint_") for f in report["scratch_head"].get(name, []))
    assert second["can_restore"] and second["errors"] == [] and not second["lock_left"]
    assert len(second["trials"]) == 3
    for rows in second["trials"]:
        assert [row["i"] for row in rows] == list(range(1, 7))
        assert [row["start"] for row in rows] == [0, 0, 0, 3, 3, 3]
    nodes = {row["node"] for rows in second["trials"] for row in rows[:3]}
    assert report["node_b"] in nodes
