"""ConcurrencyLimiter: the limit, batch mode, delegation and state."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import atune as tune
from atune.errors import ConfigError
from atune.search import FINISHED, ConcurrencyLimiter, Searcher, SearchGenerator, Suggestion


class Toy(Searcher):
    """Suggests x = 0, 1, ...; records completions; can claim to limit concurrency itself."""

    def __init__(self, self_limiting: bool = False, limit: int = 100) -> None:
        super().__init__(metric="loss", mode="min")
        self.self_limiting = self_limiting
        self.limit = limit
        self.given = 0
        self.max_concurrent: int | None = None
        self.completed: list[str] = []
        self.results: list[str] = []

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return self.self_limiting

    def suggest(self, trial_id: str) -> Any:
        if self.given >= self.limit:
            return Searcher.FINISHED
        self.given += 1
        return {"x": self.given - 1}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.results.append(trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.completed.append(trial_id)

    def get_state(self) -> dict[str, Any]:
        return {"given": self.given}

    def set_state(self, state: dict[str, Any]) -> None:
        self.given = state["given"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_max_concurrent_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ConfigError, match=f"max_concurrent must be an int > 0, got {bad!r}"):
        ConcurrencyLimiter(Toy(), max_concurrent=bad)


def test_only_wraps_searchers() -> None:
    with pytest.raises(ConfigError, match="ConcurrencyLimiter wraps a Searcher, got dict"):
        ConcurrencyLimiter({}, max_concurrent=1)  # type: ignore[arg-type]


def test_limits_live_trials() -> None:
    toy = Toy()
    limiter = ConcurrencyLimiter(toy, max_concurrent=2)
    assert toy.max_concurrent == 2
    assert limiter.metric == "loss" and limiter.mode == "min"
    assert limiter.suggest("a") == {"x": 0}
    assert limiter.suggest("b") == {"x": 1}
    assert limiter.suggest("c") is None
    assert toy.given == 2  # the wrapped searcher was not asked
    limiter.on_trial_result("a", {"loss": 1})
    limiter.on_trial_complete("a", {"loss": 1})
    assert toy.results == ["a"] and toy.completed == ["a"]
    assert limiter.suggest("c") == {"x": 2}
    limiter.on_trial_complete("unknown")  # not ours: ignored
    assert toy.completed == ["a"]


def test_batch_mode_waits_for_the_whole_batch() -> None:
    toy = Toy()
    limiter = ConcurrencyLimiter(toy, max_concurrent=2, batch=True)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.on_trial_complete("a", {"loss": 1})
    assert toy.completed == []
    assert limiter.suggest("c") is None
    limiter.on_trial_complete("b", None, error=True)
    assert toy.completed == ["a", "b"]
    assert limiter.suggest("c") == {"x": 2}


def test_a_self_limiting_searcher_is_not_limited_again() -> None:
    toy = Toy(self_limiting=True)
    limiter = ConcurrencyLimiter(toy, max_concurrent=1)
    assert limiter.suggest("a") == {"x": 0}
    assert limiter.suggest("b") == {"x": 1}
    limiter.on_trial_complete("a")
    assert toy.completed == ["a"]


def test_finished_and_none_do_not_take_a_slot() -> None:
    limiter = ConcurrencyLimiter(Toy(limit=1), max_concurrent=1)
    assert limiter.suggest("a") == {"x": 0}
    limiter.on_trial_complete("a")
    assert limiter.suggest("b") == FINISHED
    assert limiter.live_trials == set()


def test_duplicate_live_trial_id_is_an_error() -> None:
    limiter = ConcurrencyLimiter(Toy(), max_concurrent=3)
    limiter.suggest("a")
    with pytest.raises(RuntimeError, match="'a' was already suggested"):
        limiter.suggest("a")


def test_works_under_search_generator() -> None:
    gen = SearchGenerator(ConcurrencyLimiter(Toy(), max_concurrent=1))
    gen.set_search_properties("loss", "min", {}, 3)
    assert isinstance(gen.next_trial("a"), Suggestion)
    assert gen.next_trial("b") is None
    gen.on_trial_complete("a", {"loss": 0.1})
    assert isinstance(gen.next_trial("c"), Suggestion)


def test_state_round_trip_includes_the_wrapped_searcher() -> None:
    limiter = ConcurrencyLimiter(Toy(), max_concurrent=2, batch=True)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.on_trial_complete("a", {"loss": 1.0})
    state = json.loads(json.dumps(limiter.get_state()))

    restored = ConcurrencyLimiter(Toy(), max_concurrent=2, batch=True)
    restored.set_state(state)
    assert restored.searcher.get_state() == {"given": 2}
    assert restored.live_trials == {"a", "b"}
    assert restored.suggest("c") is None
    restored.on_trial_complete("b", {"loss": 2.0})
    assert restored.searcher.completed == ["a", "b"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="not a ConcurrencyLimiter state"):
        restored.set_state({})


class _Peak(tune.Callback):
    """Counts trials between their start and their end."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.live -= 1

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.live -= 1


def _sleepy(config: dict[str, Any]) -> None:
    for i in range(3):
        time.sleep(0.02)
        tune.report({"loss": float(config["x"] + i)})


@pytest.mark.parametrize("batch", [False, True])
def test_peak_concurrency_in_a_run_never_exceeds_the_limit(storage: str, batch: bool) -> None:
    peak = _Peak()
    results = tune.Tuner(
        tune.with_resources(_sleepy, {"cpu": 0.1}),  # room for far more than the limit
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(Toy(limit=12), max_concurrent=3, batch=batch),
            num_samples=12,
            backend="local",
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[peak]),
    ).fit()
    assert len(results) == 12 and results.num_errors == 0
    assert peak.peak == 3  # reached, never exceeded
