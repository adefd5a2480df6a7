"""Runs atune against an autoscaling Ray cluster and writes what happened as JSON;
``tests/test_autoscaling.py`` starts the cluster's head and this script, and asserts on
the JSON.

Usage: ``python _autoscaling_scenarios.py OUT.json STORAGE_DIR``, with ``RAY_ADDRESS``
naming the head (a 0-CPU head whose autoscaler starts nodes of 2 CPUs, at most two) and
``RAY_TMPDIR`` the head's private temporary directory. ``ATUNE_AUTOSCALING`` is unset:
atune detects the autoscaler itself.

Two scenarios, in order:

1. ``grow``: four 1-CPU trials. Nothing fits the head; every trial waits for nodes, and
   the four requests are the demand the autoscaler sees. Each trial reports until the
   live-trial counter (an actor on the head, which needs no CPU) saw all four at once,
   which takes both nodes.
2. ``timeout``: with ``ATUNE_PENDING_RESOURCES_TIMEOUT_S=5``, a trial asking for 8 CPUs
   (more than two nodes of 2 CPUs ever give) fails with the timeout error, and a 1-CPU
   trial queued behind it still runs.

Each scenario's outcome (or its traceback) goes into the JSON under its name.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import ray

import _live_trials
import atune as tune
from _live_trials import LiveTrialsActor, node_id, until_peak
from atune.execution._ray import autoscaler_running, ensure_ray

# The head's workers cannot import tests/ modules: send this one's code along.
ray.cloudpickle.register_pickle_by_value(_live_trials)

# Iterations a trial waits for company at most (0.2 s each): a bound for a broken run.
_MAX_WAIT_ITERATIONS = 600
_WAIT = {"max_reports": _MAX_WAIT_ITERATIONS, "min_reports": 1, "interval_s": 0.2}


def once(config: dict[str, Any]) -> None:
    tune.report({"node": node_id()})


def _trials(results: tune.ResultGrid) -> list[dict[str, Any]]:
    return [
        {
            "config": _params(result),
            "error": None if result.error is None else str(result.error),
            "error_type": None if result.error is None else type(result.error).__name__,
            "error_attrs": None
            if result.error is None
            else {
                key: getattr(result.error, key, None)
                for key in ("request", "bundles", "timeout_s", "capacity")
            },
            "nodes": sorted({row.get("node") for row in _rows(result)}),
            "peak": result.metrics.get("peak"),
        }
        for result in results
    ]


def _params(result: tune.Result) -> dict[str, Any]:
    """The trial's config, from its ``params.json`` (a trial without results has no
    ``result.config``)."""
    return json.loads(Path(result.path, "params.json").read_text())  # type: ignore[no-any-return]


def _rows(result: tune.Result) -> list[dict[str, Any]]:
    path = Path(result.path, "result.json")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def grow(storage: str, out: dict[str, Any]) -> None:
    out["cpus_before"] = ray.cluster_resources().get("CPU", 0.0)
    live = LiveTrialsActor.options(name="live_grow").remote()  # type: ignore[attr-defined]
    results = tune.Tuner(
        until_peak,
        param_space={"counter": "live_grow", "peak": 4, **_WAIT},
        tune_config=tune.TuneConfig(num_samples=4),
        run_config=tune.RunConfig(storage_path=storage, name="grow", verbose=0),
    ).fit()
    out["trials"] = _trials(results)
    out["peak"] = ray.get(live.get_peak.remote())
    out["cpus_after"] = ray.cluster_resources().get("CPU", 0.0)


def timeout(storage: str, out: dict[str, Any]) -> None:
    os.environ["ATUNE_PENDING_RESOURCES_TIMEOUT_S"] = "5"
    results = tune.Tuner(
        tune.with_resources(once, lambda config: config["resources"]),
        param_space={"resources": tune.grid_search([{"CPU": 8}, {"CPU": 1}])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name="timeout", verbose=0),
    ).fit()
    out["trials"] = _trials(results)


def main() -> None:
    out_path, storage = sys.argv[1], sys.argv[2]
    report: dict[str, Any] = {}
    try:
        ensure_ray()  # RAY_ADDRESS: the head the test started
        report["head"] = node_id()
        # The head's autoscaler reports within seconds of its start; a driver that
        # connects to a cluster just started may see no report yet.
        deadline = time.monotonic() + 60
        while not autoscaler_running() and time.monotonic() < deadline:
            time.sleep(0.5)
        report["detected"] = autoscaler_running()
        for name, scenario in (("grow", grow), ("timeout", timeout)):
            out: dict[str, Any] = {}
            report[name] = out
            started = time.monotonic()
            try:
                scenario(storage, out)
            except Exception:
                out["failed"] = traceback.format_exc()
            out["seconds"] = round(time.monotonic() - started, 1)
    finally:
        Path(out_path).write_text(json.dumps(report, indent=1, default=str))
        ray.shutdown()


if __name__ == "__main__":
    main()
