"""The trainables the service can run, by name (``POST /experiments {"trainable": ...}``).

A request names one of :data:`TRAINABLES`; no code is ever imported from a request. This
module has no web dependencies: Ray's workers import it to run the trials (the service
puts this directory on their ``PYTHONPATH`` when it starts Ray itself).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import atune as tune

__all__ = ["TRAINABLES", "quadratic", "running_trials"]


def quadratic(config: dict[str, Any], activity_dir: str | None = None) -> None:
    """Minimise ``(x - 3)**2`` over ``config["steps"]`` steps, with a checkpoint every 5.

    Each step sleeps ``config["step_seconds"]`` (the "training") and reports ``loss``,
    which falls towards ``(x - 3)**2`` as the steps go on. A resumed trial continues
    from its latest checkpoint.

    Args:
        config: ``x`` (the hyperparameter), ``steps`` and ``step_seconds``.
        activity_dir: When given (the service's ``ATUNE_SERVICE_ACTIVITY_DIR``), a file
            named ``<pid>-<random>`` marks this trial as running in that directory while
            the function runs, and each result's ``concurrent`` counts the trials running
            (across every experiment of the service) when this one started: a record of
            the cluster's use, made by the trials themselves. A cancelled experiment
            kills its trials' processes, which leave their files behind: a file counts
            only while its process lives (:func:`running_trials`).
    """
    marker = None
    concurrent = 0
    if activity_dir is not None:
        marker = os.path.join(activity_dir, f"{os.getpid()}-{uuid.uuid4().hex}")
        open(marker, "x").close()
        concurrent = len(running_trials(activity_dir))
    try:
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with open(os.path.join(checkpoint.path, "state.json")) as f:
                start = json.load(f)["step"]
        for step in range(start + 1, config["steps"] + 1):
            time.sleep(config["step_seconds"])
            metrics = {
                "loss": (config["x"] - 3.0) ** 2 + 1.0 / step,
                "step": step,
                "concurrent": concurrent,
            }
            if step % 5 == 0:
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "state.json"), "w") as f:
                        json.dump({"step": step}, f)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report(metrics)
    finally:
        if marker is not None:
            os.remove(marker)


def running_trials(activity_dir: str) -> list[str]:
    """The files in ``activity_dir`` of trials whose process is alive."""
    return [name for name in os.listdir(activity_dir) if _alive(int(name.split("-")[0]))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


TRAINABLES: dict[str, Callable[..., None]] = {"quadratic": quadratic}
"""The trainables a request may name."""
