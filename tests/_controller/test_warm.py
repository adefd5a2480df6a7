"""Warm runners between experiments on one event loop (``_controller/_warm.py``).

The trainables log what each instance does (``setup``, ``reset``, ``cleanup``) to a file
named in the config, one line each with the instance's own id, so a test sees which
instance served which trial in which process, with no timing.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from _events import EventLog
from atune import _fit
from atune._controller._warm import IDLE_TIMEOUT_ENV, WarmRunners, trainable_identity
from atune.errors import ConfigError
from atune.events import TrialStarted
from atune.execution._allocator import Allocator
from atune.execution._backend import LocalBackend

pytestmark = pytest.mark.timeout(60)


class Logged(tune.Trainable):
    """Logs ``setup``/``reset``/``cleanup`` with its instance id; reports it and its pid."""

    def setup(self, config: dict[str, Any]) -> None:
        self.instance = uuid.uuid4().hex[:8]
        self.count = 0
        self._log("setup", config)

    def step(self) -> dict[str, Any]:
        self.count += 1
        return {"instance": self.instance, "pid": os.getpid(), "done": self.count >= 2}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        accept = bool(new_config.get("accept", True))
        self._log("reset" if accept else "declined", new_config)
        self.count = 0
        return accept

    def cleanup(self) -> None:
        self._log("cleanup", self.config)

    def _log(self, what: str, config: dict[str, Any]) -> None:
        with open(config["log"], "a") as f:
            f.write(f"{what} {self.instance}\n")


class OtherLogged(Logged):
    """Another trainable (a different class) with the same behaviour."""


def _lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def _count(log: Path, what: str) -> int:
    return sum(1 for kind, _ in _lines(log) if kind == what)


def _tuner(
    trainable: Any, storage: str, log: Path, *, samples: int = 2, backend: str = "local", **cfg: Any
) -> tuple[tune.Tuner, EventLog]:
    events = EventLog()
    tuner = tune.Tuner(
        trainable,
        param_space={"log": str(log), **cfg},
        tune_config=tune.TuneConfig(
            backend=backend,  # type: ignore[arg-type]
            num_samples=samples,
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            callbacks=[events],
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    )
    return tuner, events


def _started(events: EventLog) -> list[TrialStarted]:
    return [e for e in events.events if isinstance(e, TrialStarted)]


def _warm(kind: str = "local") -> WarmRunners:
    return _fit._warm[asyncio.get_running_loop()][kind]


def _allocator(kind: str = "local") -> Allocator:
    return _fit._allocators[asyncio.get_running_loop()][kind]


async def _until(condition: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


# ------------------------------------------------------------------ the local backend
def test_a_second_experiment_reuses_the_first_ones_runner_and_loop_exit_stops_it(
    storage: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    seen: dict[str, Any] = {}

    async def main() -> None:
        first, _ = _tuner(Logged, storage, log)
        second, events = _tuner(Logged, storage, log)
        a = await first.fit()
        b = await second.fit()
        seen["instances"] = {r.metrics["instance"] for r in a} | {r.metrics["instance"] for r in b}
        seen["reused"] = [e.reused for e in _started(events)]
        seen["warm_after"] = len(_warm())
        seen["cleanups_before_exit"] = _count(log, "cleanup")

    asyncio.run(main())
    assert len(seen["instances"]) == 1  # one instance served all four trials
    assert seen["reused"] == [True, True]  # the second experiment's first trial too
    assert _count(log, "setup") == 1 and _count(log, "reset") == 3
    assert seen["warm_after"] == 1 and seen["cleanups_before_exit"] == 0
    assert _count(log, "cleanup") == 1  # stopped when the loop shut down


def test_a_shut_down_loop_is_not_kept_alive_by_its_warm_runners(
    storage: str, tmp_path: Path
) -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        tuner, _ = _tuner(Logged, storage, tmp_path / "log")
        await tuner.fit()
        assert len(_warm()) == 1

    asyncio.run(main())
    gc.collect()
    assert loops[0]() is None  # a sync fit() makes a loop per call: none may leak


def _report_thread(config: dict[str, Any]) -> None:
    tune.report({"thread": threading.get_ident()})


def _with_data(config: dict[str, Any], data: list[int]) -> None:
    tune.report({"n": len(data)})


async def test_the_same_function_in_two_tuners_gets_the_warm_runner(storage: str) -> None:
    first, _ = _tuner(_report_thread, storage, Path(os.devnull))
    second, second_events = _tuner(_report_thread, storage, Path(os.devnull))
    a = await first.fit()
    b = await second.fit()
    assert [e.reused for e in _started(second_events)] == [True, True]
    assert {r.metrics["thread"] for r in a} == {r.metrics["thread"] for r in b}


def test_trainable_identity() -> None:
    assert trainable_identity(Logged) == trainable_identity(Logged)
    assert trainable_identity(Logged) != trainable_identity(OtherLogged)
    from atune.trainable._function import wrap_function

    assert trainable_identity(wrap_function(_report_thread)) == trainable_identity(
        wrap_function(_report_thread)
    )
    assert trainable_identity(wrap_function(_report_thread)) != trainable_identity(
        wrap_function(_started)  # type: ignore[arg-type]
    )
    copied = tune.with_resources(_report_thread, {"cpu": 1})  # a copy of the function
    assert trainable_identity(wrap_function(copied)) == trainable_identity(
        wrap_function(_report_thread)
    )
    with_data = tune.with_parameters(_with_data, data=[1])
    assert trainable_identity(wrap_function(with_data)) == trainable_identity(
        wrap_function(with_data)
    )
    other_data = tune.with_parameters(_with_data, data=[1])  # equal, but not the same
    assert trainable_identity(wrap_function(with_data)) != trainable_identity(
        wrap_function(other_data)
    )


async def test_a_declined_reset_discards_the_warm_runner(storage: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    first, _ = _tuner(Logged, storage, log, samples=1)
    second, second_events = _tuner(Logged, storage, log, samples=1, accept=False)
    third, third_events = _tuner(Logged, storage, log, samples=1)
    a = await first.fit()
    b = await second.fit()
    (declined,) = [i for kind, i in _lines(log) if kind == "declined"]
    assert declined == a[0].metrics["instance"]  # the first's runner declined the second
    assert [e.reused for e in _started(second_events)] == [False]
    assert b[0].metrics["instance"] != declined
    assert len(_warm()) == 1  # the second's own runner; the declined one is gone
    c = await third.fit()
    assert [e.reused for e in _started(third_events)] == [True]
    assert c[0].metrics["instance"] == b[0].metrics["instance"]


@pytest.mark.timeout(30)  # well under the 60 s idle timeout that would end the wait
async def test_another_trainable_never_gets_it_and_evicts_it_when_short(
    storage: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    cpus = LocalBackend().capacity()["CPU"]
    first, _ = _tuner(tune.with_resources(Logged, {"cpu": cpus}), storage, log, samples=1)
    second, events = _tuner(tune.with_resources(OtherLogged, {"cpu": cpus}), storage, log)
    await first.fit()
    assert len(_warm()) == 1 and _allocator().in_use == {"CPU": cpus}
    # The warm runner holds every CPU: the other trainable's trial waits at the allocator,
    # which evicts it at once (else it would wait for the 60 s idle timeout).
    results = await second.fit()
    assert results.num_errors == 0 and [e.reused for e in _started(events)] == [False, True]
    kinds = [kind for kind, _ in _lines(log)]
    assert kinds[:3] == ["setup", "cleanup", "setup"]  # first's cleanup before the other's
    assert len({r.metrics["instance"] for r in results}) == 1


async def test_the_idle_timeout_stops_warm_runners(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_TIMEOUT_ENV, "0.3")
    log = tmp_path / "log"
    tuner, _ = _tuner(Logged, storage, log)
    await tuner.fit()
    assert len(_warm()) == 1 and _count(log, "cleanup") == 0
    assert _allocator().in_use == {"CPU": 1.0}  # its resources stay held while warm
    await _until(lambda: len(_warm()) == 0 and _allocator().in_use == {})
    assert _count(log, "cleanup") == 1  # stopped: cleanup ran, then the lease went


async def test_a_zero_timeout_keeps_nothing_warm(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_TIMEOUT_ENV, "0")
    log = tmp_path / "log"
    tuner, _ = _tuner(Logged, storage, log)
    await tuner.fit()
    assert _count(log, "cleanup") == 1  # stopped before fit() returned, as without warmth
    assert len(_warm()) == 0 and _allocator().in_use == {}


@pytest.mark.parametrize("raw", ["-1", "soon", "nan", "inf"])
async def test_a_bad_timeout_is_a_config_error(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(IDLE_TIMEOUT_ENV, raw)
    tuner, _ = _tuner(Logged, storage, tmp_path / "log")
    with pytest.raises(ConfigError, match=IDLE_TIMEOUT_ENV):
        await tuner.fit()


_blocking = threading.Event()
_release = threading.Event()


class Blocking(Logged):
    """Blocks its first step (of a trial whose config says so) until released."""

    def step(self) -> dict[str, Any]:
        if self.config.get("block"):
            _blocking.set()
            _release.wait(30)
        return super().step()


async def test_a_cancelled_experiment_kills_the_warm_runner_it_took(
    storage: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    _blocking.clear()
    _release.clear()
    first, _ = _tuner(Blocking, storage, log, samples=1)
    await first.fit()
    assert len(_warm()) == 1
    second, _ = _tuner(Blocking, storage, log, samples=1, block=True)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(second.fit)
            await anyio.to_thread.run_sync(_blocking.wait, 20)
            tg.cancel_scope.cancel()
    finally:
        _release.set()
    assert [kind for kind, _ in _lines(log)] == ["setup", "reset"]  # it took the warm one
    assert len(_warm()) == 0 and _allocator().in_use == {}  # killed, lease released


# ------------------------------------------------------------------------------- Ray
@pytest.mark.ray
async def test_ray_a_second_experiment_reuses_the_actor_until_the_idle_timeout(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.exceptions import RayActorError

    log = tmp_path / "log"
    first, _ = _tuner(Logged, storage, log, backend="ray")
    a = await first.fit()
    monkeypatch.setenv(IDLE_TIMEOUT_ENV, "0.5")  # for the runner the second one leaves
    second, events = _tuner(Logged, storage, log, backend="ray")
    b = await second.fit()
    assert a.num_errors == b.num_errors == 0
    assert [e.reused for e in _started(events)] == [True, True]
    assert len({r.metrics["pid"] for r in [*a, *b]}) == 1  # one actor process throughout
    assert len({r.metrics["instance"] for r in [*a, *b]}) == 1
    assert _count(log, "setup") == 1
    (runner,) = _warm("ray").runners
    actor = runner._actor  # type: ignore[attr-defined]
    await _until(lambda: len(_warm("ray")) == 0 and _allocator("ray").in_use == {})
    assert _count(log, "cleanup") == 1  # stopped, not just killed
    with pytest.raises(RayActorError):
        await actor.ping.remote()  # the actor is gone


@pytest.mark.ray
def test_ray_no_warm_actor_outlives_its_loop(storage: str, tmp_path: Path) -> None:
    import ray
    from ray.exceptions import RayActorError

    log = tmp_path / "log"
    actors: list[Any] = []

    async def main() -> None:
        tuner, _ = _tuner(Logged, storage, log, samples=1, backend="ray")
        await tuner.fit()
        actors.extend(runner._actor for runner in _warm("ray").runners)  # type: ignore[attr-defined]

    asyncio.run(main())  # the default idle timeout (60 s) has not passed
    assert len(actors) == 1 and _count(log, "cleanup") == 1
    with pytest.raises(RayActorError):
        ray.get(actors[0].ping.remote(), timeout=30)
