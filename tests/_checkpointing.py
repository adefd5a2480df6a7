"""Helpers for trainables that checkpoint: JSON checkpoints, and reports that checkpoint
every time and resume from the latest one."""

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


def report_json(
    metrics: dict[str, Any], data: dict[str, Any] | None, name: str = "data.json"
) -> None:
    """Report ``metrics`` with a checkpoint holding ``data`` as the JSON file ``name``.

    ``data`` None reports no checkpoint. The checkpoint is written in a temporary directory
    that is removed once ``report()`` has taken its copy, as a user's code would do.
    """
    if data is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="atune-test-ckpt-") as directory:
        with open(os.path.join(directory, name), "w") as f:
            json.dump(data, f)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def read_json_checkpoint(checkpoint: tune.Checkpoint, name: str = "data.json") -> dict[str, Any]:
    """The JSON file ``name`` of ``checkpoint`` (see :func:`report_json`)."""
    with checkpoint.as_directory() as directory, open(os.path.join(directory, name)) as f:
        data: dict[str, Any] = json.load(f)
        return data
