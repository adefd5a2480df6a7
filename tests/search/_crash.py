"""Kill a driver subprocess mid-run (SIGKILL), for the searchers' restore tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def completed(journal: Path) -> int:
    """How many trials the journal records as completed (0 before it exists)."""
    if not journal.exists():
        return 0
    return journal.read_text().count('"trial_completed"')


def kill_after(script: str, journal: Path, trials: int) -> None:
    """Run ``script`` in a new process and SIGKILL it once ``trials`` trials completed.

    Fails the test if the process ends on its own before that.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        while completed(journal) < trials:
            if proc.poll() is not None:
                pytest.fail("the driver ended before it was killed: " + proc.stderr.read().decode())
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
