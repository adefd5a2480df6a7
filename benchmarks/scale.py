"""Restore and ``load_results`` at scale: the 10,000-trial experiment of issue 13.

Builds an experiment of ``--trials`` finished trials that report ``--results`` results
each (a function trainable on the local backend), then times, each in a fresh process
with atune's modules already imported:

* ``restore``: ``Tuner.restore(path, trainable).fit()`` of the finished experiment (it
  reads the journal's snapshot and tail, replays them, checks the trial directories and
  finds nothing left to run);
* ``load``: ``atune.load_results(path)``;
* ``load_full``: ``atune.load_results`` with the snapshot moved aside (every event of
  the journal decoded and replayed, as before the snapshot existed); the snapshot is put
  back afterwards;
* ``restore_full``: the restore with the snapshot moved aside: every event replayed, and
  the run's end writes a new snapshot (a full replay more); the old one is put back.

CPU time is the process's user + system time (``resource.getrusage``, every thread;
waited-for child processes added); wall time also counts waiting for a core, so it
depends on the machine's load. Run it on a quiet machine::

    python benchmarks/scale.py build --dir /tmp/atune-scale            # ~2 minutes
    python benchmarks/scale.py measure --dir /tmp/atune-scale --reps 3
    python benchmarks/scale.py all --dir /tmp/atune-scale             # both

Each restore appends the few events of a run with nothing to do (the snapshot is not
rewritten for so short a tail), so repeated measurements read nearly the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NAME = "exp10k"
WHAT = ("restore", "load", "load_full", "restore_full")

__all__ = ["main", "trainable"]


def trainable(config: dict[str, Any]) -> None:
    """Reports ``config["results"]`` results."""
    import atune

    for i in range(config["results"]):
        atune.report({"loss": config["x"] * i, "i": i})


def build(directory: Path, trials: int, results: int) -> Path:
    """Run the experiment into ``directory/exp10k`` (replacing nothing: it must not exist)."""
    import atune

    named = _named()
    experiment = directory / NAME
    if experiment.exists():
        raise SystemExit(f"{experiment} exists: remove it or measure it")
    start = time.perf_counter()
    grid = atune.Tuner(
        named,
        param_space={"x": atune.uniform(0, 1), "results": results},
        tune_config=atune.TuneConfig(backend="local", num_samples=trials),
        run_config=atune.RunConfig(storage_path=str(directory), name=NAME, verbose=0),
    ).fit()
    assert len(grid) == trials and grid.num_errors == 0, (len(grid), grid.num_errors)
    print(f"built {experiment} in {time.perf_counter() - start:.0f} s", flush=True)
    return experiment


def _named() -> Any:
    """:func:`trainable` imported as ``scale.trainable`` (local workers import it so)."""
    sys.path.insert(0, str(HERE))
    import scale

    return scale.trainable


def _usage() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(what: str, experiment: Path) -> dict[str, Any]:
    """Time one ``what`` in this process, with atune's modules imported first."""
    import atune
    import atune._controller._snapshot
    import atune._fit
    import atune._load
    from atune.storage._layout import SNAPSHOT_FILE

    named = _named()
    aside = experiment.parent / f"{SNAPSHOT_FILE}.aside"
    if what.endswith("_full"):
        os.replace(experiment / SNAPSHOT_FILE, aside)
    try:
        cpu, wall = _usage(), time.perf_counter()
        if what.startswith("restore"):
            grid = atune.Tuner.restore(str(experiment), named).fit()
        else:
            grid = atune.load_results(experiment)
        cpu, wall = _usage() - cpu, time.perf_counter() - wall
    finally:
        if what.endswith("_full"):
            os.replace(aside, experiment / SNAPSHOT_FILE)
    return {"what": what, "cpu_s": cpu, "wall_s": wall, "trials": len(grid)}


def measure(experiment: Path, reps: int, whats: list[str]) -> list[dict[str, Any]]:
    """Run each measurement ``reps`` times, each in a fresh process; print a summary."""
    runs = []
    for _ in range(reps):
        for what in whats:
            proc = subprocess.run(
                [sys.executable, __file__, "_child", what, str(experiment)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(run), flush=True)
            runs.append(run)
    print(f"load average: {os.getloadavg()[0]:.1f} (1 min)")
    for what in whats:
        cpu = [r["cpu_s"] for r in runs if r["what"] == what]
        wall = [r["wall_s"] for r in runs if r["what"] == what]
        print(
            f"{what:10s} CPU median {statistics.median(cpu):.2f} s "
            f"(min {min(cpu):.2f}, max {max(cpu):.2f}); "
            f"wall median {statistics.median(wall):.2f} s (min {min(wall):.2f}, max {max(wall):.2f})"
        )
    return runs


def main() -> None:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "measure", "all", "_child"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/atune-scale"))
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--what", default=",".join(WHAT), help="comma-separated: " + ",".join(WHAT))
    ns = parser.parse_args()
    # Processes started from here (the local backend's workers) import ``scale`` too.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
    )
    if ns.command == "_child":
        what, path = ns.args
        print(json.dumps(child(what, Path(path))))
        return
    whats = ns.what.split(",")
    if ns.command in ("build", "all"):
        ns.dir.mkdir(parents=True, exist_ok=True)
        build(ns.dir, ns.trials, ns.results)
    if ns.command in ("measure", "all"):
        measure(ns.dir / NAME, ns.reps, whats)


if __name__ == "__main__":
    main()
