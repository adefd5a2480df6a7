"""An experiment on S3 (a moto server) on a two-node cluster, killed, then restored from
the storage alone; ``tests/storage/test_remote.py`` runs it in a subprocess.

Usage: ``python _remote_scenario.py OUT.json ENDPOINT BUCKET WORKDIR``. The caller sets
``RAY_TMPDIR`` (a private one) and the S3 credentials. Steps:

1. A ``ray.cluster_utils.Cluster``: a 1-CPU head and a 2-CPU node ``B`` whose raylet (and
   so every trial it hosts) has a scratch directory of its own (``ATUNE_SCRATCH_DIR``):
   no disk is shared between ``B`` and the head, as between two machines.
2. ``first``: a driver process runs three trials (1 CPU each, so two run on ``B``) on
   ``s3://BUCKET/runs``; each checkpoints every iteration and waits at iteration 4 on a
   gate. Once the journal *in the storage* records the third checkpoint of every trial,
   the driver is killed (SIGKILL: nothing gets flushed or released).
3. Every scratch directory is deleted (the head's, ``B``'s).
4. ``second``: a fresh driver process with a new scratch directory restores the
   experiment from the storage (through ``storage_filesystem=``), opens the gate, and
   runs it to the end; then reads the results back with ``load_results`` (storage only).

What each step saw goes into OUT.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point

NAMESPACE = "atune-remote"
ITERATIONS = 6
HOLD_AT = 4  # phase one's trials wait before this iteration
_WAIT_S = 120


@ray.remote(num_cpus=0)
class Gate:
    """Open or closed; trials past ``HOLD_AT`` wait for it to open."""

    def __init__(self) -> None:
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def is_open(self) -> bool:
        return self.opened


def train(config: dict[str, Any]) -> None:
    gate = ray.get_actor("gate", namespace=NAMESPACE)
    start = resume_point()
    node = ray.get_runtime_context().get_node_id()
    for i in range(start + 1, ITERATIONS + 1):
        if i >= HOLD_AT:
            while not ray.get(gate.is_open.remote()):
                time.sleep(0.1)
        report_with_checkpoint(i, {"i": i, "start": start, "node": node})


def _s3(endpoint: str) -> Any:
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1")


def _uri(endpoint: str, bucket: str) -> str:
    return f"s3://{bucket}/runs?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def first(address: str, endpoint: str, bucket: str) -> None:
    """Phase one (its own process): fit until killed."""
    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
    tune.Tuner(
        train,
        param_space={"x": tune.grid_search([1, 2, 3])},
        run_config=tune.RunConfig(name="exp", storage_path=_uri(endpoint, bucket), verbose=0),
    ).fit()


def second(address: str, endpoint: str, bucket: str, out_path: str) -> None:
    """Phase two (a fresh process): restore from the storage alone, finish, read back."""
    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
    fs = _s3(endpoint)
    path = f"{bucket}/runs/exp"
    out: dict[str, Any] = {"can_restore": tune.Tuner.can_restore(path, storage_filesystem=fs)}
    ray.get(ray.get_actor("gate", namespace=NAMESPACE).open.remote())
    tuner = tune.Tuner.restore(path, train, storage_filesystem=fs)
    results = tuner.fit()
    out["errors"] = [str(r.error) for r in results if r.error is not None]
    stored = tune.load_results(path, storage_filesystem=fs)
    out["experiment_path"] = stored.experiment_path
    out["trials"] = [
        [json.loads(line) for line in Path(r.path, "result.json").read_text().splitlines()]
        for r in stored
    ]
    out["lock_left"] = fs.get_file_info(f"{path}/.atune-lock").type != _not_found()
    Path(out_path).write_text(json.dumps(out))


def _not_found() -> Any:
    import pyarrow.fs

    return pyarrow.fs.FileType.NotFound


def _journal(fs: Any, path: str) -> list[dict[str, Any]]:
    try:
        with fs.open_input_stream(path) as f:
            data = f.read().decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.splitlines() if line.endswith("}")]


def _listing(root: Path) -> dict[str, list[str]]:
    """Each trial directory of each run under a scratch root, with what it holds."""
    out: dict[str, list[str]] = {}
    for trial_dir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        out[trial_dir.name] = sorted(p.name for p in trial_dir.iterdir())
    return out


def _driver(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def main() -> None:
    out_path, endpoint, bucket, workdir = sys.argv[1:5]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(workdir)
    head_scratch, b_scratch, fresh_scratch = (work / n for n in ("head", "b", "fresh"))
    os.environ["ATUNE_SCRATCH_DIR"] = str(head_scratch)  # the head's raylet inherits it
    report: dict[str, Any] = {}
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        node_b = cluster.add_node(num_cpus=2, env_vars={"ATUNE_SCRATCH_DIR": str(b_scratch)})
        report["node_b"] = node_b.node_id
        ray.init(address=cluster.address, namespace=NAMESPACE, logging_level="ERROR")
        gate = Gate.options(name="gate").remote()  # type: ignore[attr-defined]
        ray.get(gate.is_open.remote())
        env = dict(os.environ)
        fs = _s3(endpoint)
        journal = f"{bucket}/runs/exp/events.jsonl"
        driver = _driver(["first", cluster.address, endpoint, bucket], env)
        deadline = time.monotonic() + _WAIT_S
        while True:  # until the storage's journal holds every trial's third checkpoint
            events = _journal(fs, journal)
            third = {
                e["trial_id"]
                for e in events
                if e["type"] == "checkpoint_saved" and e["training_iteration"] == HOLD_AT - 1
            }
            if len(third) == 3 or driver.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report["first_alive"] = driver.poll() is None
        driver.kill()
        log, _ = driver.communicate()
        report["first_log"] = log[-3000:]
        report["first_journal"] = [
            {k: e.get(k) for k in ("type", "trial_id", "training_iteration")} for e in events
        ]
        report["scratch_head"] = _listing(head_scratch)
        report["scratch_b"] = _listing(b_scratch)
        shutil.rmtree(head_scratch, ignore_errors=True)
        shutil.rmtree(b_scratch, ignore_errors=True)
        env["ATUNE_SCRATCH_DIR"] = str(fresh_scratch)
        second_out = work / "second.json"
        driver = _driver(["second", cluster.address, endpoint, bucket, str(second_out)], env)
        try:
            log, _ = driver.communicate(timeout=_WAIT_S)
        except subprocess.TimeoutExpired:
            driver.kill()
            log, _ = driver.communicate()
        report["second_log"] = log[-3000:]
        if second_out.exists():
            report["second"] = json.loads(second_out.read_text())
    except Exception:
        report["failed"] = traceback.format_exc()
    finally:
        Path(out_path).write_text(json.dumps(report, indent=1))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "first":
        first(*sys.argv[2:5])
    elif sys.argv[1] == "second":
        second(*sys.argv[2:6])
    else:
        main()
