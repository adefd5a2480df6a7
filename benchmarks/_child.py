"""One benchmark run in a fresh process: start Ray, run one workload, write its metrics.

Usage (by ``run.py``): ``python _child.py WORKLOAD PARAMS_JSON RESULT_PATH`` with
``ATUNE_BENCH_FRAMEWORK`` set in the environment. Ray is started here, before any timing,
the same way for both frameworks; ``fit()`` alone is timed inside the workload.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Run the workload named in ``argv`` and write ``{"metrics": ...}`` to the result path.

    Args:
        argv: ``[workload, params_json, result_path]``.

    Returns:
        The process exit status (0 on success; a failing workload raises instead).
    """
    name, params_json, result_path = argv
    params = json.loads(params_json)

    import ray
    import workloads  # imports the framework under test (atune or ray.tune)

    needs_ray = name not in workloads.WITHOUT_RAY
    started = time.perf_counter()
    ray_init_s = 0.0
    if params.get("cold_ray"):
        # The framework starts Ray itself, inside the measured run (``cold_ray``).
        os.environ.setdefault("RAY_DASHBOARD_ENABLED", "0")
    elif needs_ray:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
        ray_init_s = time.perf_counter() - started
    storage = tempfile.mkdtemp(prefix=f"bench-{workloads.FRAMEWORK}-{name}-")
    try:
        metrics = workloads.run_workload(name, params, storage)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if needs_ray:
            ray.shutdown()
    if needs_ray:
        metrics["ray_init_s"] = ray_init_s
    with open(result_path, "w") as f:
        json.dump({"metrics": metrics, "pid": os.getpid()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
