"""Embedding costs: the first ``await tuner.fit()`` of a process loads its machinery off the loop.

The modules ``fit()`` needs beyond the ``Tuner`` (the controller, the driver, the backends,
anyio, and Ray itself) load in a worker thread, so the caller's event loop keeps serving
meanwhile. Which thread imports a module is read with an audit hook on ``import`` in a
fresh interpreter, so the test does not depend on the machine's speed; the stall itself is
measured in ``benchmarks/`` (``first_fit_loop_stall``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Imported by fit() in a fresh process, and heavy enough to stall a loop for tens of
# milliseconds or more each.
MACHINERY = ("anyio", "atune._fit", "atune._controller", "atune.execution._ray", "ray")
# Packages whose first import on the loop stalls it too: structlog loads rich and pygments
# (80 ms here), so a log call on the loop must not be the first to import it.
TOP_LEVEL = ("anyio", "ray", "structlog", "rich", "pygments")

SCRIPT = """
import asyncio, json, sys, threading, time
import atune as tune

def trainable(config):
    for i in range(2):
        tune.report({"score": i})

async def main():
    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend=BACKEND),
        run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
    )
    on_loop = []

    def hook(event, args):
        if event == "import" and threading.current_thread() is threading.main_thread():
            if args[0].split(".")[0] in TOP_LEVEL or args[0].startswith(MACHINERY):
                on_loop.append(args[0])

    sys.addaudithook(hook)
    grid = await tuner.fit()
    loaded = [name for name in MACHINERY if name in sys.modules]
    print(json.dumps({"on_loop": on_loop, "errors": grid.num_errors, "loaded": loaded}))

asyncio.run(main())
"""


def _first_fit(backend: str, storage: Path) -> dict[str, object]:
    code = (
        f"BACKEND = {backend!r}\nSTORAGE = {str(storage)!r}\nMACHINERY = {MACHINERY!r}\n"
        f"TOP_LEVEL = {TOP_LEVEL!r}\n" + SCRIPT
    )
    env = {"RAY_DASHBOARD_ENABLED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, **env},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return report


def test_the_first_local_fit_loads_its_machinery_off_the_event_loop(tmp_path: Path) -> None:
    report = _first_fit("local", tmp_path)
    assert report["errors"] == 0
    assert "atune._fit" in report["loaded"]  # so the hook had something to see
    assert report["on_loop"] == [], report["on_loop"]


@pytest.mark.slow
def test_the_first_ray_fit_imports_and_starts_ray_off_the_event_loop(tmp_path: Path) -> None:
    # A fresh process with no Ray: fit() imports Ray and starts a local instance itself.
    report = _first_fit("ray", tmp_path)
    assert report["errors"] == 0
    assert {"ray", "atune.execution._ray"} <= set(report["loaded"])  # type: ignore[arg-type]
    assert report["on_loop"] == [], report["on_loop"]
