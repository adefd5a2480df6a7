"""The service example (``examples/service/``) over real HTTP.

The app runs under a real uvicorn process (127.0.0.1, a free port); the tests talk to it
with httpx. One service serves most of the module: it joins the tests' Ray (2 CPUs, see
conftest.py) through ``RAY_ADDRESS``; each test makes experiments of its own. One test
runs the service as it is deployed, starting a Ray of its own, and checks that stopping
uvicorn shuts that Ray down: no process the service started may outlive it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service example needs the 'service' extra")
pytest.importorskip("uvicorn", reason="the service example needs the 'service' extra")
httpx = pytest.importorskip("httpx", reason="the service example needs the 'service' extra")
psutil = pytest.importorskip("psutil")

import atune  # noqa: E402
from atune.events import (  # noqa: E402
    ExperimentFinished,
    ResultReported,
    StreamEvent,
    TrialStarted,
    decode_stream_event,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(240)]

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "service"
CPUS = 2  # the tests' Ray (conftest.py)

sys.path.insert(0, str(APP_DIR))
from trainables import running_trials  # noqa: E402

sys.path.remove(str(APP_DIR))


class Service:
    """The running service: its base URL, client, trial activity directory and process."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, activity: Path) -> None:
        self.process = process
        self.url = url
        self.activity = activity
        self.client = httpx.Client(base_url=url, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def delete(self, path: str) -> dict[str, Any]:
        response = self.client.delete(path)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def events(self, experiment_id: str, **params: Any) -> Iterator[StreamEvent]:
        """The experiment's Server-Sent Events, decoded, as they arrive."""
        with self.client.stream(
            "GET", f"/experiments/{experiment_id}/events", params=params
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield decode_stream_event(line[len("data: ") :].encode())

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def finished(self, experiment_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status: dict[str, Any] = self.get(f"/experiments/{experiment_id}")
            return status if status["state"] != "running" else None

        status: dict[str, Any] = self.wait_for(f"{experiment_id} to end", done)
        return status


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop uvicorn as Ctrl+C does; its children (Ray's processes) must go with it."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the service did not stop within 60 s of SIGINT") from None
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    assert code == 0, f"the service exited with {code}"
    assert not alive, f"processes the service started outlived it: {alive}"


def _start(root: Path, **settings: str) -> Service:
    """Start the service under uvicorn in ``root``, with ``settings`` in its environment."""
    activity = root / "activity"
    activity.mkdir()
    src = str(Path(atune.__file__).resolve().parents[1])  # this checkout's atune
    env = {
        **os.environ,
        "ATUNE_SERVICE_STORAGE": str(root / "experiments"),
        "ATUNE_SERVICE_ACTIVITY_DIR": str(activity),
        "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    env.update(settings)
    port = _free_port()
    log_path = root / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"),
                *("--port", str(port), "--timeout-graceful-shutdown", "5"),
                *("--log-level", "warning", "--no-access-log"),
            ],
            cwd=APP_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the service did not start:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return Service(process, url, activity)
        if time.monotonic() > deadline:
            _stop(process)
            raise AssertionError(f"the service did not start in 120 s:\n{log_path.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Iterator[Service]:
    """The service for most tests: it joins the tests' Ray (2 CPUs), started once."""
    import ray

    address = ray.get_runtime_context().gcs_address
    running = _start(tmp_path_factory.mktemp("service"), RAY_ADDRESS=address)
    try:
        yield running
    finally:
        running.client.close()
        _stop(running.process)


def test_the_service_starts_its_own_ray_and_stops_it(tmp_path: Path) -> None:
    own = _start(tmp_path, ATUNE_SERVICE_CPUS="1")
    try:
        assert own.get("/cluster")["cpus"] == 1
        experiment = own.post("/experiments", {"num_samples": 2, "steps": 2, "step_seconds": 0})
        status = own.finished(experiment["id"])
        assert status["state"] == "finished" and status["trials_by_status"] == {"TERMINATED": 2}
    finally:
        own.client.close()
        _stop(own.process)  # and no process of its Ray outlives it


def _running(status: dict[str, Any]) -> int:
    running: int = status["trials_by_status"].get("RUNNING", 0)
    return running


def test_health_and_cluster(service: Service) -> None:
    assert service.get("/health") == {"status": "ok"}
    assert service.get("/cluster")["cpus"] == CPUS


def test_a_request_names_an_embedded_trainable_only(service: Service) -> None:
    response = service.client.post("/experiments", json={"trainable": "os:system"})
    assert response.status_code == 422
    response = service.client.post("/experiments", json={"code": "import os"})
    assert response.status_code == 422
    assert service.client.get("/experiments/nope").status_code == 404


def test_two_experiments_share_the_cluster_without_oversubscribing(service: Service) -> None:
    body = {"num_samples": 3, "steps": 5, "step_seconds": 0.1}
    ids = [service.post("/experiments", body)["id"] for _ in range(2)]

    def both_ended() -> list[dict[str, Any]] | None:
        statuses = [service.get(f"/experiments/{i}") for i in ids]
        # The services's own view, while it runs: never more trials running than CPUs.
        assert sum(_running(s) for s in statuses) <= CPUS
        return statuses if all(s["state"] != "running" for s in statuses) else None

    statuses = service.wait_for("both experiments to end", both_ended)
    assert [s["trials_by_status"] for s in statuses] == [{"TERMINATED": 3}] * 2
    # The trials' own record: each counted the trials running (in both experiments) when
    # it started; the largest count is the peak.
    counts = [
        event.result["concurrent"]
        for i in ids
        for event in service.events(i)
        if isinstance(event, ResultReported)
    ]
    assert len(counts) == 2 * 3 * 5
    assert max(counts) == CPUS  # the cluster was used in full, and never beyond


def test_events_stream_while_the_experiment_runs(service: Service) -> None:
    experiment = service.post("/experiments", {"num_samples": 2, "steps": 10, "step_seconds": 0.1})
    stream = service.events(experiment["id"])
    seen: list[StreamEvent] = []
    for event in stream:
        seen.append(event)
        if isinstance(event, ResultReported):
            break
    # A result came through the stream, and the experiment is still going.
    status = service.get(f"/experiments/{experiment['id']}")
    assert status["state"] == "running"
    seen += list(stream)
    assert isinstance(seen[-1], ExperimentFinished)
    results = [e for e in seen if isinstance(e, ResultReported)]
    assert len(results) == 2 * 10
    assert service.get(f"/experiments/{experiment['id']}")["state"] == "finished"


def _health_latencies(service: Service, n: int, *, min_seconds: float = 0.0) -> list[float]:
    """``n`` requests at least, and for ``min_seconds`` at least."""
    service.get("/health")  # the connection is open
    latencies: list[float] = []
    until = time.perf_counter() + min_seconds
    while len(latencies) < n or time.perf_counter() < until:
        start = time.perf_counter()
        response = service.client.get("/health")
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 200
    return latencies


def _p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def test_health_latency_stays_low_while_tuning(service: Service) -> None:
    idle = _p99(_health_latencies(service, 200))
    if idle >= 0.020:  # the machine is too busy to measure what tuning adds
        pytest.skip(f"/health p99 is {idle * 1000:.1f} ms with nothing running: busy machine")
    experiment = service.post("/experiments", {"num_samples": 4, "steps": 60, "step_seconds": 0.05})
    path = f"/experiments/{experiment['id']}"
    before = service.wait_for(
        "trials to report", lambda: (s := service.get(path))["num_results"] >= CPUS and s
    )
    # For a second at least: results reach the driver in batches up to 0.25 s apart, so a
    # shorter window (200 requests take 0.2 s on a quiet machine) may see none arrive.
    latencies = _health_latencies(service, 200, min_seconds=1.0)
    after = service.get(path)
    service.delete(path)
    # Measured while tuning: the experiment ran, and reported, all along.
    assert after["state"] == "running" and after["num_results"] > before["num_results"]
    p99 = _p99(latencies)
    # The bound issue 12 sets for the service, measured at the client over HTTP.
    assert p99 < 0.020, (
        f"/health p99 {p99 * 1000:.1f} ms during tuning (before it: {idle * 1000:.1f} ms)"
    )


def test_cancel_frees_everything_and_resume_completes(service: Service) -> None:
    steps = 30
    experiment = service.post(
        "/experiments", {"num_samples": 2, "steps": steps, "step_seconds": 0.1}
    )
    path = f"/experiments/{experiment['id']}"
    # Wait until both trials have a checkpoint (one every 5 steps).
    service.wait_for(
        "a checkpoint of each trial", lambda: service.get(path)["num_results"] >= 2 * 7
    )

    cancelled = service.delete(path)
    assert cancelled["state"] == "cancelled"
    # Everything is free: every CPU of the cluster, and no trial is still running.
    service.wait_for("the CPUs to be free", lambda: service.get("/cluster")["cpus_free"] == CPUS)
    service.wait_for("the trials to stop", lambda: not running_trials(str(service.activity)))

    # A new experiment gets every CPU.
    other = service.post("/experiments", {"num_samples": CPUS, "steps": 10, "step_seconds": 0.1})
    other_path = f"/experiments/{other['id']}"
    service.wait_for("all CPUs in use", lambda: _running(service.get(other_path)) == CPUS)
    assert service.finished(other["id"])["state"] == "finished"

    resumed = service.post(f"{path}/resume")
    assert resumed["runs"] == 2
    assert resumed["state"] == "running"
    assert service.client.post(f"{path}/resume").status_code == 409  # it runs already
    events = list(service.events(experiment["id"]))
    status = service.get(path)
    assert status["state"] == "finished"
    assert status["trials_by_status"] == {"TERMINATED": 2}
    # Each trial continued from its checkpoint and ran to its last step.
    started = [e for e in events if isinstance(e, TrialStarted)]
    assert len(started) == 2 and all(e.restored_from is not None for e in started)
    results = [e for e in events if isinstance(e, ResultReported)]
    first_steps: dict[str, int] = {}
    last_steps: dict[str, int] = {}
    for event in results:
        first_steps.setdefault(event.trial_id, event.result["step"])
        last_steps[event.trial_id] = event.result["step"]
    assert all(step > 1 for step in first_steps.values())
    assert list(last_steps.values()) == [steps, steps]


def test_the_events_are_json_a_browser_can_read(service: Service) -> None:
    experiment = service.post("/experiments", {"num_samples": 1, "steps": 2, "step_seconds": 0})
    service.finished(experiment["id"])
    with service.client.stream("GET", f"/experiments/{experiment['id']}/events") as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines and all(line.startswith("data: ") for line in lines)
    types = [json.loads(line[len("data: ") :])["type"] for line in lines]
    assert types[0] == "experiment_started" and types[-1] == "experiment_finished"
