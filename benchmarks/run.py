"""Side-by-side benchmarks: atune against Ray Tune on the workloads of issue 5.

Each run is one workload under one framework in a fresh subprocess (``_child.py``), which
starts Ray itself (``ray.init(num_cpus=2, ...)``) and times ``fit()`` alone. Repetitions
alternate the frameworks (atune, Ray Tune, atune, ...) so that drifting machine load hits
both alike. Results are written to JSON after every run, then summarised in a table.

    python benchmarks/run.py --quick                     # smoke run, both frameworks
    python benchmarks/run.py --frameworks atune --reps 1 # atune only, full sizes
    python benchmarks/run.py --workloads loop_lag,class_reuse --reps 5

See benchmarks/README.md for what each workload measures and the targets.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import FRAMEWORK_ENV, FULL, QUICK, WORKLOADS  # noqa: E402

__all__ = ["main"]

FRAMEWORKS = ("atune", "raytune")
SLOW = ("many_trials_default", "bookkeeping", "scale_10k")
"""Workloads run ``--slow-reps`` times (default 1): Ray Tune needs minutes to an hour each."""

ATUNE_ONLY = ("simulator_asha_1000", "simulator_1000_nodes", "stuck_subscriber", "scale_10k")
"""Workloads atune runs alone: no Ray Tune counterpart (the virtual-time simulator, the run
handle's event stream), or one Ray Tune needs hours for (``scale_10k``: its 2,000-trial
``bookkeeping`` takes 45-60 minutes)."""

ALIASES = {"many_trials": ["many_trials_reuse", "many_trials_default"]}
DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_S = {("many_trials_default", "raytune"): 900.0, ("bookkeeping", "raytune"): 1800.0}

# Workload -> (primary metric, True when higher is better).
PRIMARY: dict[str, tuple[str, bool]] = {
    "actor_start": ("start_s", False),
    "result_throughput": ("results_per_s", True),
    "loop_lag": ("p99_ms", False),
    "first_fit_loop_stall": ("stall_ms", False),
    "first_fit_loop_stall_cold_ray": ("stall_ms", False),
    "stuck_subscriber": ("ratio", False),
    "scale_10k": ("overhead_pct", False),
    "simulator_1000_nodes": ("events_per_cpu_s", True),
}

# Workload -> the target of issue 5, shown next to the ratio.
TARGETS: dict[str, str] = {
    "many_trials_reuse": "ratio >= 5",
    "many_trials_default": "ratio >= 100",
    "result_throughput": "ratio >= 10",
    "actor_start": "none: Ray alone, same code both sides",
    "class_reuse": "atune overhead_pct <= 10",
    "class_reuse_warm": "atune overhead_pct <= 10 (the second experiment)",
    "checkpoint_heavy": "ratio >= 2",
    "loop_lag": "atune p99_ms < 5",
    "first_fit_loop_stall": "atune stall_ms <= 50",
    "asha": "ratio >= 10",
    "bookkeeping": "atune overhead_pct <= 5, flat RSS",
    "simulator_asha_1000": "atune fit_s < 10 (issue 11)",
    "stuck_subscriber": "atune ratio within 1 +- 0.10 (issue 12)",
    "scale_10k": "atune overhead_pct <= 5, RSS growth < 50 MB (issue 13)",
    "simulator_1000_nodes": "none: the controller's events per CPU second (docs/scaling.md)",
}


def _machine() -> dict[str, Any]:
    import ray

    import atune

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "atune": atune.__version__,
    }


def _compile_atune() -> int:
    """Byte-compile atune's sources, as installing its wheel does; the number compiled.

    Ray and Ray Tune come from wheels, whose modules pip byte-compiled at install time.
    atune is installed in editable mode, and where ``PYTHONDONTWRITEBYTECODE`` is set (it
    is on this machine) no process ever writes its bytecode: every driver and every Ray
    worker would compile atune's modules from source on import (31 ms instead of 11 ms for
    a worker's import here), a cost no installed atune has.
    """
    import compileall

    import atune

    package = Path(atune.__file__).parent
    compileall.compile_dir(package, quiet=1)
    return sum(1 for _ in package.rglob("__pycache__/*.pyc"))


def _run_one(
    workload: str, framework: str, params: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Run one workload under one framework in a subprocess; never raises."""
    timeout = timeout or TIMEOUT_S.get((workload, framework), DEFAULT_TIMEOUT_S)
    env = dict(os.environ)
    env[FRAMEWORK_ENV] = framework
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)  # result files stay on
    record: dict[str, Any] = {
        "workload": workload,
        "framework": framework,
        "params": params,
        "timeout_s": timeout,
        "loadavg_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        log_path = os.path.join(tmp, "output.log")
        cmd = [sys.executable, str(HERE / "_child.py"), workload, json.dumps(params), result_path]
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                rc = None
        record["process_s"] = time.perf_counter() - started
        record["loadavg_after"] = os.getloadavg()
        if rc is None:
            record["status"] = "timeout"
        elif rc == 0 and os.path.exists(result_path):
            with open(result_path) as f:
                record.update(json.load(f))
            record["status"] = "ok"
        else:
            record["status"] = f"error (exit {rc})"
        if record["status"] != "ok":
            with open(log_path, errors="replace") as f:
                record["output_tail"] = f.read()[-3000:]
    return record


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the child we started and its process group (Ray's processes started by it)."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _primary(workload: str) -> tuple[str, bool]:
    return PRIMARY.get(workload, ("fit_s", False))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, minima and maxima per workload and framework, and the atune speedup.

    Args:
        runs: The run records (``status == "ok"`` ones count).

    Returns:
        ``{workload: {"metric", "higher_is_better", "target", "ratio",
        framework: {"n", "median", "min", "max", "failed", "medians": {metric: median}}}}``;
        ``ratio`` is Ray Tune's median over atune's (atune's over Ray Tune's for a
        higher-is-better metric), so above 1 means atune is better.
    """
    out: dict[str, Any] = {}
    for workload in WORKLOADS:
        mine = [r for r in runs if r["workload"] == workload]
        if not mine:
            continue
        metric, higher = _primary(workload)
        entry: dict[str, Any] = {
            "metric": metric,
            "higher_is_better": higher,
            "target": TARGETS.get(workload, ""),
        }
        for fw in FRAMEWORKS:
            fw_runs = [r for r in mine if r["framework"] == fw]
            ok = [r["metrics"] for r in fw_runs if r["status"] == "ok"]
            if not fw_runs:
                continue
            stats: dict[str, Any] = {
                "n": len(ok),
                "failed": [r["status"] for r in fw_runs if r["status"] != "ok"],
            }
            if ok:
                values = [m[metric] for m in ok]
                stats.update(median=statistics.median(values), min=min(values), max=max(values))
                stats["medians"] = {k: statistics.median(m[k] for m in ok) for k in ok[0]}
            entry[fw] = stats
        a, r = entry.get("atune", {}).get("median"), entry.get("raytune", {}).get("median")
        if a and r:
            entry["ratio"] = a / r if higher else r / a
        out[workload] = entry
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def print_table(summary: dict[str, Any]) -> None:
    """Print the summary: one row per workload and framework, then per-workload details."""
    head = f"{'workload':<20} {'metric':<14} {'framework':<8} {'n':>2} {'median':>9} {'min':>9} {'max':>9}  ratio"
    print(head)
    print("-" * len(head))
    for workload, e in summary.items():
        for fw in FRAMEWORKS:
            s = e.get(fw)
            if s is None:
                continue
            ratio = ""
            if fw == "atune":
                ratio = f"{e['ratio']:.1f}x" if "ratio" in e else "-"
                ratio += f"   (target: {e['target']})"
            if s["failed"]:
                ratio += f"   failed: {', '.join(s['failed'])}"
            print(
                f"{workload:<20} {e['metric']:<14} {fw:<8} {s['n']:>2} {_fmt(s.get('median')):>9}"
                f" {_fmt(s.get('min')):>9} {_fmt(s.get('max')):>9}  {ratio}"
            )
    for fw in FRAMEWORKS:
        derived = summary.get("class_reuse", {}).get(fw, {}).get("medians", {})
        start = summary.get("actor_start", {}).get(fw, {}).get("median")
        if derived and start:
            floor = derived["floor_s"] + start
            over = 100 * (derived["fit_s"] - floor) / floor
            print(
                f"class_reuse {fw}: {over:.1f} % over setup + Ray's first actor start "
                f"({derived['floor_s']:.3g} + {start:.3g} s)"
            )
    for fw in FRAMEWORKS:
        warm = summary.get("class_reuse_warm", {}).get(fw, {}).get("medians", {})
        if warm:
            print(
                f"class_reuse_warm {fw}: first experiment {warm['first_fit_s']:.3g} s "
                f"({warm['first_overhead_pct']:.1f} % over setup), second "
                f"{warm['fit_s']:.3g} s ({warm['overhead_pct']:.1f} % over setup)"
            )
    print("\nmedians of every metric:")
    for workload, e in summary.items():
        for fw in FRAMEWORKS:
            medians = e.get(fw, {}).get("medians")
            if medians:
                detail = ", ".join(f"{k}={_fmt(v)}" for k, v in medians.items())
                print(f"  {workload:<20} {fw:<8} {detail}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated (many_trials = both variants)",
    )
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="atune,raytune")
    p.add_argument("--reps", type=int, default=3, help="repetitions per framework (default 3)")
    p.add_argument(
        "--slow-reps", type=int, default=1, help=f"repetitions of {', '.join(SLOW)} (default 1)"
    )
    p.add_argument(
        "--skip-slow-raytune", action="store_true", help=f"do not run Ray Tune on {', '.join(SLOW)}"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per run, overriding the defaults (600; Ray Tune: 900 on "
        "many_trials_default, 1800 on bookkeeping)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default benchmarks/results/<timestamp>.json)",
    )
    args = p.parse_args(argv)
    names: list[str] = []
    for name in args.workloads.split(","):
        for n in ALIASES.get(name.strip(), [name.strip()]):
            if n not in WORKLOADS:
                p.error(f"unknown workload {n!r}; choose from {', '.join([*WORKLOADS, *ALIASES])}")
            names.append(n)
    args.workloads = [n for n in WORKLOADS if n in names]
    args.frameworks = [f.strip() for f in args.frameworks.split(",")]
    if any(f not in FRAMEWORKS for f in args.frameworks):
        p.error(f"frameworks must be among {FRAMEWORKS}, got {args.frameworks}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, write the JSON and print the table.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when every run succeeded, 1 otherwise.
    """
    args = _parse(argv)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or HERE / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else FULL
    compiled = _compile_atune()
    doc: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {**_machine(), "atune_bytecode_files": compiled},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [],
    }
    for workload in args.workloads:
        reps = args.slow_reps if workload in SLOW else args.reps
        frameworks = [
            fw
            for fw in args.frameworks
            if not (args.skip_slow_raytune and fw == "raytune" and workload in SLOW)
            and not (fw == "raytune" and workload in ATUNE_ONLY)
        ]
        for rep in range(reps):
            for fw in frameworks:
                print(
                    f"[{time.strftime('%H:%M:%S')}] {workload} {fw} rep {rep + 1}/{reps} ...",
                    flush=True,
                )
                record = _run_one(workload, fw, sizes[workload], args.timeout)
                record["rep"] = rep
                doc["runs"].append(record)
                metric = _primary(workload)[0]
                shown = (
                    _fmt(record.get("metrics", {}).get(metric))
                    if record["status"] == "ok"
                    else record["status"]
                )
                print(f"    {metric} = {shown}", flush=True)
                doc["summary"] = summarise(doc["runs"])
                tmp = out.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(doc, indent=1))
                tmp.replace(out)
    print()
    print_table(doc.get("summary", {}))
    print(f"\nresults: {out}")
    return 0 if all(r["status"] == "ok" for r in doc["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
