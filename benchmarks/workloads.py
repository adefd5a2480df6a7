"""The benchmark workloads: one trainable code base, run by atune or by Ray Tune.

The framework is chosen when this module is imported, from the ``ATUNE_BENCH_FRAMEWORK``
environment variable (``atune`` or ``raytune``); that is the only difference between the two
sides: ``import atune as tune`` or ``from ray import tune``. The variable is inherited by Ray's
worker processes, which import this module again to run the trainables.

Every workload function takes its parameters and a storage directory, runs one experiment and
returns its metrics; ``fit_s`` is the wall time of ``fit()`` alone (Ray is already started).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "FRAMEWORK",
    "FRAMEWORK_ENV",
    "FULL",
    "QUICK",
    "WITHOUT_RAY",
    "WORKLOADS",
    "run_workload",
]

FRAMEWORK_ENV = "ATUNE_BENCH_FRAMEWORK"
"""Environment variable naming the framework under test: ``atune`` or ``raytune``."""

FRAMEWORK = os.environ.get(FRAMEWORK_ENV, "atune")
"""The framework this process benchmarks."""

if FRAMEWORK == "atune":
    import atune as tune
elif FRAMEWORK == "raytune":
    from ray import tune  # type: ignore[no-redef]
else:
    raise SystemExit(f"{FRAMEWORK_ENV} must be 'atune' or 'raytune', got {FRAMEWORK!r}")

Metrics = dict[str, float]

# --- trainables (identical for both frameworks) -------------------------------------------


def one_report(config: dict[str, Any]) -> None:
    """Report once and finish (``many_trials``)."""
    tune.report({"score": config["x"]})


def report_loop(config: dict[str, Any]) -> None:
    """Report ``config["reports"]`` results as fast as possible (``result_throughput``)."""
    for i in range(config["reports"]):
        tune.report({"i": i})


class SlowSetup(tune.Trainable):
    """A class trainable with an expensive ``setup`` and trivial steps (``class_reuse``)."""

    def setup(self, config: dict[str, Any]) -> None:
        """Pay the setup cost once per actor; reuse skips it through ``reset_config``."""
        time.sleep(config["setup_s"])
        self.count = 0

    def step(self) -> dict[str, Any]:
        """One trivially fast iteration."""
        self.count += 1
        return {"count": self.count}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Accept the next trial's config without a new setup (enables reuse)."""
        self.count = 0
        return True


def checkpointing(config: dict[str, Any]) -> None:
    """Report every iteration with a checkpoint of ``config["mb"]`` MB (``checkpoint_heavy``)."""
    payload = os.urandom(config["mb"] * 2**20)
    for i in range(config["iters"]):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "weights.bin"), "wb") as f:
                f.write(payload)
            tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))


def sleepy_reports(config: dict[str, Any]) -> None:
    """Sleep, then report, ``config["reports"]`` times (``loop_lag``)."""
    for i in range(config["reports"]):
        time.sleep(config["sleep_s"])
        tune.report({"i": i})


def learning_curve(config: dict[str, Any]) -> None:
    """Report a saturating curve whose height is ``config["x"]`` (``asha``)."""
    for i in range(config["iters"]):
        tune.report({"score": config["x"] * (1.0 - 0.9 ** (i + 1))})


def sleep_then_report(config: dict[str, Any]) -> None:
    """Sleep once, then report once (``bookkeeping``)."""
    time.sleep(config["sleep_s"])
    tune.report({"score": 1})


def simulated_curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, float], float]:
    """A learning curve for the simulator: a noisy decreasing loss, 36 s per iteration."""
    floor, speed = config["floor"], config["speed"]
    noise = 0.02 * math.sin(iteration * 12.9898 + floor * 78.233)
    return {"loss": floor + math.exp(-speed * iteration) + noise}, 36.0


# --- helpers ------------------------------------------------------------------------------


def _tuner(trainable: Any, param_space: dict[str, Any], storage: str, **tune_kw: Any) -> Any:
    stop = tune_kw.pop("stop", None)
    checkpoint_config = tune_kw.pop("checkpoint_config", None)
    run_kw: dict[str, Any] = {"storage_path": storage, "verbose": 0, "stop": stop}
    if checkpoint_config is not None:
        run_kw["checkpoint_config"] = checkpoint_config
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_kw),
        run_config=tune.RunConfig(**run_kw),
    )


