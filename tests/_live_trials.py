"""The live-trial counter of the multi-node scenarios (``_cluster_scenarios.py``,
``_autoscaling_scenarios.py``): a named actor that counts the trials running at once, from
their own start and end records, and a trainable that reports until it saw a peak.

The autoscaling cluster's workers cannot import this module (the head that starts them
does not have ``tests/`` on its path), so the scenario that needs it registers it with
``ray.cloudpickle.register_pickle_by_value``: its classes and functions then travel by
value, as a script's own do.
"""

from __future__ import annotations

import time
from typing import Any

import ray

import atune as tune


class LiveTrials:
    """Counts the trials running at once; also keeps each trial's last progress record."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.progress: dict[str, tuple[int, str]] = {}

    def enter(self) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        return self.peak

    def leave(self) -> None:
        self.now -= 1

    def get_peak(self) -> int:
        return self.peak

    def report(self, trial_id: str, iteration: int, node: str) -> None:
        self.progress[trial_id] = (iteration, node)

    def get_progress(self) -> dict[str, tuple[int, str]]:
        return dict(self.progress)


LiveTrialsActor = ray.remote(num_cpus=0)(LiveTrials)
"""The counter as an actor that needs no CPU (so it fits on a 0-CPU head)."""


def node_id() -> str:
    """The id of the node this code runs on."""
    return ray.get_runtime_context().get_node_id()


def until_peak(config: dict[str, Any]) -> None:
    """Reports until the counter named ``config["counter"]`` saw ``config["peak"]`` trials at
    once, after ``config["min_reports"]`` reports at least, every ``config["interval_s"]``;
    ``config["max_reports"]`` bounds a broken run (a working one ends at the peak)."""
    live = ray.get_actor(config["counter"])
    ray.get(live.enter.remote())
    try:
        for i in range(1, config["max_reports"] + 1):
            peak = ray.get(live.get_peak.remote())
            tune.report({"i": i, "node": node_id(), "peak": peak})
            if i >= config["min_reports"] and peak >= config["peak"]:
                return
            time.sleep(config["interval_s"])
    finally:
        ray.get(live.leave.remote())
