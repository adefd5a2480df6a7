"""A trial whose worker process dies is reported with the real cause, never Ray's guess.

The message builder and the in-process records are tested without Ray (the records in a
child process, since they wrap ``os._exit`` and take over signals); the rest runs real
trials on the shared Ray instance and kills their workers in each way a process can die.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _events import EventLog
from atune.errors import WorkerDiedError
from atune.events import TrialErrored
from atune.execution._exit_record import EXIT_FILE, FAULT_FILE, collect, describe_death

# Ray's reports, as Ray 2.60 words them (abridged where it repeats itself).
RAY_GUESS = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: _TrialActor\n"
    "\tactor_id: c6d07972a61290d210fa9ac301000000\n\tpid: 27294\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of "
    "file. Some common causes include: (1) the process was killed by the OOM killer due to "
    "high memory usage, (2) ray stop --force was called, or (3) the worker crashed "
    "unexpectedly due to SIGSEGV or another unexpected error."
)
RAY_SIGTERM = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: _TrialActor\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker exits unexpectedly. Worker exits with an exit code 1. The "
    "process receives a SIGTERM."
)
RAY_EXIT_CODE = RAY_SIGTERM.replace("exit code 1. The process receives a SIGTERM.", "exit code 4.")
RAY_NODE_DIED = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: _TrialActor\n"
    "The actor died because its node has died. Node Id: 8aca9c92"
)
RAY_KILLED = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: _TrialActor\n"
    "The actor is dead because it was killed by `ray.kill`."
)


# ------------------------------------------------------------------ message builder
def test_a_recorded_os_exit_is_named_instead_of_rays_guess() -> None:
    cause = describe_death(RAY_GUESS, exit_record="exited with code 3 (os._exit)")
    assert cause == "the worker exited with code 3 (os._exit)"


def test_a_recorded_signal_is_named() -> None:
    assert describe_death(RAY_GUESS, exit_record="received SIGHUP") == "the worker received SIGHUP"


def test_a_crash_is_named_by_faulthandlers_first_line() -> None:
    fault = 'Fatal Python error: Segmentation fault\n\nThread 0x1 (most recent call first):\n  File "x.py"'
    cause = describe_death(RAY_GUESS, fault_record=fault)
    assert cause == "the worker crashed: Fatal Python error: Segmentation fault"


def test_without_records_sigkill_is_inferred_by_elimination_and_ray_guess_dropped() -> None:
    cause = describe_death(RAY_GUESS)
    assert "SIGKILL" in cause and "elimination" in cause and "node" in cause
    assert "OOM killer due to" not in cause and "ray stop" not in cause


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (RAY_SIGTERM, "the worker received SIGTERM"),
        (RAY_EXIT_CODE, "the worker exited with code 4"),
        (RAY_KILLED, "Ray reports: The actor is dead because it was killed by `ray.kill`."),
    ],
)
def test_a_cause_ray_states_as_fact_is_kept(report: str, expected: str) -> None:
    assert describe_death(report) == expected


def test_node_death_and_preemption_reported_by_ray_win_over_records() -> None:
    cause = describe_death(RAY_NODE_DIED, exit_record="received SIGHUP")
    assert cause.startswith("the worker's node died") and "8aca9c92" in cause
    assert describe_death(RAY_GUESS, preempted=True) == "the worker's node was preempted"


def test_collect_reads_and_removes_the_records(tmp_path: Path) -> None:
    (tmp_path / EXIT_FILE).write_text("exited with code 3 (os._exit)")
    (tmp_path / FAULT_FILE).write_text("")
    assert collect(str(tmp_path)) == ("exited with code 3 (os._exit)", "")
    assert list(tmp_path.iterdir()) == []
    assert collect(str(tmp_path)) == ("", "")
    assert collect(None) == ("", "")


# ------------------------------------------------------- records in a child process
def _die_in_child(tmp_path: Path, how: str, before: str = "") -> tuple[int, tuple[str, str]]:
    """In a fresh interpreter: run ``before``, set up the records off the main thread (as
    in an async Ray actor) watching ``tmp_path``, then run ``how``."""
    script = "\n".join(
        [
            "import ctypes, os, signal, sys, threading, time",
            "from atune.execution import _exit_record as r",
            before,
            f"def setup(): r.install(); r.watch({str(tmp_path)!r})",
            "t = threading.Thread(target=setup); t.start(); t.join()",
            how,
        ]
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    return proc.returncode, collect(str(tmp_path))


def test_os_exit_from_any_thread_is_recorded_and_still_exits(tmp_path: Path) -> None:
    how = "t = threading.Thread(target=os._exit, args=(7,)); t.start(); t.join()"
    code, (exit_text, fault_text) = _die_in_child(tmp_path, how)
    assert code == 7
    assert exit_text == "exited with code 7 (os._exit)"
    assert fault_text == ""


def test_a_default_action_signal_is_recorded_and_still_kills(tmp_path: Path) -> None:
    how = "os.kill(os.getpid(), signal.SIGUSR1); threading.Event().wait(30)"
    code, (exit_text, _) = _die_in_child(tmp_path, how)
    assert code == -signal.SIGUSR1
    assert exit_text == "received SIGUSR1"


def test_sigterm_is_recorded_then_handled_by_the_previous_python_handler(
    tmp_path: Path,
) -> None:
    before = "signal.signal(signal.SIGTERM, lambda *_: sys.exit(9))  # as Ray's handler does"
    how = (
        "threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM)).start()\n"
        "while True: time.sleep(0.01)"
    )
    code, (exit_text, _) = _die_in_child(tmp_path, how, before)
    assert code == 9
    assert exit_text == "received SIGTERM"


def test_sigint_is_not_recorded_since_a_worker_survives_it(tmp_path: Path) -> None:
    # Python's KeyboardInterrupt handler, even where the test runner was started with
    # SIGINT ignored (a background job of a non-interactive shell): children inherit that.
    before = "signal.signal(signal.SIGINT, signal.default_int_handler)"
    how = (
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    os._exit(5)"
    )
    code, (exit_text, _) = _die_in_child(tmp_path, how, before)
    assert code == 5
    assert exit_text == "exited with code 5 (os._exit)"


def test_a_fatal_signal_is_recorded_with_the_python_stack(tmp_path: Path) -> None:
    code, (exit_text, fault_text) = _die_in_child(tmp_path, "ctypes.string_at(0)")
    assert code == -signal.SIGSEGV
    assert exit_text == ""
    assert fault_text.startswith("Fatal Python error: Segmentation fault")
    assert "string_at" in fault_text


def test_only_the_first_record_is_kept(tmp_path: Path) -> None:
    how = "r._record('received SIGHUP'); os._exit(1)"
    _, (exit_text, _) = _die_in_child(tmp_path, how)
    assert exit_text == "received SIGHUP"


@pytest.mark.parametrize("how", ["ctypes.string_at(0)", "os._exit(4)"], ids=["crash", "exit"])
def test_a_death_after_a_trial_switch_is_recorded_for_the_new_trial_only(
    tmp_path: Path, how: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    switch = f"r.watch({str(first)!r}); r.watch({str(second)!r})\n{how}"
    _die_in_child(first, switch)
    assert list(first.iterdir()) == []  # the first trial ended normally: no records left
    assert collect(str(first)) == ("", "")
    exit_text, fault_text = collect(str(second))
    if how.startswith("ctypes"):
        assert fault_text.startswith("Fatal Python error: Segmentation fault")
    else:
        assert exit_text == "exited with code 4 (os._exit)"


def test_unwatch_removes_the_records_and_stops_recording(tmp_path: Path) -> None:
    code, records = _die_in_child(tmp_path, "r.unwatch(); os._exit(2)")
    assert code == 2
    assert records == ("", "")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------- through Ray
def _dies_on_first_attempt(config: dict[str, Any]) -> None:
    """Reports once; on its first attempt (no marker yet) its process then dies."""
    tune.report({"step": 1})
    marker = Path(config["marker_dir"], "attempted")
    if config["how"] != "none" and not marker.exists():
        marker.touch()
        _die(config["how"])
    tune.report({"step": 2})


def _die(how: str) -> None:
    if how == "exit":
        os._exit(3)
    if how == "segv":
        ctypes.string_at(0)
    os.kill(os.getpid(), getattr(signal, how))
    # A caught signal ends the process from another thread, and Ray handles SIGTERM
    # gracefully: the worker exits once its running call returns. So keep reporting.
    while True:
        time.sleep(0.1)
        tune.report({"step": 1})


def _fit(storage: str, param_space: dict[str, Any], max_failures: int) -> tuple[Any, EventLog]:
    events = EventLog()
    results = tune.Tuner(
        _dies_on_first_attempt,
        param_space=param_space,
        run_config=tune.RunConfig(
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=[events],
        ),
    ).fit()
    return results, events


@pytest.mark.ray
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("exit", ["exited with code 3", "os._exit"]),
        ("SIGKILL", ["SIGKILL", "elimination"]),
        ("SIGTERM", ["received SIGTERM"]),
        # A catchable signal whose default action kills. Not SIGHUP: Ray's workers inherit
        # its disposition from the process that started Ray, and under ``nohup`` they
        # ignore it (and live on, reporting forever).
        ("SIGUSR2", ["received SIGUSR2"]),
        ("segv", ["crashed: Fatal Python error: Segmentation fault"]),
    ],
)
def test_a_worker_death_is_retried_and_reported_with_its_cause(
    storage: str, tmp_path: Path, how: str, expected: list[str]
) -> None:
    results, events = _fit(storage, {"how": how, "marker_dir": str(tmp_path)}, max_failures=1)
    (result,) = list(results)
    assert result.error is None
    assert result.metrics["step"] == 2
    (errored,) = [e for e in events.events if isinstance(e, TrialErrored)]
    assert errored.will_retry
    assert errored.error_type == "atune.errors.WorkerDiedError"
    for text in expected:
        assert text in errored.message
    assert "OOM" not in errored.message
    if how == "segv":  # faulthandler's stack of the crashing thread reaches the user
        assert "_dies_on_first_attempt" in errored.traceback
    assert not Path(result.path, EXIT_FILE).exists()
    assert not Path(result.path, FAULT_FILE).exists()


@pytest.mark.ray
def test_without_retries_the_trial_errors_and_the_others_finish(
    storage: str, tmp_path: Path
) -> None:
    param_space = {
        "how": tune.grid_search(["none", "exit", "none"]),
        "marker_dir": str(tmp_path),
    }
    results, _ = _fit(storage, param_space, max_failures=0)
    failed = [r for r in results if r.error is not None]
    finished = [r for r in results if r.error is None]
    (dead,) = failed
    assert isinstance(dead.error, WorkerDiedError)
    assert "exited with code 3 (os._exit)" in str(dead.error)
    assert len(finished) == 2
    assert all(r.metrics["step"] == 2 and r.config["how"] == "none" for r in finished)  # type: ignore[index]


async def test_calls_failing_on_one_death_all_name_its_recorded_cause(tmp_path: Path) -> None:
    # A launch and a start watch can both fail on one death; reading the records removes
    # them, so the cause is worked out once and given to both.
    from ray.exceptions import RayActorError

    from atune.execution._ray import _RayRunner

    (tmp_path / EXIT_FILE).write_text("exited with code 3 (os._exit)")
    runner = _RayRunner(actor=None, resources=tune.PlacementGroupFactory([{"CPU": 1}]), pg=None)
    runner._trial_dir = str(tmp_path)

    async def dead_actor_call() -> None:
        raise RayActorError()

    async def failure() -> str:
        with pytest.raises(WorkerDiedError) as raised:
            await runner._await(dead_actor_call())
        return str(raised.value)

    messages = await asyncio.gather(failure(), failure())
    assert all("exited with code 3 (os._exit)" in message for message in messages), messages


class _Unreachable:
    """An actor handle whose ``ping`` Ray reports unavailable ``times`` times, then dead."""

    def __init__(self, times: int) -> None:
        self.pings = 0
        self.times = times
        self.ping = self

    def options(self, **_: Any) -> _Unreachable:
        return self

    def remote(self) -> Any:
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        self.pings += 1

        async def answer() -> None:
            if self.pings <= self.times:
                raise ActorUnavailableError("connection reset", None)
            raise ActorDiedError()

        return answer()


async def test_an_actor_ray_reports_unavailable_is_reported_once_ray_says_it_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node lost without notice is unreachable before Ray declares it dead: the failure
    # waits for that verdict (which names the node), so that the retry is not placed on
    # the dying node. The multi-node version is in tests/test_cluster.py.
    from ray.exceptions import ActorUnavailableError

    from atune.execution import _ray

    monkeypatch.setattr(_ray, "_UNAVAILABLE_POLL_S", 0.0)
    actor = _Unreachable(times=2)
    runner = _ray._RayRunner(
        actor=actor, resources=tune.PlacementGroupFactory([{"CPU": 1}]), pg=None
    )
    runner._trial_dir = str(tmp_path)

    async def unavailable_call() -> None:
        raise ActorUnavailableError("connection reset", None)

    with pytest.raises(WorkerDiedError) as raised:
        await runner._await(unavailable_call())
    assert actor.pings == 3
    assert raised.value.error_type == "ray.exceptions.ActorDiedError"
