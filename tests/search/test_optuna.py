"""OptunaSearch: the conversion table, warm starts, seeds, multi-objective, state, restore."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="OptunaSearch needs the optuna extra")

from _crash import completed, kill_after  # noqa: E402

import atune as tune  # noqa: E402
from atune.errors import ConfigError, MetricError  # noqa: E402
from atune.search import SearchGenerator  # noqa: E402
from atune.search.optuna import OptunaSearch  # noqa: E402
from atune.search.optuna._convert import convert_search_space  # noqa: E402
from atune.storage._layout import JOURNAL_FILE  # noqa: E402

D = optuna.distributions


def quadratic(config: dict[str, Any]) -> dict[str, float]:
    return {"loss": (config["x"] - 0.3) ** 2 + config.get("n", 0)}


def _fit(searcher: Any, storage: str, num_samples: int = 6, **kw: Any) -> Any:
    space = kw.pop("param_space", {"x": tune.uniform(0, 1), "n": tune.randint(0, 3)})
    return tune.Tuner(
        kw.pop("trainable", quadratic),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=num_samples,
            max_concurrent_trials=1,
            backend="local",
            **kw,
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()


def test_conversion_table() -> None:
    space = {
        "u": tune.uniform(0, 1),
        "q": tune.quniform(0, 1, 0.25),
        "lu": tune.loguniform(1e-4, 1),
        "ri": tune.randint(0, 10),
        "qri": tune.qrandint(0, 10, 2),
        "lri": tune.lograndint(1, 100),
        "c": tune.choice(["a", "b"]),
        "nested": {"v": tune.uniform(-1, 1)},
        "const": 3,
    }
    assert convert_search_space(space) == {
        "u": D.FloatDistribution(0, 1),
        "q": D.FloatDistribution(0, 1, step=0.25),
        "lu": D.FloatDistribution(1e-4, 1, log=True),
        "ri": D.IntDistribution(0, 9),
        "qri": D.IntDistribution(0, 10, step=2),
        "lri": D.IntDistribution(1, 99, log=True),
        "c": D.CategoricalDistribution(["a", "b"]),
        "nested/v": D.FloatDistribution(-1, 1),
    }


@pytest.mark.parametrize(
    "space",
    [
        {"opt": {"lr": tune.grid_search([0.1, 0.2])}},
        {"opt": {"lr": {"grid_search": [0.1, 0.2]}}},
    ],
)
def test_grid_search_is_a_value_error_naming_the_key(space: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="opt/lr"):
        OptunaSearch(space=space, metric="loss", mode="min")
    searcher = OptunaSearch(metric="loss", mode="min")
    with pytest.raises(ValueError, match="opt/lr"):
        SearchGenerator(searcher).set_search_properties(None, None, space, 2)


def test_unsupported_domain_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'w'"):
        OptunaSearch(space={"w": tune.randn(0, 1)}, metric="loss", mode="min")


def test_points_to_evaluate_come_first(storage: str) -> None:
    points = [{"x": 0.9, "n": 2}, {"x": 0.1}]
    results = _fit(
        OptunaSearch(points_to_evaluate=points, seed=1), storage, metric="loss", mode="min"
    )
    configs = [r.config for r in sorted(results, key=lambda r: r.path)]
    assert configs[0] == {"x": 0.9, "n": 2}
    assert configs[1]["x"] == 0.1 and configs[1]["n"] in (0, 1, 2)
    assert len({c["x"] for c in configs}) == 6


def test_same_seed_same_configs(storage: str) -> None:
    def configs(seed: int) -> list[dict[str, Any]]:
        results = _fit(OptunaSearch(seed=seed), storage, metric="loss", mode="min")
        return [r.config for r in sorted(results, key=lambda r: r.path)]

    first = configs(7)
    assert configs(7) == first
    assert configs(8) != first


def test_define_by_run_space(storage: str) -> None:
    def space(trial: Any) -> dict[str, Any]:
        x = trial.suggest_float("x", 0, 1)
        if x > 0.5:
            trial.suggest_int("n", 0, 1)
        return {"const": "kept"}

    results = _fit(
        OptunaSearch(space=space, metric="loss", mode="min", seed=3), storage, param_space={}
    )
    for result in results:
        assert result.config["const"] == "kept"
        assert ("n" in result.config) == (result.config["x"] > 0.5)


def test_define_by_run_must_return_a_dict() -> None:
    searcher = OptunaSearch(space=lambda t: [t.suggest_float("x", 0, 1)], metric="m", mode="min")
    with pytest.raises(TypeError, match="must return None or a dict"):
        searcher.suggest("t1")


def test_evaluated_rewards_are_added_as_finished_trials() -> None:
    searcher = OptunaSearch(
        space={"x": D.FloatDistribution(0, 1)},
        metric="loss",
        mode="min",
        points_to_evaluate=[{"x": 0.2}, {"x": 0.7}],
        evaluated_rewards=[1.0, 3.0],
    )
    trials = searcher.study.trials
    assert [(t.params, t.value, t.state.name) for t in trials] == [
        ({"x": 0.2}, 1.0, "COMPLETE"),
        ({"x": 0.7}, 3.0, "COMPLETE"),
    ]
    assert searcher.suggest("t") != {"x": 0.2}
    with pytest.raises(ConfigError, match="evaluated_rewards has 1 values for 2"):
        OptunaSearch(points_to_evaluate=[{"x": 1}, {"x": 2}], evaluated_rewards=[1.0])
    with pytest.raises(TypeError, match="define-by-run"):
        OptunaSearch(space=lambda t: None, points_to_evaluate=[{"x": 1}], evaluated_rewards=[1])


def two_objectives(config: dict[str, Any]) -> dict[str, float]:
    return {"a": config["x"], "b": (1 - config["x"]) ** 2, "c": 0.0}


def test_multi_objective_and_pareto_front(storage: str) -> None:
    searcher = OptunaSearch(metric=["a", "b"], mode=["min", "min"], seed=2)
    results = _fit(
        searcher,
        storage,
        num_samples=5,
        trainable=two_objectives,
        param_space={"x": tune.uniform(0, 1)},
    )
    assert searcher.study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    # Every trial is on the front: a smaller a always means a larger b.
    front = searcher.get_pareto_front()
    assert sorted(p["config"]["x"] for p in front) == sorted(r.config["x"] for r in results)
    grid_front = results.get_pareto_front(["a", "b"], ["min", "min"])
    assert len(grid_front) == 5
    assert len(results.get_pareto_front(["a", "b"], ["max", "min"])) == 1


def test_metric_set_twice_names_both() -> None:
    searcher = OptunaSearch(metric="loss", mode="min")
    with pytest.raises(
        ValueError, match=r"OptunaSearch \(metric='loss'\).*TuneConfig \(metric='acc'\)"
    ):
        searcher.set_search_properties("acc", None, {"x": tune.uniform(0, 1)})


@pytest.mark.parametrize(
    ("metric", "mode", "missing"), [(None, "min", "metric"), ("l", None, "mode")]
)
def test_missing_metric_or_mode_names_the_parameter(
    storage: str, metric: str | None, mode: str | None, missing: str
) -> None:
    with pytest.raises(
        ValueError, match=rf"needs a {missing}: set OptunaSearch\({missing}=\.\.\.\)"
    ):
        _fit(OptunaSearch(), storage, metric=metric, mode=mode)


def test_the_searchers_metric_is_checked_on_the_first_result(storage: str) -> None:
    results = _fit(
        OptunaSearch(metric="accuracy", mode="max"),
        storage,
        num_samples=1,
    )
    assert isinstance(results[0].error, MetricError)
    assert "'accuracy' that OptunaSearch expects" in str(results[0].error)


def test_state_round_trips_as_json() -> None:
    space = {"x": D.FloatDistribution(0, 1), "c": D.CategoricalDistribution([None, "a", 1])}
    first = OptunaSearch(
        space=space, metric="m", mode="max", seed=4, points_to_evaluate=[{"x": 0.5}, {"x": 0.6}]
    )
    for i in range(4):
        first.suggest(f"t{i}")
        first.on_trial_result(f"t{i}", {"m": float("nan"), "training_iteration": 1})
        first.on_trial_result(f"t{i}", {"m": 0.5, "training_iteration": 2})
    first.on_trial_complete("t0", {"m": 1.0})
    first.on_trial_complete("t1", {"m": float("nan")})
    first.on_trial_complete("t2", None)
    state = json.loads(json.dumps(first.get_state(), allow_nan=False))

    second = OptunaSearch(
        space=space, metric="m", mode="max", seed=99, points_to_evaluate=[{"x": 0.5}]
    )
    second.set_state(state)
    assert [
        (t.number, t.state, t.params, t.values, t.intermediate_values) for t in second.study.trials
    ] == [
        (t.number, t.state, t.params, t.values, t.intermediate_values) for t in first.study.trials
    ]
    assert [t.state.name for t in second.study.trials] == ["COMPLETE", "FAIL", "PRUNED", "RUNNING"]
    second.on_trial_complete("t3", {"m": 2.0})
    first.on_trial_complete("t3", {"m": 2.0})
    assert second.suggest("t4") == first.suggest("t4")  # the same sampler seed and history


# ----------------------------------------------------------- driver killed, then restore
STEPS = 4


def slow_quadratic(config: dict[str, Any]) -> None:
    for i in range(STEPS):
        time.sleep(0.05)
        tune.report({"loss": (config["x"] - 0.3) ** 2 + i})


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import atune as tune
from atune.search.optuna import OptunaSearch
from test_optuna import slow_quadratic

tune.Tuner(
    slow_quadratic,
    param_space={{"x": tune.uniform(0, 1), "k": 1}},
    tune_config=tune.TuneConfig(
        metric="loss", mode="min", num_samples={n}, max_concurrent_trials=1, backend="local",
        search_alg=OptunaSearch(seed=11, points_to_evaluate=[{{"x": 0.25}}]),
    ),
    run_config=tune.RunConfig(name="crash", storage_path={storage!r}, verbose=0),
).fit()
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_driver_sigkill_then_restore_continues_the_study(storage: str, tmp_path: Path) -> None:
    n = 7
    script = DRIVER.format(here=str(Path(__file__).parent), storage=storage, n=n)
    journal = Path(storage, "crash", JOURNAL_FILE)
    kill_after(script, journal, 3)
    assert completed(journal) < n  # it really was mid-run

    restored = tune.Tuner.restore(str(Path(storage, "crash")), slow_quadratic).fit()
    created = [
        json.loads(line)["trial_id"]
        for line in journal.read_text().splitlines()
        if '"trial_created"' in line
    ]
    assert len(created) == len(set(created)) == n  # the same number of trials in all
    assert len(restored) == n and restored.num_errors == 0
    got = [r.config for r in sorted(restored, key=lambda r: r.path)]
    assert len({c["x"] for c in got}) == n  # no config suggested twice

    # And exactly the configs of an uninterrupted run with the same seed.
    uninterrupted = tune.Tuner(
        slow_quadratic,
        param_space={"x": tune.uniform(0, 1), "k": 1},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=n,
            max_concurrent_trials=1,
            backend="local",
            search_alg=OptunaSearch(seed=11, points_to_evaluate=[{"x": 0.25}]),
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "again"), verbose=0),
    ).fit()
    assert got == [r.config for r in sorted(uninterrupted, key=lambda r: r.path)]
