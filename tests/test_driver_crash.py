"""SIGKILL the driver mid-run, then ``Tuner.restore`` brings every trial home."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.storage._layout import JOURNAL_FILE, is_staging_name

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TARGET = 25
# One id per worker process: every checkpoint records which attempt wrote it.
_ATTEMPT = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def crash_trainable(config: dict[str, Any]) -> None:
    for i in range(resume_point() + 1, TARGET + 1):
        time.sleep(0.05)
        report_with_checkpoint(i, {"i": i}, marker=f"attempt-{_ATTEMPT}")


DRIVER = """
import sys
sys.path.insert(0, {tests_dir!r})
import atune as tune
from test_driver_crash import crash_trainable

tune.Tuner(
    crash_trainable,
    param_space={{"x": tune.grid_search([1, 2])}},
    run_config=tune.RunConfig(
        name="crash",
        storage_path={storage!r},
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    ),
).fit()
"""


def _results_per_trial(journal: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if journal.exists():
        for line in journal.read_text().splitlines():
            if '"result_reported"' in line:
                counts[json.loads(line)["trial_id"]] += 1
    return counts


def test_sigkill_of_the_driver_then_restore(storage: str) -> None:
    import ray

    script = DRIVER.format(tests_dir=str(Path(__file__).parent), storage=storage)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = Path(storage, "driver.log").open("w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    journal = Path(storage, "crash", JOURNAL_FILE)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            counts = _results_per_trial(journal)
            if len(counts) == 2 and min(counts.values()) >= 5:
                break
            if proc.poll() is not None:
                pytest.fail(
                    "the driver ended before it could be killed:\n"
                    + Path(storage, "driver.log").read_text()[-3000:]
                )
            time.sleep(0.1)
        else:
            pytest.fail("the driver made no progress")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert max(_results_per_trial(journal).values()) < TARGET  # it really was mid-run

    results = tune.Tuner.restore(str(Path(storage, "crash")), crash_trainable).fit()
    assert len(results) == 2 and results.num_errors == 0, [str(e) for e in results.errors]
    for result in results:
        iterations = [int(i) for i in result.metrics_dataframe["training_iteration"]]
        assert result.metrics["training_iteration"] == TARGET
        assert iterations.count(1) == 1  # no trial restarted from scratch
        assert iterations[-1] == TARGET
        checkpoints = sorted(Path(result.path).glob("checkpoint_*"))
        assert checkpoints, "the latest checkpoint is kept"
        for checkpoint in checkpoints:
            attempts = list(checkpoint.glob("attempt-*"))
            assert len(attempts) == 1, f"{checkpoint} holds files of {len(attempts)} attempts"
        assert not [p for p in Path(result.path).iterdir() if is_staging_name(p.name)]
