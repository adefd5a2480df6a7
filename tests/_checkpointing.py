"""Helpers for trainables that checkpoint every report and resume from the latest one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import atune as tune


def resume_point() -> int:
    """The iteration stored in the checkpoint this trial resumes from (0 on a fresh start)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with open(os.path.join(checkpoint.path, "state.json")) as f:
        return int(json.load(f)["i"])


def report_with_checkpoint(i: int, metrics: dict[str, Any], *, marker: str | None = None) -> None:
    """Report ``metrics`` with a checkpoint holding ``i`` (and an empty ``marker`` file)."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"i": i}, f)
        if marker is not None:
            Path(d, marker).touch()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
