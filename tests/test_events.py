"""The event vocabulary: frozen tagged structs, one union, one encoder and decoder."""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import numpy as np
import pytest

import atune.events
from atune.events import (
    ActorFreed,
    CallbackStateSaved,
    CheckpointDamaged,
    CheckpointDeleted,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialExploited,
    TrialPaused,
    TrialResumed,
    TrialStarted,
    decode_event,
    encode_event,
)
from atune.storage._layout import checkpoint_name

# One instance of every event type, with every field set away from its default.
EXAMPLES: list[Event] = [
    ExperimentStarted(ts=1.5, name="exp", path="/tmp/exp", resumed=True),
    TrialCreated(
        ts=2.0,
        trial_id="a1b2c_00000",
        trial_name="fn_a1b2c_00000",
        dirname="fn_a1b2c_00000_0_lr=0.1000",
        config={"lr": 0.1, "model": {"layers": [1, 2]}, "name": None},
        experiment_tag="0_lr=0.1000",
        resources=[{"CPU": 1.0, "GPU": 0.5}, {"CPU": 2.0}],
        strategy="SPREAD",
    ),
    TrialStarted(ts=3.0, trial_id="t", attempt=2, reused=True, restored_from=checkpoint_name(1)),
    ResultReported(ts=4.0, trial_id="t", result={"loss": 0.5, "info": {"k": [1, "x"]}}),
    CheckpointSaved(
        ts=5.0,
        trial_id="t",
        dir_name=checkpoint_name(3),
        training_iteration=4,
        metrics={"loss": 0.25},
    ),
    TrialCompleted(ts=6.0, trial_id="t", reason="stopper"),
    TrialErrored(
        ts=7.0,
        trial_id="t",
        error_type="builtins.ValueError",
        message="boom",
        traceback="Traceback (most recent call last): ...",
        attempt=1,
        will_retry=True,
    ),
    ActorFreed(ts=8.0, trial_id="t", action="cached", reason="kept for reuse"),
    TrialPaused(ts=8.5, trial_id="t", checkpoint="t_dir/checkpoint_000001", scheduler="HB"),
    TrialResumed(ts=8.6, trial_id="t", checkpoint=None),
    TrialExploited(
        ts=8.7,
        trial_id="t",
        donor_id="d",
        dir_name="checkpoint_000002",
        config={"lr": 0.5},
        experiment_tag="3_lr=0.5",
    ),
    CheckpointDeleted(ts=8.5, trial_id="t", dir_name=checkpoint_name(1)),
    CheckpointDamaged(ts=8.6, trial_id="t", dir_name=checkpoint_name(2), message="truncated"),
    SearcherStateSaved(ts=8.75, state={"handed_out": 3, "rng": [1, 2], "finished": False}),
    SchedulerStateSaved(ts=8.8, state={"rungs": [[{"t1": 0.5, "t2": "nan"}]], "num_stopped": 1}),
    CallbackStateSaved(ts=8.8, states=[{"index": 0, "type": "mod.Counter", "state": {"seen": 4}}]),
    ExperimentFinished(ts=9.0, num_trials=3, num_errors=1),
]

EVENT_TYPES = typing.get_args(Event)


def _name(event: Event) -> str:
    return type(event).__name__


def test_examples_cover_every_event_type() -> None:
    assert {type(e) for e in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=_name)
def test_event_round_trips(event: Event) -> None:
    line = encode_event(event)
    assert b"\n" not in line
    decoded = decode_event(line)
    assert type(decoded) is type(event)
    assert decoded == event
    assert decode_event(line.decode()) == event  # str input too


@pytest.mark.parametrize("event", EXAMPLES, ids=_name)
def test_event_carries_its_tag(event: Event) -> None:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    assert json.loads(encode_event(event))["type"] == tag


def test_tags_are_unique() -> None:
    tags = [cls.__struct_config__.tag for cls in EVENT_TYPES]
    assert len(set(tags)) == len(tags)


@pytest.mark.parametrize("event", EXAMPLES, ids=_name)
def test_events_are_frozen(event: Event) -> None:
    with pytest.raises(AttributeError):
        event.ts = 0.0  # type: ignore[misc]


@pytest.mark.parametrize("event", EXAMPLES, ids=_name)
def test_events_are_keyword_only(event: Event) -> None:
    values = [getattr(event, field.name) for field in msgspec.structs.fields(event)]
    cls: Any = type(event)
    assert cls(**msgspec.structs.asdict(event)) == event
    with pytest.raises(TypeError):
        cls(*values)


def test_defaults_keep_old_journals_readable() -> None:
    line = b'{"type":"trial_started","ts":1.0,"trial_id":"t"}'
    assert decode_event(line) == TrialStarted(
        ts=1.0, trial_id="t", attempt=0, reused=False, restored_from=None
    )


def test_unknown_tag_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"type":"trial_exploded","ts":1.0,"trial_id":"t"}')


def test_missing_field_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"type":"trial_started","trial_id":"t"}')


def test_bad_literal_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b'{"type":"trial_completed","ts":1.0,"trial_id":"t","reason":"bored"}')


def test_numpy_values_in_a_result_encode() -> None:
    result = {
        "loss": np.float32(0.5),
        "step": np.int64(3),
        "ok": np.bool_(True),
        "weights": np.arange(3),
        "grid": np.array([[1.0, 2.0]]),
    }
    decoded = decode_event(encode_event(ResultReported(ts=1.0, trial_id="t", result=result)))
    assert isinstance(decoded, ResultReported)
    assert decoded.result == {
        "loss": 0.5,
        "step": 3,
        "ok": True,
        "weights": [0, 1, 2],
        "grid": [[1.0, 2.0]],
    }


def test_foreign_objects_encode_as_their_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    line = encode_event(ResultReported(ts=1.0, trial_id="t", result={"obj": Opaque()}))
    decoded = decode_event(line)
    assert isinstance(decoded, ResultReported)
    assert decoded.result == {"obj": "<opaque>"}


def test_union_covers_every_exported_struct() -> None:
    exported = {
        obj
        for name in atune.events.__all__
        if isinstance(obj := getattr(atune.events, name), type) and issubclass(obj, msgspec.Struct)
    }
    # SubscriberLagged marks a gap in a live stream (Run.events()); it is never journaled,
    # so it stays out of the journal's union.
    assert exported == {*EVENT_TYPES, atune.events.SubscriberLagged}
    assert set(typing.get_args(atune.events.StreamEvent)) == exported