def _check(grid: Any, trials: int, iterations: int | None = None) -> Metrics:
    """Fail loudly when the experiment did not do what it was asked: never time a failure."""
    if grid.num_errors:
        raise RuntimeError(f"{grid.num_errors} trial(s) errored: {grid.errors[0]!r}")
    if len(grid) != trials:
        raise RuntimeError(f"expected {trials} trials, got {len(grid)}")
    iters = [r.metrics.get("training_iteration", 0) for r in grid]
    if iterations is not None and min(iters) != iterations:
        raise RuntimeError(f"expected {iterations} iterations per trial, got {min(iters)}")
    return {"trials": float(len(grid)), "iterations_total": float(sum(iters))}


def _timed_fit(tuner: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    grid = tuner.fit()
    return grid, time.perf_counter() - start


def _rss_mb() -> float:
    """This process's resident set size now (``VmRSS``), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- workloads ----------------------------------------------------------------------------


def many_trials(p: dict[str, Any], storage: str) -> Metrics:
    """Many one-report function trials; ``p["reuse"]`` None keeps each framework's default."""
    kw: dict[str, Any] = {"num_samples": p["trials"]}
    if p["reuse"] is not None:
        kw["reuse_actors"] = p["reuse"]
    grid, fit_s = _timed_fit(_tuner(one_report, {"x": tune.uniform(0, 1)}, storage, **kw))
    return {"fit_s": fit_s, "trials_per_s": p["trials"] / fit_s, **_check(grid, p["trials"], 1)}


def result_throughput(p: dict[str, Any], storage: str) -> Metrics:
    """Concurrent trials reporting as fast as they can; results per second of ``fit()``."""
    tuner = _tuner(report_loop, {"reports": p["reports"]}, storage, num_samples=p["trials"])
    grid, fit_s = _timed_fit(tuner)
    total = p["trials"] * p["reports"]
    return {
        "fit_s": fit_s,
        "results_per_s": total / fit_s,
        **_check(grid, p["trials"], p["reports"]),
    }


def actor_start(p: dict[str, Any], storage: str) -> Metrics:
    """Ray alone: a fresh driver's first actor, created and answering one call.

    The code is the same under both labels and uses neither framework; the driver has only
    imported the framework under test, as every workload's driver has. This is what starting
    ``class_reuse``'s one actor costs the engine, which that workload's floor leaves out. A
    fresh driver's first actor builds Ray's serialization context in the driver and in the
    worker, which imports pyarrow and pydantic when they are installed; ``from ray import
    tune`` has already imported both in the driver, ``import atune`` has not.
    """
    import ray
    from _bare_actor import Bare

    remote_cls = ray.remote(num_cpus=1)(Bare)
    start = time.perf_counter()
    actor = remote_cls.remote()
    ray.get(actor.ping.remote())
    start_s = time.perf_counter() - start
    ray.kill(actor)
    return {"fit_s": start_s, "start_s": start_s}


def class_reuse(p: dict[str, Any], storage: str) -> Metrics:
    """Sequential class trials with a slow setup and actor reuse; overhead over the floor."""
    tuner = _tuner(
        SlowSetup,
        {"setup_s": p["setup_s"]},
        storage,
        num_samples=p["trials"],
        max_concurrent_trials=1,
        reuse_actors=True,
        stop={"training_iteration": p["steps"]},
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
    )
    grid, fit_s = _timed_fit(tuner)
    floor = p["setup_s"]  # one setup, then reset_config; the steps themselves cost ~nothing
    return {
        "fit_s": fit_s,
        "floor_s": floor,
        "overhead_pct": 100 * (fit_s - floor) / floor,
        **_check(grid, p["trials"], p["steps"]),
    }


def class_reuse_warm(p: dict[str, Any], storage: str) -> Metrics:
    """Two ``class_reuse`` experiments one after the other in one process; the second's
    overhead over the same floor (one setup), the first reported separately.

    atune runs both on one event loop (``await tuner.fit()`` twice, as a service or a
    notebook does), so the second takes the actor the first left warm; Ray Tune runs two
    ``fit()`` calls (it keeps no actor between experiments).
    """

    def tuner() -> Any:
        return _tuner(
            SlowSetup,
            {"setup_s": p["setup_s"]},
            storage,
            num_samples=p["trials"],
            max_concurrent_trials=1,
            reuse_actors=True,
            stop={"training_iteration": p["steps"]},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        )

    if FRAMEWORK == "atune":

        async def both() -> list[tuple[Any, float]]:
            timed = []
            for _ in range(2):
                experiment = tuner()
                start = time.perf_counter()
                grid = await experiment.fit()
                timed.append((grid, time.perf_counter() - start))
            return timed

        (first, first_s), (second, second_s) = asyncio.run(both())
    else:
        (first, first_s), (second, second_s) = _timed_fit(tuner()), _timed_fit(tuner())
    _check(first, p["trials"], p["steps"])
    floor = p["setup_s"]  # as class_reuse: one setup; the steps themselves cost ~nothing
    return {
        "fit_s": second_s,
        "floor_s": floor,
        "overhead_pct": 100 * (second_s - floor) / floor,
        "first_fit_s": first_s,
        "first_overhead_pct": 100 * (first_s - floor) / floor,
        **_check(second, p["trials"], p["steps"]),
    }


def stuck_subscriber(p: dict[str, Any], storage: str) -> Metrics:
    """An event subscriber that never reads, against none (atune only: issue 12).

    ``result_throughput``'s experiment, started with ``Tuner.start()``, alternately with no
    subscriber and with one that never reads (room for 4 events), ``p["rounds"]`` times
    each after one warm-up, on one event loop. ``fit_s`` is the median with the stuck
    subscriber, ``ratio`` that over the median without it (1.0: it costs nothing).
    """

    async def one(stuck: bool) -> float:
        tuner = _tuner(report_loop, {"reports": p["reports"]}, storage, num_samples=p["trials"])
        start = time.perf_counter()
        async with tuner.start() as run:
            if stuck:
                run.events(buffer_size=4)  # subscribed, never read
        grid = await run.wait()
        elapsed = time.perf_counter() - start
        _check(grid, p["trials"], p["reports"])
        if stuck and run.status().num_results != p["trials"] * p["reports"]:
            raise RuntimeError("results missing with a stuck subscriber")
        return elapsed

    async def rounds() -> tuple[list[float], list[float]]:
        await one(False)  # warm-up: the first fit() of the process loads its machinery
        plain, stuck = [], []
        for _ in range(p["rounds"]):
            plain.append(await one(False))
            stuck.append(await one(True))
        return plain, stuck

    plain, stuck = asyncio.run(rounds())
    return {
        "fit_s": statistics.median(stuck),
        "plain_fit_s": statistics.median(plain),
        "ratio": statistics.median(stuck) / statistics.median(plain),
    }


def asha(p: dict[str, Any], storage: str) -> Metrics:
    """ASHA over many short function trials: a scheduler decision on every result."""
    scheduler = tune.schedulers.ASHAScheduler(
        metric="score", mode="max", max_t=p["iters"], grace_period=1, reduction_factor=3
    )
    xs = [(7 * i % p["trials"]) / p["trials"] for i in range(p["trials"])]  # a fixed shuffle
    tuner = _tuner(
        learning_curve,
        {"x": tune.grid_search(xs), "iters": p["iters"]},
        storage,
        scheduler=scheduler,
    )
    grid, fit_s = _timed_fit(tuner)
    checked = _check(grid, p["trials"])
    return {
        "fit_s": fit_s,
        "results_per_s": checked["iterations_total"] / fit_s,
        "full_length_trials": float(
            sum(r.metrics.get("training_iteration") == p["iters"] for r in grid)
        ),
        **checked,
    }


def checkpoint_heavy(p: dict[str, Any], storage: str) -> Metrics:
    """Trials that checkpoint ``p["mb"]`` MB every iteration, keeping two."""
    tuner = _tuner(
        checkpointing,
        {"mb": p["mb"], "iters": p["iters"]},
        storage,
        num_samples=p["trials"],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )
    grid, fit_s = _timed_fit(tuner)
    mb = p["trials"] * p["iters"] * p["mb"]
    return {"fit_s": fit_s, "ckpt_mb_per_s": mb / fit_s, **_check(grid, p["trials"], p["iters"])}


def loop_lag(p: dict[str, Any], storage: str) -> Metrics:
    """Lateness of a 10 ms asyncio ticker while an experiment runs on the same loop."""
    return asyncio.run(_loop_lag(p, storage))


async def _loop_lag(p: dict[str, Any], storage: str) -> Metrics:
    loop = asyncio.get_running_loop()
    tick: float = p["tick_s"]
    served: list[tuple[float, float]] = []  # (scheduled, lateness)
    done = asyncio.Event()

    async def ticker() -> None:
        # A fixed schedule: a tick missed while the loop was blocked is served late, not
        # dropped, so every tick scheduled during fit() is counted with its lateness.
        origin = loop.time()
        k = 1
        while not done.is_set():
            scheduled = origin + k * tick
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            served.append((scheduled, loop.time() - scheduled))
            k += 1

    tuner = _tuner(
        sleepy_reports,
        {"reports": p["reports"], "sleep_s": p["sleep_s"]},
        storage,
        num_samples=p["trials"],
    )
    task = asyncio.create_task(ticker())
    await asyncio.sleep(1.0)  # the idle loop's own lateness, for reference
    begin = loop.time()
    start = time.perf_counter()
    if FRAMEWORK == "atune":
        grid = await tuner.fit()
    else:
        grid = tuner.fit()  # Ray Tune's fit() blocks the loop for its whole run
    fit_s = time.perf_counter() - start
    end = loop.time()
    while not served or served[-1][0] < end:  # let the ticker catch up past fit's end
        await asyncio.sleep(tick)
    done.set()
    await task
    late_ms = [1000 * late for sched, late in served if begin <= sched <= end]
    idle_ms = [1000 * late for sched, late in served if sched < begin]
    return {
        "fit_s": fit_s,
        "p50_ms": statistics.median(late_ms),
        "p99_ms": _pct(late_ms, 0.99),
        "max_ms": max(late_ms),
        "ticks": float(len(late_ms)),
        "idle_p50_ms": statistics.median(idle_ms),
        "idle_p99_ms": _pct(idle_ms, 0.99),
        **_check(grid, p["trials"], p["reports"]),
    }


def first_fit_loop_stall(p: dict[str, Any], storage: str) -> Metrics:
    """How long the first experiment of a fresh process stalls the event loop it runs on."""
    return asyncio.run(_first_fit_loop_stall(p, storage))


async def _first_fit_loop_stall(p: dict[str, Any], storage: str) -> Metrics:
    # A service's shape: the program imported the framework at start-up (``import atune
    # as tune`` in workloads.py) and builds and runs its first experiment inside the
    # running loop. A 1 ms ticker measures every stall: the longest gap between two of
    # its wake-ups beyond the 1 ms it asked for. The Tuner's construction (in which the
    # framework's lazily imported modules load) is measured apart from fit().
    loop = asyncio.get_running_loop()
    gaps: list[tuple[float, float]] = []  # (woke at, stall)
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append((now, now - before - 0.001))

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.5)  # the idle loop, for reference
    built = loop.time()
    tuner = _tuner(
        sleepy_reports,
        {"reports": p["reports"], "sleep_s": p["sleep_s"]},
        storage,
        num_samples=p["trials"],
    )
    await asyncio.sleep(0.05)
    begin = loop.time()
    start = time.perf_counter()
    if FRAMEWORK == "atune":
        grid = await tuner.fit()
    else:
        grid = tuner.fit()  # Ray Tune's fit() blocks the loop for its whole run
    fit_s = time.perf_counter() - start
    end = loop.time()
    await asyncio.sleep(0.05)
    done.set()
    await task
    in_fit = [stall for at, stall in gaps if begin < at <= end + 0.05]
    return {
        "fit_s": fit_s,
        "stall_ms": 1000 * max(in_fit),
        "tuner_stall_ms": 1000 * max(stall for at, stall in gaps if built < at <= begin),
        "idle_stall_ms": 1000 * max(stall for at, stall in gaps if at <= built),
        **_check(grid, p["trials"], p["reports"]),
    }


