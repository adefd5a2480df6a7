"""atune on a multi-node Ray cluster: placement across nodes, nodes joining, a node lost.

The cluster (``ray.cluster_utils.Cluster``: a head and worker nodes, each a raylet of its
own on this machine) runs in a subprocess with a private ``RAY_TMPDIR``
(``_cluster_scenarios.py``), so it never touches the Ray instance the other tests share,
nor any other Ray on the machine. One run serves every test of this module (a cluster
takes seconds per node to start); each test checks one scenario's record. Concurrency
and placement are read from what the trials themselves recorded (a counter actor, the
node ids they report), never from timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

_SCRIPT = Path(__file__).with_name("_cluster_scenarios.py")
_LIMIT_S = 800


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The record of one run of every scenario (see ``_cluster_scenarios.py``)."""
    out = tmp_path_factory.mktemp("cluster") / "report.json"
    storage = tmp_path_factory.mktemp("cluster_storage")
    # Short: Ray's socket paths live under it and must stay below the OS limit.
    ray_tmp = tempfile.mkdtemp(prefix="atc-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    tests_root = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(_SCRIPT), str(out), str(storage)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        log, _ = proc.communicate(timeout=_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the script shuts its cluster down on SIGTERM
        try:
            log, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)  # the cluster's logs and sockets
    if not out.exists():
        pytest.fail(f"the cluster run wrote no report (exit {proc.returncode}):\n{log[-5000:]}")
    yield json.loads(out.read_text())


def _scenario(run: dict[str, Any], name: str) -> dict[str, Any]:
    out = run.get(name)
    assert out is not None, f"scenario {name!r} did not run"
    assert "failed" not in out, out["failed"]
    return out  # type: ignore[no-any-return]


def test_without_an_address_atune_joins_the_cluster_of_this_machine(
    cluster_run: dict[str, Any],
) -> None:
    """No ``ray.init`` and no ``RAY_ADDRESS``: the cluster this machine belongs to is used
    (Ray refuses the CPU count atune gives a Ray it starts itself)."""
    assert cluster_run["head"] == cluster_run["cluster_head"]


def test_more_trials_start_when_a_node_joins(cluster_run: dict[str, Any]) -> None:
    """A 1-CPU head runs one 1-CPU trial at a time; after a 2-CPU node joins, three."""
    join = _scenario(cluster_run, "join")
    assert join["peak"] == 3
    trials = join["trials"]
    assert len(trials) == 6 and all(t["error"] is None for t in trials)
    nodes = {row["node"] for t in trials for row in t["rows"]}
    assert nodes == {cluster_run["head"], join["node_a"]}


def test_single_bundle_trials_fill_every_node(cluster_run: dict[str, Any]) -> None:
    """Four 1-CPU trials at once on nodes of 1, 2 and 1 CPUs: each node holds its share."""
    placement = _scenario(cluster_run, "placement")
    singles = placement["singles"]
    assert all(t["error"] is None for t in singles), [t["error"] for t in singles]
    assert placement["singles_peak"] == 4
    per_node = Counter(t["rows"][0]["node"] for t in singles)
    node_a, node_b = cluster_run["join"]["node_a"], placement["node_b"]
    assert per_node == {cluster_run["head"]: 1, node_a: 2, node_b: 1}


@pytest.mark.parametrize(
    ("strategy", "distinct"),
    [("PACK", None), ("STRICT_PACK", 1), ("SPREAD", 3), ("STRICT_SPREAD", 3)],
)
def test_placement_group_strategies(
    cluster_run: dict[str, Any], strategy: str, distinct: int | None
) -> None:
    """A multi-bundle trial's actor and its tasks land where the strategy says: all on the
    one node with room for both bundles, or one per node. ``PACK`` is best effort in Ray
    (it may use two nodes although one has room), so only its bundles' being placed is
    checked; ``SPREAD`` spreads whenever there are nodes enough, as here."""
    placement = _scenario(cluster_run, "placement")
    (group,) = [g for g in placement["groups"] if g["strategy"] == strategy]
    assert group["error"] is None
    nodes = group["nodes"].split(",")
    every_node = {cluster_run["head"], cluster_run["join"]["node_a"], placement["node_b"]}
    assert set(nodes) <= every_node
    if distinct is None:
        assert len(nodes) == 2
        return
    assert len(set(nodes)) == distinct, nodes
    if distinct == 1:
        assert nodes[0] == cluster_run["join"]["node_a"]  # the only node with 2 CPUs


def test_a_lost_node_costs_its_trials_one_failure_each(cluster_run: dict[str, Any]) -> None:
    """Node A killed without notice mid-trial: with ``max_failures=1`` its trials continue
    from their latest checkpoints on the surviving nodes, each after exactly one failure
    that names the lost node; no result is lost or reported twice."""
    loss = _scenario(cluster_run, "loss")
    node_a = loss["node_a"]
    lost = loss["lost_trials"]
    assert len(lost) == 2  # the 2-CPU node held two of the four trials
    trials = {t["trial_id"]: t for t in loss["trials"]}
    assert len(trials) == 4
    for trial in trials.values():
        assert trial["error"] is None
        iterations = [row["i"] for row in trial["rows"]]
        assert iterations == list(range(1, loss["iterations"] + 1))
        assert [row["training_iteration"] for row in trial["rows"]] == iterations
    failures = Counter(e["trial_id"] for e in loss["errors"])
    assert failures == dict.fromkeys(lost, 1)
    for error in loss["errors"]:
        assert error["will_retry"] and "node died" in error["message"]
        assert node_a in error["message"]
    for trial_id in lost:
        nodes = [row["node"] for row in trials[trial_id]["rows"]]
        first_elsewhere = next(i for i, n in enumerate(nodes) if n != node_a)
        assert first_elsewhere > 0 and node_a not in nodes[first_elsewhere:]
