"""Repeater: repeated configs, ``__trial_index__``, averaged scores, state."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import atune as tune
from atune.errors import ConfigError
from atune.search import Repeater, Searcher


class Counting(Searcher):
    """Suggests x = 0, 1, ...; records what it is told."""

    def __init__(self) -> None:
        super().__init__(metric="loss", mode="min")
        self.given = 0
        self.told: list[tuple[str, Any, bool]] = []

    def suggest(self, trial_id: str) -> Any:
        self.given += 1
        return {"x": self.given - 1}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.told.append((trial_id, result, error))

    def get_state(self) -> dict[str, Any]:
        return {"given": self.given}

    def set_state(self, state: dict[str, Any]) -> None:
        self.given = state["given"]


def test_each_config_is_repeated_with_its_index() -> None:
    inner = Counting()
    rep = Repeater(inner, repeat=3)
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert configs == [
        {"x": 0, "__trial_index__": 0},
        {"x": 0, "__trial_index__": 1},
        {"x": 0, "__trial_index__": 2},
        {"x": 1, "__trial_index__": 0},
        {"x": 1, "__trial_index__": 1},
        {"x": 1, "__trial_index__": 2},
    ]
    assert inner.given == 2
    assert Repeater(Counting(), repeat=2, set_index=False).suggest("a") == {"x": 0}


def test_the_group_mean_is_reported_once_to_the_first_trial() -> None:
    inner = Counting()
    rep = Repeater(inner, repeat=3)
    for i in range(3):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t1", {"loss": 1.0})
    rep.on_trial_complete("t0", {"other": 5})  # no metric: NaN, left out of the mean
    assert inner.told == []
    rep.on_trial_complete("t2", {"loss": 3.0})
    assert inner.told == [("t0", {"loss": 2.0}, False)]
    rep.on_trial_complete("unknown", {"loss": 1.0})  # ignored, not a KeyError


def test_errors_are_left_out_and_an_all_failed_group_is_an_error() -> None:
    inner = Counting()
    rep = Repeater(inner, repeat=2)
    for i in range(4):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t0", None, error=True)
    rep.on_trial_complete("t1", {"loss": 4.0})
    rep.on_trial_complete("t2", None, error=True)
    rep.on_trial_complete("t3", None, error=True)
    assert inner.told == [("t0", {"loss": 4.0}, False), ("t2", None, True)]


def test_groups_survive_a_state_round_trip() -> None:
    inner = Counting()
    rep = Repeater(inner, repeat=2)
    rep.suggest("t0"), rep.suggest("t1"), rep.suggest("t2")
    rep.on_trial_complete("t0", {"loss": 1.0})
    state = json.loads(json.dumps(rep.get_state()))
    again = Repeater(Counting(), repeat=2)
    again.set_state(state)
    assert again.suggest("t3") == {"x": 1, "__trial_index__": 1}
    again.on_trial_complete("t1", {"loss": 3.0})
    assert again.searcher.told == [("t0", {"loss": 2.0}, False)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("repeat", [0, -1, 1.5, True])
def test_repeat_must_be_a_positive_int(repeat: Any) -> None:
    with pytest.raises(ConfigError, match="repeat must be an int >= 1"):
        Repeater(Counting(), repeat=repeat)


def noisy(config: dict[str, Any]) -> dict[str, float]:
    return {"loss": config["x"] * 10 + config["__trial_index__"]}


def test_in_a_tuner(storage: str) -> None:
    inner = Counting()
    results = tune.Tuner(
        noisy,
        tune_config=tune.TuneConfig(
            search_alg=Repeater(inner, repeat=3), num_samples=6, backend="local"
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted((r.config["x"], r.config["__trial_index__"]) for r in results) == [
        (x, i) for x in (0, 1) for i in range(3)
    ]
    told = sorted(r["loss"] for _, r, _ in inner.told)
    assert told == [1.0, 11.0] and not any(math.isnan(v) for v in told)