def bookkeeping(p: dict[str, Any], storage: str) -> Metrics:
    """Many short trials: overhead over the ideal time, driver CPU per trial, driver memory.

    With ``p["warmup_trials"]``, a small experiment runs first, so the memory measured is
    what the big one adds, not what a process's first ``fit()`` loads (modules, Ray's
    serialization context, the first actors).
    """
    if p.get("warmup_trials"):
        warmup = _tuner(
            sleep_then_report, {"sleep_s": 0.0}, storage, num_samples=p["warmup_trials"]
        )
        _check(warmup.fit(), p["warmup_trials"], 1)
        del warmup
        gc.collect()
    tuner = _tuner(sleep_then_report, {"sleep_s": p["sleep_s"]}, storage, num_samples=p["trials"])
    peak = [_rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    rss_start = _rss_mb()
    cpu_start = time.process_time()
    sampler.start()
    try:
        grid, fit_s = _timed_fit(tuner)
    finally:
        stop.set()
        sampler.join()
    cpu_s = time.process_time() - cpu_start
    rss_end = _rss_mb()
    checked = _check(grid, p["trials"], 1)
    del grid, tuner  # what stays resident after the results are dropped is not theirs
    gc.collect()
    ideal = p["trials"] * p["sleep_s"] / p["cpus"]
    return {
        "fit_s": fit_s,
        "ideal_s": ideal,
        "overhead_pct": 100 * (fit_s - ideal) / ideal,
        "driver_cpu_ms_per_trial": 1000 * cpu_s / p["trials"],
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_peak_mb": max(peak[0], rss_end),
        "rss_released_mb": _rss_mb(),
        **checked,
    }


def simulator_asha(p: dict[str, Any], storage: str) -> Metrics:
    """An ASHA study in virtual time (atune only): trials of 1 simulated hour each."""
    from atune.schedulers import ASHAScheduler
    from atune.simulator import Simulator

    simulator = Simulator(
        simulated_curve, workers=p["workers"], max_iterations=p["iterations"], seed=0
    )
    tuner = _tuner(
        simulator,
        {"floor": tune.uniform(0, 1), "speed": tune.loguniform(0.01, 1)},
        storage,
        metric="loss",
        mode="min",
        num_samples=p["trials"],
        scheduler=ASHAScheduler(max_t=p["iterations"], grace_period=1, reduction_factor=4),
    )
    cpu_start = time.process_time()
    grid, fit_s = _timed_fit(tuner)
    fit_cpu_s = time.process_time() - cpu_start  # a loaded machine stretches fit_s, not this
    checked = _check(grid, p["trials"])
    hours = max(r.metrics["timestamp"] for r in grid) - simulator.epoch
    with open(os.path.join(grid.experiment_path, "events.jsonl"), "rb") as journal:
        events = sum(1 for _ in journal)  # every event the controller handled, journaled
    return {
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "virtual_hours": hours / 3600,
        "events": float(events),
        "events_per_cpu_s": events / fit_cpu_s,
        **checked,
    }


WORKLOADS: dict[str, Callable[[dict[str, Any], str], Metrics]] = {
    "actor_start": actor_start,
    "result_throughput": result_throughput,
    "class_reuse": class_reuse,
    "class_reuse_warm": class_reuse_warm,
    "checkpoint_heavy": checkpoint_heavy,
    "loop_lag": loop_lag,
    "asha": asha,
    "stuck_subscriber": stuck_subscriber,
    "first_fit_loop_stall": first_fit_loop_stall,
    "first_fit_loop_stall_cold_ray": first_fit_loop_stall,
    "many_trials_reuse": many_trials,
    "many_trials_default": many_trials,
    "bookkeeping": bookkeeping,
    "scale_10k": bookkeeping,
    "simulator_asha_1000": simulator_asha,
    "simulator_1000_nodes": simulator_asha,
}
"""Workload name -> function, in the order the runner runs them (the slow ones last)."""

WITHOUT_RAY = frozenset({"simulator_asha_1000", "simulator_1000_nodes"})
"""Workloads that need no Ray (the virtual-time simulator): their process starts none."""

FULL: dict[str, dict[str, Any]] = {
    "actor_start": {},
    "result_throughput": {"trials": 2, "reports": 5000},
    "class_reuse": {"trials": 20, "steps": 10, "setup_s": 1.0},
    "class_reuse_warm": {"trials": 20, "steps": 10, "setup_s": 1.0},
    "checkpoint_heavy": {"trials": 4, "iters": 20, "mb": 10},
    "loop_lag": {"trials": 20, "reports": 20, "sleep_s": 0.01, "tick_s": 0.01},
    "first_fit_loop_stall": {"trials": 4, "reports": 5, "sleep_s": 0.01},
    "asha": {"trials": 200, "iters": 100},
    "stuck_subscriber": {"trials": 2, "reports": 5000, "rounds": 5},
    "first_fit_loop_stall_cold_ray": {"trials": 4, "reports": 5, "sleep_s": 0.01, "cold_ray": True},
    "many_trials_reuse": {"trials": 200, "reuse": True},
    "many_trials_default": {"trials": 200, "reuse": None},
    "bookkeeping": {"trials": 2000, "sleep_s": 0.05, "cpus": 2},
    "scale_10k": {"trials": 10000, "sleep_s": 0.05, "cpus": 2, "warmup_trials": 20},
    "simulator_asha_1000": {"trials": 1000, "iterations": 100, "workers": 32},
    "simulator_1000_nodes": {"trials": 5000, "iterations": 100, "workers": 1000},
}
"""The sizes of issue 5 (and issue 11's simulator study)."""

QUICK: dict[str, dict[str, Any]] = {
    "actor_start": {},
    "result_throughput": {"trials": 2, "reports": 500},
    "class_reuse": {"trials": 4, "steps": 10, "setup_s": 1.0},
    "class_reuse_warm": {"trials": 4, "steps": 10, "setup_s": 1.0},
    "checkpoint_heavy": {"trials": 2, "iters": 4, "mb": 10},
    "loop_lag": {"trials": 4, "reports": 10, "sleep_s": 0.01, "tick_s": 0.01},
    "first_fit_loop_stall": {"trials": 2, "reports": 3, "sleep_s": 0.01},
    "asha": {"trials": 20, "iters": 10},
    "stuck_subscriber": {"trials": 2, "reports": 200, "rounds": 2},
    "first_fit_loop_stall_cold_ray": {"trials": 2, "reports": 3, "sleep_s": 0.01, "cold_ray": True},
    "many_trials_reuse": {"trials": 10, "reuse": True},
    "many_trials_default": {"trials": 10, "reuse": None},
    "bookkeeping": {"trials": 40, "sleep_s": 0.05, "cpus": 2},
    "scale_10k": {"trials": 100, "sleep_s": 0.05, "cpus": 2, "warmup_trials": 4},
    "simulator_asha_1000": {"trials": 50, "iterations": 100, "workers": 32},
    "simulator_1000_nodes": {"trials": 200, "iterations": 100, "workers": 100},
}
"""Small sizes for a smoke run (``--quick``)."""


def run_workload(name: str, params: dict[str, Any], storage: str) -> Metrics:
    """Run workload ``name`` with ``params``, storing results under ``storage``.

    Args:
        name: A key of :data:`WORKLOADS`.
        params: The workload's sizes (an entry of :data:`FULL` or :data:`QUICK`).
        storage: The experiment storage root (``RunConfig.storage_path``).

    Returns:
        The workload's metrics; always ``fit_s``.

    Raises:
        RuntimeError: a trial errored or the experiment ran fewer trials or iterations
            than asked.
    """
    if FRAMEWORK == "atune" and not name.startswith("first_fit"):
        # ``from ray import tune`` imports Ray Tune's whole controller up front; atune loads
        # its controller in the first fit() (in a worker thread, see docs/async.md). Load
        # it before the timing, as Ray Tune's is, so fit_s compares per-experiment work;
        # the first_fit_* workloads measure that first load.
        importlib.import_module("atune._fit")
    return WORKLOADS[name](params, storage)
