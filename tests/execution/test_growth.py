"""Growth settings and the demand passed to an autoscaler (no Ray: a recording backend).

The real autoscaler is exercised by ``tests/test_autoscaling.py``; here, the settings'
parsing, the ``auto`` number of pending trials, and how the demand follows the
allocator are checked on their own.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from atune._fit import _growth_timeout
from atune.errors import ConfigError
from atune.execution._allocator import Allocator
from atune.execution._backend import LocalBackend
from atune.execution._growth import (
    AUTOSCALING_ENV,
    DEFAULT_PENDING_TIMEOUT_S,
    MAX_PENDING_TRIALS_ENV,
    PENDING_TIMEOUT_ENV,
    autoscaling_setting,
    follow_demand,
    max_pending_trials,
    pending_timeout_s,
    withdraw_demand,
)
from atune.execution.placement_groups import PlacementGroupFactory
from atune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher, SearchGenerator


async def until(condition: Any) -> None:
    """Wait until ``condition()`` holds (publications run in worker threads)."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.01)


class _Searcher(Searcher):
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        return {}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        pass


class _Recording(LocalBackend):
    """A backend whose autoscaler is a list: each ``request_resources`` call, in order."""

    dynamic_capacity = True

    def __init__(self, grows: bool = True) -> None:
        super().__init__({"CPU": 1})
        self.grows = grows
        self.requests: list[list[dict[str, float]]] = []

    def can_grow(self) -> bool:
        return self.grows

    def request_resources(self, bundles: list[dict[str, float]]) -> None:
        self.requests.append(bundles)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", None), ("auto", None), (" AUTO ", None), ("1", True), ("true", True), ("0", False)],
)
def test_autoscaling_setting(monkeypatch: pytest.MonkeyPatch, raw: str, expected: Any) -> None:
    monkeypatch.setenv(AUTOSCALING_ENV, raw)
    assert autoscaling_setting() is expected


def test_a_bad_autoscaling_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOSCALING_ENV, "sometimes")
    with pytest.raises(ConfigError, match=r"ATUNE_AUTOSCALING must be .*'sometimes'"):
        autoscaling_setting()


def test_pending_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PENDING_TIMEOUT_ENV, raising=False)
    assert pending_timeout_s() == DEFAULT_PENDING_TIMEOUT_S == 600.0
    monkeypatch.setenv(PENDING_TIMEOUT_ENV, "2.5")
    assert pending_timeout_s() == 2.5
    monkeypatch.setenv(PENDING_TIMEOUT_ENV, "inf")
    assert pending_timeout_s() == math.inf
    for bad in ("0", "-3", "nan", "soon"):
        monkeypatch.setenv(PENDING_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match="ATUNE_PENDING_RESOURCES_TIMEOUT_S"):
            pending_timeout_s()


def test_max_pending_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_PENDING_TRIALS_ENV, raising=False)
    assert max_pending_trials(BasicVariantGenerator()) == 200
    assert max_pending_trials(SearchGenerator(_Searcher())) == 1
    limited = SearchGenerator(ConcurrencyLimiter(_Searcher(), max_concurrent=4))
    assert max_pending_trials(limited) == 4
    monkeypatch.setenv(MAX_PENDING_TRIALS_ENV, "7")
    assert max_pending_trials(BasicVariantGenerator()) == 7
    monkeypatch.setenv(MAX_PENDING_TRIALS_ENV, "-1")
    with pytest.raises(ConfigError, match="TUNE_MAX_PENDING_TRIALS_PG"):
        max_pending_trials(BasicVariantGenerator())


async def test_whether_a_run_waits_for_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOSCALING_ENV, raising=False)
    monkeypatch.setenv(PENDING_TIMEOUT_ENV, "30")
    assert await _growth_timeout(_Recording(grows=True)) == 30.0  # detected
    assert await _growth_timeout(_Recording(grows=False)) is None
    assert await _growth_timeout(LocalBackend()) is None  # its capacity never changes
    monkeypatch.setenv(AUTOSCALING_ENV, "1")
    assert await _growth_timeout(_Recording(grows=False)) == 30.0  # the user says so
    assert await _growth_timeout(LocalBackend()) is None
    monkeypatch.setenv(AUTOSCALING_ENV, "0")
    assert await _growth_timeout(_Recording(grows=True)) is None


async def test_the_demand_follows_the_waiting_requests_and_is_withdrawn() -> None:
    alloc = Allocator({"CPU": 1})
    alloc.set_growth(math.inf)
    backend = _Recording()
    held = await alloc.acquire(PlacementGroupFactory([{"CPU": 1}]))
    big = PlacementGroupFactory([{"CPU": 2}, {"GPU": 1}])
    waiting = anyio.CancelScope()

    async def wait_for_big() -> None:
        with waiting:
            await alloc.acquire(big)

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_demand, alloc, backend)
        await until(lambda: backend.requests == [[]])  # nothing waits: nothing asked for
        tg.start_soon(wait_for_big)  # a request beyond the cluster: held + waiting
        await until(lambda: len(backend.requests) == 2)
        assert backend.requests[1] == [{"CPU": 1.0}, {"CPU": 2.0}, {"GPU": 1.0}]
        waiting.cancel()  # given up on: it leaves the demand
        await until(lambda: len(backend.requests) == 3)
        assert backend.requests[2] == []
        tg.cancel_scope.cancel()
    assert alloc.num_waiting == 0
    held.release()
    await withdraw_demand(alloc, backend)  # what an experiment does as it ends
    assert backend.requests[-1] == []
    fixed = _Recording()
    await withdraw_demand(Allocator({"CPU": 1}), fixed)
    assert fixed.requests == []  # a fixed cluster has no autoscaler to tell
