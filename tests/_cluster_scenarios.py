"""Runs atune on a multi-node Ray cluster (``ray.cluster_utils.Cluster``) and writes what
happened as JSON; ``tests/test_cluster.py`` starts it in a subprocess and asserts on it.

Usage: ``python _cluster_scenarios.py OUT.json STORAGE_DIR``. The caller sets
``RAY_TMPDIR`` to a private directory: the cluster's sockets, logs and the address file
that ``Cluster`` writes (``ray_current_cluster``, which a plain ``ray.init()`` elsewhere
would pick up) stay there, apart from every other Ray on the machine.

One cluster serves the three scenarios in order, nodes added and removed as they go
(each node is a raylet of its own on this machine):

1. ``join``: a 1-CPU head; six 1-CPU trials; a 2-CPU node ``A`` joins once the first
   trial runs. The live-trial counter (a named actor pinned to the head) records how many
   trials ran at once.
2. ``placement``: node ``B`` (1 CPU) joins: nodes of 1, 2 and 1 CPUs. Four single-bundle
   trials running at once, then one multi-bundle trial per strategy; each trial reports
   the node ids of its actor and of the tasks it started in its other bundles.
3. ``loss``: four 1-CPU trials that checkpoint every iteration, ``max_failures=1``;
   node ``A`` is killed (no graceful shutdown) once a trial on it has reported its third
   iteration.

Each scenario's outcome (or its traceback) goes into the JSON under its name.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from _live_trials import LiveTrialsActor, node_id, until_peak
from atune.execution._ray import ensure_ray
from atune.execution.placement_groups import PlacementGroupFactory

# Iterations a trial that waits for company makes at most (0.1 s each): a bound for a
# broken run only; a working one ends them as soon as the expected peak is seen.
_MAX_WAIT_ITERATIONS = 300
# until_peak's pace: twice at least, 0.1 s apart.
_WAIT = {"max_reports": _MAX_WAIT_ITERATIONS, "min_reports": 2, "interval_s": 0.1}
_LOSS_ITERATIONS = 25
# A scenario's fit() that runs longer has hung (a working one takes well under a minute).
_FIT_LIMIT_S = 180


@ray.remote(num_cpus=1)
def _where() -> str:
    return node_id()


def bundles_nodes(config: dict[str, Any]) -> None:
    """Reports the node of its actor (bundle 0) and of one task in each further bundle."""
    group = ray.util.get_current_placement_group()
    others = ray.get(
        [
            _where.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, index)
            ).remote()
            for index in range(1, len(config["case"]["bundles"]))
        ]
    )
    tune.report({"nodes": ",".join([node_id(), *others])})


def _pgf(config: dict[str, Any]) -> PlacementGroupFactory:
    case = config["case"]
    return PlacementGroupFactory(case["bundles"], strategy=case["strategy"])


def checkpointing(config: dict[str, Any]) -> None:
    """Checkpoints every iteration and continues from its checkpoint when retried."""
    live = ray.get_actor(config["counter"])
    start = resume_point()
    if start == 0:  # the first attempts all run at once, so that node A hosts two of them
        ray.get(live.enter.remote())
        for _ in range(_MAX_WAIT_ITERATIONS):
            if ray.get(live.get_peak.remote()) >= config["peak"]:
                break
            time.sleep(0.1)
    trial_id = tune.get_context().get_trial_id()
    for i in range(start + 1, _LOSS_ITERATIONS + 1):
        time.sleep(0.1)
        ray.get(live.report.remote(trial_id, i, node_id()))
        report_with_checkpoint(i, {"i": i, "node": node_id()})


def _counter(name: str, head: str) -> Any:
    strategy = NodeAffinitySchedulingStrategy(head, soft=False)
    return LiveTrialsActor.options(name=name, scheduling_strategy=strategy).remote()  # type: ignore[attr-defined]


def _fit_while(tuner: tune.Tuner, act: Callable[[threading.Thread], None]) -> tune.ResultGrid:
    """``tuner.fit()`` in a thread while ``act`` runs here (Ray adds and removes nodes only
    from the main thread); ``act`` gets the thread, to stop waiting once it ended."""
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["results"] = tuner.fit()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    try:
        act(thread)
    finally:
        thread.join(_FIT_LIMIT_S)
    if thread.is_alive():  # the cluster's shutdown ends it
        raise TimeoutError(f"fit() did not return within {_FIT_LIMIT_S} s")
    if "error" in box:
        raise box["error"]
    return box["results"]  # type: ignore[no-any-return]


def _trials(results: tune.ResultGrid) -> list[dict[str, Any]]:
    out = []
    for result in results:
        path = Path(result.path, "result.json")
        lines = path.read_text().splitlines() if path.exists() else []
        rows = [json.loads(line) for line in lines]
        out.append(
            {
                "trial_id": rows[-1]["trial_id"] if rows else None,
                "error": None if result.error is None else str(result.error),
                "rows": [
                    {k: row.get(k) for k in ("i", "node", "peak", "nodes", "training_iteration")}
                    for row in rows
                ],
            }
        )
    return out


def _errors(experiment_path: str) -> list[dict[str, Any]]:
    lines = Path(experiment_path, "events.jsonl").read_text().splitlines()
    return [
        {k: e[k] for k in ("trial_id", "message", "will_retry") if k in e}
        for e in map(json.loads, lines)
        if e["type"] == "trial_errored"
    ]


def join(cluster: Cluster, storage: str, head: str, out: dict[str, Any]) -> None:
    live = _counter("live_join", head)

    def add_node_once_a_trial_runs(fitting: threading.Thread) -> None:
        while fitting.is_alive() and ray.get(live.get_peak.remote()) < 1:
            time.sleep(0.05)
        if fitting.is_alive():
            out["node_a"] = cluster.add_node(num_cpus=2).node_id

    tuner = tune.Tuner(
        until_peak,
        param_space={"counter": "live_join", "peak": 3, **_WAIT},
        tune_config=tune.TuneConfig(num_samples=6),
        run_config=tune.RunConfig(storage_path=storage, name="join", verbose=0),
    )
    results = _fit_while(tuner, add_node_once_a_trial_runs)
    out["peak"] = ray.get(live.get_peak.remote())
    out["trials"] = _trials(results)


def placement(cluster: Cluster, storage: str, head: str, out: dict[str, Any]) -> None:
    out["node_b"] = cluster.add_node(num_cpus=1).node_id
    live = _counter("live_placement", head)  # held: a dropped handle ends the actor
    singles = tune.Tuner(
        until_peak,
        param_space={"counter": "live_placement", "peak": 4, **_WAIT},
        tune_config=tune.TuneConfig(num_samples=4),
        run_config=tune.RunConfig(storage_path=storage, name="singles", verbose=0),
    ).fit()
    out["singles"] = _trials(singles)
    out["singles_peak"] = ray.get(live.get_peak.remote())
    pack, spread = [{"CPU": 1}] * 2, [{"CPU": 1}] * 3
    groups = tune.Tuner(
        tune.with_resources(bundles_nodes, _pgf),
        param_space={
            "case": tune.grid_search(
                [
                    {"strategy": "PACK", "bundles": pack},
                    {"strategy": "STRICT_PACK", "bundles": pack},
                    {"strategy": "SPREAD", "bundles": spread},
                    {"strategy": "STRICT_SPREAD", "bundles": spread},
                ]
            ),
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, name="groups", verbose=0),
    ).fit()
    out["groups"] = [
        {
            "strategy": r.config["case"]["strategy"],
            "error": r.error and str(r.error),
            "nodes": r.metrics.get("nodes"),
        }
        for r in groups
    ]


def loss(cluster: Cluster, storage: str, head: str, out: dict[str, Any], node_a: Any) -> None:
    live = _counter("live_loss", head)
    config_peak = 4

    def kill_node_a_mid_trial(fitting: threading.Thread) -> None:
        while fitting.is_alive():
            progress = ray.get(live.get_progress.remote())
            # Once every trial reported (so both trials on A are known) and one on A is
            # three iterations in.
            started = len(progress) == config_peak
            if started and any(node == node_a.node_id and i >= 3 for i, node in progress.values()):
                out["lost_trials"] = sorted(
                    t for t, (_, node) in progress.items() if node == node_a.node_id
                )
                cluster.remove_node(node_a, allow_graceful=False)
                return
            time.sleep(0.05)

    tuner = tune.Tuner(
        checkpointing,
        param_space={"counter": "live_loss", "peak": config_peak},
        tune_config=tune.TuneConfig(num_samples=4),
        run_config=tune.RunConfig(
            storage_path=storage,
            name="loss",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    results = _fit_while(tuner, kill_node_a_mid_trial)
    out["iterations"] = _LOSS_ITERATIONS
    out["trials"] = _trials(results)
    out["errors"] = _errors(results.experiment_path)


def main() -> None:
    out_path, storage = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally below
    report: dict[str, Any] = {}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            # A node killed without notice is declared dead after ~3 s rather than ~30 s.
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    try:
        # As a script on a cluster node connects: no address given, Ray's record of the
        # cluster (written by ``Cluster`` as by ``ray start``) is found.
        ensure_ray()
        head = node_id()
        report["head"] = head
        report["cluster_head"] = cluster.head_node.node_id
        started = time.monotonic()
        for name, run in (
            ("join", lambda out: join(cluster, storage, head, out)),
            ("placement", lambda out: placement(cluster, storage, head, out)),
        ):
            out: dict[str, Any] = {}
            report[name] = out
            try:
                run(out)
            except Exception:
                out["failed"] = traceback.format_exc()
            out["seconds"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
        out = report["loss"] = {}
        node_a = next(
            (n for n in cluster.worker_nodes if n.node_id == report["join"].get("node_a")), None
        )
        try:
            if node_a is None:
                raise RuntimeError("node A never joined")
            out["node_a"] = node_a.node_id
            loss(cluster, storage, head, out, node_a)
        except Exception:
            out["failed"] = traceback.format_exc()
        out["seconds"] = round(time.monotonic() - started, 1)
    finally:
        Path(out_path).write_text(json.dumps(report, indent=1))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
