"""Ray Tune's ``tests/test_stopper.py``, asserted against atune's ``TimeoutStopper``.

Upstream freezes the wall clock; atune's stopper reads ``time.monotonic`` through its
module, so these tests hand it a manual clock instead.
"""

from __future__ import annotations

import pickle
import types

import pytest

import atune.stopper as stopper_module
from atune.stopper import TimeoutStopper


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(stopper_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_timeout_stopper_stops_after_budget(clock: _Clock) -> None:
    stopper = TimeoutStopper(timeout=60)
    assert not stopper.stop_all()
    clock.tick(40)
    assert not stopper.stop_all()
    clock.tick(22)
    assert stopper.stop_all()


def test_timeout_stopper_pickled_before_timeout_keeps_remaining_budget(clock: _Clock) -> None:
    stopper = TimeoutStopper(timeout=60)
    assert not stopper.stop_all()
    clock.tick(40)
    assert not stopper.stop_all()
    saved = pickle.dumps(stopper)

    clock.tick(200)  # time while the experiment was not running is not spent
    stopper = pickle.loads(saved)
    assert not stopper.stop_all()
    clock.tick(10)
    assert not stopper.stop_all()
    clock.tick(12)
    assert stopper.stop_all()


def test_timeout_stopper_pickled_after_timeout_stays_stopped(clock: _Clock) -> None:
    stopper = TimeoutStopper(timeout=60)
    assert not stopper.stop_all()
    clock.tick(62)
    assert stopper.stop_all()
    saved = pickle.dumps(stopper)

    clock.tick(200)
    stopper = pickle.loads(saved)
    assert stopper.stop_all()
    clock.tick(10)
    assert stopper.stop_all()
