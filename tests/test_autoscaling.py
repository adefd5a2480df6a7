"""atune on an autoscaling Ray cluster: trials that do not fit wait for nodes, bounded.

The cluster is Ray's fake multi-node autoscaler on this machine: the test starts a head
itself (``ray start --head --block`` with ``--autoscaling-config``, 0 CPUs, free ports,
no dashboard), whose autoscaler loads Ray's fake node provider as an external provider
and starts "nodes" of 2 CPUs (at most two) as raylets on this machine. The head runs in
a session of its own with a private ``RAY_TMPDIR``, apart from the Ray the other tests
share and from any other Ray on the machine, and is stopped by its process group: never
with ``ray stop``, which would stop every Ray of this user. (Ray's
``AutoscalingCluster`` helper is not used for that reason: it runs ``ray stop --force``.)

One run of ``_autoscaling_scenarios.py`` (connected with ``RAY_ADDRESS``) serves every
test; each test checks one scenario's record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psutil = pytest.importorskip("psutil")

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.autoscaling,
    pytest.mark.slow,
    pytest.mark.timeout(600),
]

_SCRIPT = Path(__file__).with_name("_autoscaling_scenarios.py")
_SCENARIOS_LIMIT_S = 400
_NODE_TYPE_CPUS = 2
_MAX_WORKERS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _autoscaling_config(gcs_address: str) -> dict[str, Any]:
    """A fake multi-node cluster: a 0-CPU head, up to two nodes of 2 CPUs on demand."""
    return {
        "cluster_name": "atune-autoscaling-test",
        "max_workers": _MAX_WORKERS,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu2": {
                "resources": {"CPU": _NODE_TYPE_CPUS},
                "node_config": {},
                "min_workers": 0,
                "max_workers": _MAX_WORKERS,
            },
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        # The remaining fields the autoscaler's config schema requires, all empty.
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def _processes_of(ray_tmp: str, session: int) -> list[Any]:
    """Every process the head started: in its session, or naming its temporary directory."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            in_session = os.getsid(proc.pid) == session
        except OSError:  # ended meanwhile
            continue
        if in_session or any(ray_tmp in arg for arg in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _stop_head(head: subprocess.Popen[bytes], ray_tmp: str) -> list[str]:
    """Stop the head and every process it started; return those that had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)  # ``ray start --block`` stops its node on it
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=60)  # it drains for up to 30 s first
    # The fake nodes were started by the head's autoscaler; they end with it, or here.
    _, alive = psutil.wait_procs(_processes_of(ray_tmp, head.pid), timeout=30)
    left = []
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            left.append(" ".join(proc.cmdline())[:200])
            proc.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait()
    psutil.wait_procs(alive, timeout=30)
    return left


@pytest.fixture(scope="module")
def autoscaling_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The record of one run of every scenario (see ``_autoscaling_scenarios.py``)."""
    out = tmp_path_factory.mktemp("autoscaling") / "report.json"
    storage = tmp_path_factory.mktemp("autoscaling_storage")
    # Short: Ray's socket paths live under it and must stay below the OS limit.
    ray_tmp = tempfile.mkdtemp(prefix="ats-", dir="/tmp")
    gcs_address = f"127.0.0.1:{_free_port()}"
    config = Path(ray_tmp, "autoscaling.yaml")  # JSON is YAML
    config.write_text(json.dumps(_autoscaling_config(gcs_address)))
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    # The fake node provider refuses to run without it; the autoscaler checks every second.
    head_env = dict(env, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    head_log = Path(ray_tmp, "head.log")
    with head_log.open("wb") as log:
        head = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--block",
                f"--autoscaling-config={config}",
                "--node-ip-address=127.0.0.1",
                f"--port={gcs_address.rsplit(':', 1)[1]}",
                f"--ray-client-server-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}",
                "--num-cpus=0",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env=head_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one below
        )
    left: list[str] = []
    log_text = ""
    try:
        tests_root = str(Path(__file__).resolve().parent)
        env["RAY_ADDRESS"] = gcs_address
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_root, env.get("PYTHONPATH")]))
        for name in ("ATUNE_AUTOSCALING", "ATUNE_PENDING_RESOURCES_TIMEOUT_S"):
            env.pop(name, None)
        try:
            run = subprocess.run(
                [sys.executable, str(_SCRIPT), str(out), str(storage)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=_SCENARIOS_LIMIT_S,
            )
            log_text = run.stdout
        except subprocess.TimeoutExpired as exc:
            log_text = str(exc.stdout or "")
    finally:
        left = _stop_head(head, ray_tmp)
        head_text = head_log.read_text(errors="replace")[-3000:]
        shutil.rmtree(ray_tmp, ignore_errors=True)  # the cluster's logs and sockets
    if not out.exists():
        pytest.fail(f"the scenarios wrote no report:\n{log_text[-5000:]}\n--- head:\n{head_text}")
    report = json.loads(out.read_text())
    report["left_running"] = left
    report["still_running"] = [p.pid for p in _processes_of(ray_tmp, head.pid)]
    yield report


def _scenario(run: dict[str, Any], name: str) -> dict[str, Any]:
    out = run.get(name)
    assert out is not None, f"scenario {name!r} did not run"
    assert "failed" not in out, out["failed"]
    return out  # type: ignore[no-any-return]


def test_atune_detects_the_autoscaler(autoscaling_run: dict[str, Any]) -> None:
    """With ``ATUNE_AUTOSCALING`` unset, the head's autoscaler is found."""
    assert autoscaling_run["detected"] is True


def test_trials_larger_than_the_cluster_wait_for_it_to_grow(
    autoscaling_run: dict[str, Any],
) -> None:
    """Four 1-CPU trials on a 0-CPU head: the autoscaler starts both 2-CPU nodes, the
    four trials run at once on them, and every trial finishes."""
    grow = _scenario(autoscaling_run, "grow")
    assert grow["cpus_before"] == 0
    assert grow["cpus_after"] == _NODE_TYPE_CPUS * _MAX_WORKERS
    assert grow["peak"] == 4
    trials = grow["trials"]
    assert len(trials) == 4 and all(t["error"] is None for t in trials), trials
    nodes = {node for t in trials for node in t["nodes"]}
    assert len(nodes) == _MAX_WORKERS and autoscaling_run["head"] not in nodes


def test_a_request_the_cluster_never_grows_for_fails_after_the_timeout(
    autoscaling_run: dict[str, Any],
) -> None:
    """8 CPUs, where two nodes of 2 CPUs are the most the cluster grows to: the trial
    fails after ``ATUNE_PENDING_RESOURCES_TIMEOUT_S`` (5 s here) with an error naming the
    request, its bundles and the timeout; the 1-CPU trial behind it runs."""
    trials = {
        t["config"]["resources"]["CPU"]: t for t in _scenario(autoscaling_run, "timeout")["trials"]
    }
    big, small = trials[8], trials[1]
    assert small["error"] is None
    assert big["error_type"] == "PendingResourcesTimeoutError"
    message = big["error"]
    assert "request {'CPU': 8.0} (bundles [{'CPU': 8.0}], strategy PACK)" in message
    assert "within the pending-resources timeout of 5 s" in message
    assert big["error_attrs"]["timeout_s"] == 5.0
    assert big["error_attrs"]["bundles"] == [{"CPU": 8.0}]


def test_nothing_of_the_cluster_is_left_running(autoscaling_run: dict[str, Any]) -> None:
    """Stopping the head's process group ends the head and the nodes its autoscaler
    started (the fixture kills any straggler, and reports it here)."""
    assert autoscaling_run["left_running"] == []
    assert autoscaling_run["still_running"] == []
