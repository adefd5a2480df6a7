"""The live run handle: ``async with tuner.start() as run:`` (in-process backend)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import atune as tune
from atune.errors import ConfigError
from atune.events import (
    ExperimentFinished,
    ExperimentStarted,
    ResultReported,
    StreamEvent,
    SubscriberLagged,
    TrialCompleted,
    decode_stream_event,
    encode_event,
)

pytestmark = pytest.mark.timeout(60)

# Gates the test opens for trainables running in worker threads, by name (a config value
# must copy, a threading.Event does not).
_GATES: dict[str, threading.Event] = {}


@pytest.fixture
def gate() -> Iterator[str]:
    name = uuid.uuid4().hex
    _GATES[name] = threading.Event()
    yield name
    _GATES.pop(name).set()


def _gated(config: dict[str, Any]) -> None:
    """Reports ``before`` results, waits for the test to open its gate, reports the rest."""
    for i in range(config["steps"]):
        if i == config["before"]:
            assert _GATES[config["gate"]].wait(timeout=30), "the test never opened the gate"
        tune.report({"score": i * config["x"]})


def _tuner(storage: str, gate: str, *, xs: list[int], steps: int = 5, before: int = 3) -> Any:
    return tune.Tuner(
        _gated,
        param_space={
            "x": tune.grid_search(xs),
            "gate": gate,
            "steps": steps,
            "before": before,
        },
        tune_config=tune.TuneConfig(
            backend="local", metric="score", mode="max", max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )


async def _until(stream: Any, count: int, kind: type) -> list[StreamEvent]:
    """Read ``stream`` until ``count`` events of ``kind`` arrived; all read events."""
    seen: list[StreamEvent] = []
    async for event in stream:
        seen.append(event)
        if sum(isinstance(e, kind) for e in seen) == count:
            return seen
    raise AssertionError(f"the stream ended after {seen!r}")


async def _all(stream: Any) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_events_arrive_while_the_run_runs(storage: str, gate: str) -> None:
    async with _tuner(storage, gate, xs=[1]).start() as run:
        stream = run.events()
        early = await _until(stream, 3, ResultReported)
        # The trial is held at its gate: these results came while the run was running.
        assert run.state == "running"
        assert isinstance(early[0], ExperimentStarted)
        assert [e.result["score"] for e in early if isinstance(e, ResultReported)] == [0, 1, 2]
        _GATES[gate].set()
        rest = await _all(stream)
    assert isinstance(rest[-1], ExperimentFinished)
    scores = [e.result["score"] for e in early + rest if isinstance(e, ResultReported)]
    assert scores == [0, 1, 2, 3, 4]
    results = await run.wait()
    assert len(results) == 1 and results.num_errors == 0
    assert run.state == "finished"


async def test_subscribers_see_the_same_events_and_replay_from_start(
    storage: str, gate: str
) -> None:
    async with _tuner(storage, gate, xs=[1, 2]).start() as run:
        first, second = run.events(), run.events()
        reading = asyncio.ensure_future(_all(first))
        await _until(second, 3, ResultReported)  # the first trial waits at its gate
        replay = run.events()  # from the start: what was seen so far, then live
        from_now = run.events(from_start=False)
        _GATES[gate].set()
        seen_second = await _all(second)
        seen_first = await reading
        seen_replay = await _all(replay)
        seen_now = await _all(from_now)

    def encoded(events: list[StreamEvent]) -> list[bytes]:
        return [encode_event(e) for e in events]

    history = encoded(seen_first)
    assert not any(isinstance(e, SubscriberLagged) for e in seen_first)
    assert sum(isinstance(e, TrialCompleted) for e in seen_first) == 2
    assert seen_second and encoded(seen_second) == history[-len(seen_second) :]
    assert encoded(seen_replay) == history
    assert 0 < len(seen_now) < len(history)
    assert encoded(seen_now) == history[-len(seen_now) :]
    # After the run: a replay of everything, and a stream from now that is empty.
    assert encoded(await _all(run.events())) == history
    assert await _all(run.events(from_start=False)) == []
    assert run.status().num_events == len(history)


async def test_status_and_results_mid_run(storage: str, gate: str) -> None:
    async with _tuner(storage, gate, xs=[1, 2]).start() as run:
        assert run.status().state == "running"
        await _until(run.events(), 3, ResultReported)
        status = run.status()
        assert status.num_trials == 2
        assert status.trials_by_status.get("RUNNING") == 1
        assert sum(status.trials_by_status.values()) == 2
        assert status.num_results == 3
        assert status.best is not None
        assert (status.best.metric, status.best.value) == ("score", 2.0)
        assert status.best.config["x"] == 1
        assert status.experiment_path == run.experiment_path
        json.loads(msgspec.json.encode(status))  # a service can send it as it is

        partial = run.results()
        assert len(partial) == 2
        assert partial[0].metrics["score"] == 2
        assert partial.get_best_result().metrics["score"] == 2
        _GATES[gate].set()
    final = run.status()
    assert final.state == "finished"
    assert final.trials_by_status == {"TERMINATED": 2}
    assert final.best is not None and final.best.value == 8.0  # 4 * x=2
    assert run.results() is await run.wait()


async def test_cancel_is_clean_and_restore_completes(storage: str, gate: str) -> None:
    async with _tuner(storage, gate, xs=[1, 2]).start() as run:
        await _until(run.events(), 3, ResultReported)
        run.cancel()
        partial = await run.wait()
    assert run.state == "cancelled" and run.status().state == "cancelled"
    # Nothing runs any more: the trials it stopped are counted as interrupted, not RUNNING.
    assert run.status().trials_by_status == {"INTERRUPTED": 2}
    assert len(partial) == 2
    _GATES[gate].set()
    restored = tune.Tuner.restore(run.experiment_path, _gated)
    results = await restored.fit()
    assert results.num_errors == 0
    assert sorted(r.metrics["score"] for r in results) == [4, 8]


async def test_leaving_the_block_with_an_error_cancels_the_run(storage: str, gate: str) -> None:
    tuner = _tuner(storage, gate, xs=[1])
    with pytest.raises(KeyError):
        async with tuner.start() as run:
            await _until(run.events(), 1, ResultReported)
            raise KeyError("the caller's own error")
    assert run.state == "cancelled"
    _GATES[gate].set()
    results = await tune.Tuner.restore(run.experiment_path, _gated).fit()  # lock released
    assert results.num_errors == 0


async def test_a_subscriber_that_never_reads_does_not_hold_up_the_run(
    storage: str, gate: str
) -> None:
    _GATES[gate].set()
    # Without a stuck subscriber ...
    async with _tuner(storage, gate, xs=[1, 2, 3], steps=40).start() as plain:
        pass
    # ... and with one that never reads, with room for 4 events: the run completes all
    # the same, with the same results.
    async with _tuner(storage, gate, xs=[1, 2, 3], steps=40).start() as run:
        stuck = run.events(buffer_size=4)
        reader = run.events()
        seen = await _all(reader)
    assert run.state == "finished"
    results = await run.wait()
    assert sorted(r.metrics["score"] for r in results) == sorted(
        r.metrics["score"] for r in await plain.wait()
    )
    assert run.status().num_results == plain.status().num_results == 120
    # It learns that it fell behind, and by how much, then reads the newest four events.
    late = await _all(stuck)
    assert isinstance(late[0], SubscriberLagged)
    assert late[0].dropped == len(seen) - 4 == stuck.dropped
    assert [encode_event(e) for e in late[1:]] == [encode_event(e) for e in seen[-4:]]
    assert isinstance(late[-1], ExperimentFinished)


async def test_a_short_history_starts_a_replay_with_a_marker(storage: str, gate: str) -> None:
    _GATES[gate].set()
    async with _tuner(storage, gate, xs=[1]).start(history=3) as run:
        everything = await _all(run.events())
    replay = await _all(run.events())
    assert isinstance(replay[0], SubscriberLagged)
    assert replay[0].dropped == len(everything) - 3
    assert replay[1:] == everything[-3:]


async def test_events_encode_to_json_in_one_call(storage: str, gate: str) -> None:
    _GATES[gate].set()
    async with _tuner(storage, gate, xs=[1]).start() as run:
        events = await _all(run.events())
    marker = SubscriberLagged(ts=1.0, dropped=7)
    for event in [*events, marker]:
        data = encode_event(event)
        assert json.loads(data)["type"]
        assert decode_stream_event(data) == event
    assert json.loads(encode_event(marker)) == {
        "type": "subscriber_lagged",
        "ts": 1.0,
        "dropped": 7,
    }


async def test_bad_arguments_are_refused(storage: str, gate: str) -> None:
    tuner = _tuner(storage, gate, xs=[1])
    with pytest.raises(ConfigError, match="history"):
        tuner.start(history=0)
    run = tuner.start()
    with pytest.raises(ConfigError, match=r"buffer_size.*0"):
        run.events(buffer_size=0)
    with pytest.raises(RuntimeError, match="not started"):
        await run.wait()
    assert run.status().state == "not_started"


@pytest.mark.parametrize("where", ["in_the_block", "leaving_the_block"])
async def test_cancelling_the_owning_task_cancels_the_run(
    storage: str, gate: str, where: str
) -> None:
    handles: list[Any] = []
    got_result = asyncio.Event()

    async def owner() -> None:
        async with _tuner(storage, gate, xs=[1]).start() as run:
            handles.append(run)
            await _until(run.events(), 1, ResultReported)
            got_result.set()
            if where == "in_the_block":
                await run.wait()
            # else: leave the block, which waits for the run (held at its gate)

    task = asyncio.ensure_future(owner())
    await got_result.wait()
    await asyncio.sleep(0)  # let the owner reach its wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = handles
    assert run.state == "cancelled"
    _GATES[gate].set()
    results = await tune.Tuner.restore(run.experiment_path, _gated).fit()
    assert results.num_errors == 0


class _Explodes(tune.Callback):
    def on_trial_result(self, **info: Any) -> None:
        raise ValueError("boom")


async def test_a_failed_run_raises_from_wait_and_the_block(storage: str, gate: str) -> None:
    _GATES[gate].set()
    tuner = tune.Tuner(
        _gated,
        param_space={"x": 1, "gate": gate, "steps": 3, "before": 0},
        tune_config=tune.TuneConfig(backend="local", metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[_Explodes()]),
    )
    with pytest.raises(tune.TuneError, match="boom"):
        async with tuner.start() as run:
            events = await _all(run.events())
    assert not isinstance(events[-1], ExperimentFinished)  # the stream ended all the same
    with pytest.raises(tune.TuneError, match="boom"):
        await run.wait()
    status = run.status()
    assert status.state == "failed"
    assert status.error is not None and "boom" in status.error
