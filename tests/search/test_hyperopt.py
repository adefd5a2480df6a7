"""HyperOptSearch: the conversion table, warm starts, seeds, metric/mode, state, restore."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

hyperopt = pytest.importorskip("hyperopt", reason="HyperOptSearch needs the hyperopt extra")

from _crash import completed, kill_after  # noqa: E402
from hyperopt import hp  # noqa: E402
from hyperopt.pyll import stochastic  # noqa: E402

import atune as tune  # noqa: E402
from atune.errors import ConfigError, MetricError  # noqa: E402
from atune.search import SearchGenerator  # noqa: E402
from atune.search._restorable import search_from_data, search_to_data  # noqa: E402
from atune.search.hyperopt import HyperOptSearch  # noqa: E402
from atune.search.hyperopt._convert import convert_search_space  # noqa: E402
from atune.storage._layout import JOURNAL_FILE  # noqa: E402

SPACE = {"x": tune.uniform(0, 1), "n": tune.randint(0, 3)}


def quadratic(config: dict[str, Any]) -> dict[str, float]:
    return {"loss": (config["x"] - 0.3) ** 2 + config.get("n", 0)}


def _fit(searcher: Any, storage: str, num_samples: int = 6, **kw: Any) -> Any:
    space = kw.pop("param_space", SPACE)
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


def assert_no_trial_started(storage: str) -> None:
    """The Tuner claimed its directory, but no trial was created in it."""
    for experiment in Path(storage).iterdir():
        assert [p.name for p in experiment.iterdir() if p.is_dir()] == []
        assert "trial_created" not in (experiment / JOURNAL_FILE).read_text()


def _configs(results: Any) -> list[dict[str, Any]]:
    return [r.config for r in sorted(results, key=lambda r: r.path)]


def _drive(searcher: HyperOptSearch, n: int, start: int = 0) -> list[dict[str, Any]]:
    """Suggest and complete ``n`` trials one at a time (loss = x)."""
    out = []
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict)
        out.append(config)
        searcher.on_trial_complete(f"t{i}", {"loss": config["x"]})
    return out


def _drive_m(searcher: HyperOptSearch, i: int) -> dict[str, Any]:
    config = searcher.suggest(str(i))
    assert isinstance(config, dict)
    searcher.on_trial_complete(str(i), {"m": 1.0})
    return config


# ------------------------------------------------------------------------- conversion
def _samples(domain: Any, n: int = 300) -> set[Any]:
    space = convert_search_space({"p": domain}).space
    return {
        stochastic.sample(space, rng=__import__("numpy").random.default_rng(i))["p"]
        for i in range(n)
    }


@pytest.mark.parametrize(
    ("domain", "allowed"),
    [
        (tune.randint(0, 3), {0, 1, 2}),  # upper exclusive
        (tune.qrandint(0, 10, 5), {0, 5, 10}),  # upper inclusive
        (tune.qrandint(1, 10, 5), {5, 10}),  # never 0 (Ray Tune's conversion can give 0)
        (tune.lograndint(1, 4), {1, 2, 3}),
        (tune.qlograndint(3, 20, 5), {5, 10, 15, 20}),
        (tune.choice(["a", None, 3]), {"a", None, 3}),
        (tune.quniform(0, 1, 0.5), {0.0, 0.5, 1.0}),
    ],
    ids=[
        "randint",
        "qrandint",
        "qrandint-offset",
        "lograndint",
        "qlograndint",
        "choice",
        "quniform",
    ],
)
def test_conversion_stays_in_the_domain(domain: Any, allowed: set[Any]) -> None:
    assert _samples(domain) == allowed


def test_conversion_table() -> None:
    space = {
        "u": tune.uniform(-1, 1),
        "lu": tune.loguniform(1e-4, 1),
        "qlu": tune.qloguniform(1e-2, 1, 1e-2),
        "rn": tune.randn(0, 1),
        "qrn": tune.qrandn(0, 1, 0.5),
        "nested": {"v": tune.uniform(0, 1), "k": "const"},
        "list": [tune.uniform(0, 1), 7],
    }
    converted = convert_search_space(space)
    assert converted.paths == {
        "u": "u", "lu": "lu", "qlu": "qlu", "rn": "rn", "qrn": "qrn",
        "nested/v": "nested/v", "list/0": "list/0",
    }  # fmt: skip
    import numpy as np

    for seed in range(50):
        config = stochastic.sample(converted.space, rng=np.random.default_rng(seed))
        assert -1 <= config["u"] <= 1 and 1e-4 <= config["lu"] <= 1
        assert config["qrn"] / 0.5 == round(config["qrn"] / 0.5)
        assert config["nested"]["k"] == "const" and 0 <= config["nested"]["v"] <= 1
        assert isinstance(config["list"], list) and config["list"][1] == 7


def test_nested_choices_keep_rays_labels_and_run(storage: str) -> None:
    space = {
        "x": tune.uniform(0, 1),
        "opt": tune.choice(
            [
                {"name": "sgd", "lr": tune.loguniform(1e-3, 1)},
                {"name": "adam", "lr": tune.uniform(0, 1)},  # the same key in another branch
                "none",
            ]
        ),
    }
    paths = convert_search_space(space).paths
    assert paths["opt/lr"] == "opt/lr" and paths["opt/1/lr"] == "opt/lr"
    deeper = {
        "o": tune.choice([{"a": {"b": tune.uniform(0, 1)}}, {"a": {"b": tune.uniform(2, 3)}}])
    }
    assert convert_search_space(deeper).paths == {"o": "o", "o/a/b": "o/a/b", "o/1/a/b": "o/a/b"}
    searcher = HyperOptSearch(deeper, metric="m", mode="min", random_state_seed=0)
    assert {_drive_m(searcher, i)["o"]["a"]["b"] >= 2 for i in range(12)} == {True, False}
    results = _fit(
        HyperOptSearch(random_state_seed=0), storage, num_samples=12, param_space=space,
        metric="loss", mode="min",
    )  # fmt: skip
    seen = {c["opt"] if isinstance(c["opt"], str) else c["opt"]["name"] for c in _configs(results)}
    assert seen == {"sgd", "adam", "none"}
    for config in _configs(results):
        if isinstance(config["opt"], dict):
            assert set(config["opt"]) == {"name", "lr"}


@pytest.mark.parametrize(
    "space",
    [
        {"opt": {"lr": tune.grid_search([0.1, 0.2])}},
        {"opt": {"lr": {"grid_search": [0.1, 0.2]}}},
    ],
    ids=["domain", "marker"],
)
def test_grid_search_is_a_value_error_naming_the_key(space: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="grid_search at 'opt/lr'"):
        HyperOptSearch(space=space, metric="loss", mode="min")
    with pytest.raises(ValueError, match="'opt/lr'"):
        SearchGenerator(HyperOptSearch(metric="loss", mode="min")).set_search_properties(
            None, None, space, 2
        )


def test_grid_search_in_param_space_fails_before_any_trial(storage: str) -> None:
    with pytest.raises(ConfigError, match="'lr'"):
        _fit(HyperOptSearch(metric="loss", mode="min"), storage,
             param_space={"lr": tune.grid_search([1, 2])})  # fmt: skip
    assert_no_trial_started(storage)


def test_sample_from_names_the_key() -> None:
    with pytest.raises(ConfigError, match="sample_from at 'w'"):
        HyperOptSearch(space={"w": tune.sample_from(lambda c: 1)}, metric="m", mode="min")


# ------------------------------------------------------------------ hyperopt's own space
def test_a_hyperopt_space_is_used_directly() -> None:
    space = {"x": hp.uniform("x", 0, 1), "k": hp.choice("k", ["a", "b"])}
    searcher = HyperOptSearch(space, metric="loss", mode="min", random_state_seed=1,
                              points_to_evaluate=[{"x": 0.5, "k": "b"}])  # fmt: skip
    configs = _drive(searcher, 5)
    assert configs[0] == {"x": 0.5, "k": "b"}
    assert all(0 <= c["x"] <= 1 and c["k"] in ("a", "b") for c in configs)
    assert searcher.init_args() is None  # code, not data: not rebuilt on restore


def test_a_conditional_hyperopt_expression_as_the_whole_space(storage: str) -> None:
    space = hp.choice(
        "model",
        [
            {"model": "linear", "x": hp.uniform("x_lin", 0, 1)},
            {"model": "tree", "x": hp.uniform("x_tree", 0, 1), "n": hp.uniformint("n", 1, 3)},
        ],
    )
    results = _fit(
        HyperOptSearch(space, metric="loss", mode="min", random_state_seed=2),
        storage, num_samples=8, param_space={},
    )  # fmt: skip
    for config in _configs(results):
        assert ("n" in config) == (config["model"] == "tree")
    assert {c["model"] for c in _configs(results)} == {"linear", "tree"}


def test_param_space_domains_with_a_space_of_its_own_are_refused() -> None:
    searcher = HyperOptSearch({"x": hp.uniform("x", 0, 1)}, metric="m", mode="min")
    with pytest.raises(ConfigError, match="already has a search space"):
        SearchGenerator(searcher).set_search_properties(None, None, {"y": tune.uniform(0, 1)}, 1)


# --------------------------------------------------------------- points, seeds, startup
def test_points_to_evaluate_come_first_in_order(storage: str) -> None:
    points = [{"x": 0.9, "n": 2}, {"x": 0.1, "n": 0}]
    results = _fit(
        HyperOptSearch(points_to_evaluate=points, random_state_seed=1), storage,
        metric="loss", mode="min",
    )  # fmt: skip
    configs = _configs(results)
    assert configs[:2] == points
    assert len({c["x"] for c in configs}) == 6


def test_a_nested_point_picks_the_choice_by_value() -> None:
    space = {"opt": tune.choice([{"name": "sgd", "lr": tune.uniform(0, 1)}, {"name": "adam"}])}
    point = {"opt": {"name": "sgd", "lr": 0.25}}
    searcher = HyperOptSearch(space, metric="m", mode="min", points_to_evaluate=[point])
    assert searcher.suggest("a") == point
    searcher.on_trial_complete("a", {"m": 1.0})
    (doc,) = searcher.trials.trials
    assert doc["misc"]["vals"]["opt"] == [0] and doc["misc"]["vals"]["opt/lr"] == [0.25]


@pytest.mark.parametrize(
    ("point", "shown"),
    [
        ({"x": 0.5, "c": "a"}, "it lacks ['n']"),
        ({"x": 0.5, "n": 1, "c": "a", "zzz": 1}, "a key is not in the space"),
        ({"x": 0.5, "n": 1, "c": "nope"}, "not one of a choice's options"),
    ],
    ids=["missing-key", "unknown-key", "not-a-choice"],
)
def test_a_point_the_space_cannot_express_fails_before_any_trial(
    point: dict[str, Any], shown: str, storage: str
) -> None:
    space = {**SPACE, "c": tune.choice(["a", "b"])}
    with pytest.raises(ConfigError, match=r"points_to_evaluate\[1\] = ") as info:
        _fit(
            HyperOptSearch(points_to_evaluate=[{"x": 0.1, "n": 0, "c": "a"}, point]),
            storage, metric="loss", mode="min", param_space=space,
        )  # fmt: skip
    assert shown in str(info.value)
    assert_no_trial_started(storage)


def test_same_seed_same_configs(storage: str) -> None:
    def configs(seed: int) -> list[dict[str, Any]]:
        searcher = HyperOptSearch(random_state_seed=seed, n_initial_points=3)
        return _configs(_fit(searcher, storage, num_samples=8, metric="loss", mode="min"))

    first = configs(7)
    assert configs(7) == first
    assert configs(8) != first


def test_n_initial_points_random_trials_then_tpe() -> None:
    """Random draws use the same seeds whatever n_initial_points: the first k coincide,
    then TPE (after k results) departs from random search."""
    space = {"x": tune.uniform(0, 1)}

    def run(n_initial: int) -> list[dict[str, Any]]:
        searcher = HyperOptSearch(
            space, metric="loss", mode="min", random_state_seed=5, n_initial_points=n_initial
        )
        return _drive(searcher, 8)

    tpe_after_3, random_only = run(3), run(100)
    assert tpe_after_3[:3] == random_only[:3]
    assert tpe_after_3[3:] != random_only[3:]
    # TPE on loss = x looks for small x.
    assert sum(c["x"] for c in tpe_after_3[3:]) < sum(c["x"] for c in random_only[3:])


def test_the_same_trial_id_gets_the_same_config() -> None:
    searcher = HyperOptSearch(SPACE, metric="m", mode="min", random_state_seed=0)
    assert searcher.suggest("a") == searcher.suggest("a")
    assert len(searcher.trials.trials) == 1


# ------------------------------------------------------------------------ metric / mode
def test_metric_and_mode_from_tune_config(storage: str) -> None:
    searcher = HyperOptSearch(random_state_seed=0)
    results = _fit(searcher, storage, num_samples=3, metric="loss", mode="max")
    assert searcher.metric == "loss" and searcher.mode == "max"
    losses = sorted(d["result"]["loss"] for d in searcher.trials.trials)
    assert losses == sorted(-r.metrics["loss"] for r in results)  # max: HyperOpt minimises -loss


def test_metric_set_twice_names_both(storage: str) -> None:
    with pytest.raises(ConfigError, match=r"'loss'.*'acc'|'acc'.*'loss'"):
        _fit(HyperOptSearch(metric="loss", mode="min"), storage, metric="acc", mode="min")
    assert_no_trial_started(storage)


@pytest.mark.parametrize(
    ("kwargs", "tune_kwargs", "message"),
    [
        ({}, {"mode": "min"}, r"needs a metric: set HyperOptSearch\(metric=...\)"),
        ({"metric": "loss"}, {}, r"needs a mode: set HyperOptSearch\(mode=...\)"),
    ],
)
def test_missing_metric_or_mode_names_the_parameter(
    storage: str, kwargs: dict[str, Any], tune_kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _fit(HyperOptSearch(**kwargs), storage, **tune_kwargs)
    assert_no_trial_started(storage)


@pytest.mark.parametrize(
    ("kwargs", "error", "shown"),
    [
        ({"mode": "maximize"}, ConfigError, "'maximize'"),
        ({"metric": ["a", "b"], "mode": "min"}, ConfigError, "['a', 'b']"),
        ({"n_initial_points": -1}, ConfigError, "n_initial_points must be >= 0, got -1"),
        ({"n_initial_points": 2.5}, TypeError, "n_initial_points must be an int"),
        ({"gamma": 0}, ConfigError, "gamma must be in (0, 1], got 0"),
        ({"gamma": 1.5}, ConfigError, "gamma must be in (0, 1], got 1.5"),
        ({"gamma": "0.2"}, TypeError, "gamma must be a number"),
        ({"random_state_seed": "7"}, TypeError, "random_state_seed must be an int"),
        ({"points_to_evaluate": [1]}, TypeError, "must be a dict, got 1"),
        ({"space": [1, 2]}, TypeError, "space must be a dict"),
        ({"space": {"k": 1}}, ConfigError, "no HyperOpt expression or atune domain"),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], shown: str
) -> None:
    with pytest.raises(error, match=__import__("re").escape(shown)):
        HyperOptSearch(**kwargs)


def test_the_searchers_metric_is_checked_on_the_first_result(storage: str) -> None:
    results = _fit(HyperOptSearch(metric="accuracy", mode="max"), storage, num_samples=1)
    assert isinstance(results[0].error, MetricError)
    assert "'accuracy' that HyperOptSearch expects" in str(results[0].error)


def test_failures_nan_and_missing_metrics_are_told_as_failed() -> None:
    searcher = HyperOptSearch(SPACE, metric="m", mode="max", random_state_seed=0)
    for i in range(5):
        searcher.suggest(f"t{i}")
    searcher.on_trial_complete("t0", {"m": 2.0})
    searcher.on_trial_complete("t1", {"m": float("nan")})
    searcher.on_trial_complete("t2", {"other": 1.0})
    searcher.on_trial_complete("t3", None, error=True)
    searcher.on_trial_complete("t4", None)
    searcher.on_trial_complete("unknown", {"m": 1.0})  # ignored
    results = [d["result"] for d in searcher.trials.trials]
    assert results[0] == {"loss": -2.0, "status": "ok"}
    assert all(r == {"status": "fail"} for r in results[1:])


# ----------------------------------------------------------------------------- state
def test_state_is_json_and_a_restored_searcher_continues_exactly() -> None:
    space = {"x": tune.uniform(0, 1), "c": tune.choice(["a", None, 1]), "q": tune.qrandint(0, 9, 3)}
    kwargs: dict[str, Any] = {
        "metric": "loss", "mode": "min", "n_initial_points": 3, "random_state_seed": 4,
        "points_to_evaluate": [{"x": 0.5, "c": None, "q": 3}, {"x": 0.6, "c": "a", "q": 0}],
    }  # fmt: skip
    uninterrupted = HyperOptSearch(space, **kwargs)
    expected = _drive(uninterrupted, 10)

    first = HyperOptSearch(space, **kwargs)
    assert _drive(first, 5) == expected[:5]
    live = first.suggest("t5")  # suggested, not told, when the state is taken
    data = search_to_data(first)
    state = json.loads(json.dumps(first.get_state(), allow_nan=False))

    second = search_from_data(json.loads(json.dumps(data)))
    assert isinstance(second, HyperOptSearch)
    second.set_search_properties(None, None, {})
    second.set_state(state)
    assert second.suggest("t5") == live == expected[5]  # the live trial keeps its config
    second.on_trial_complete("t5", {"loss": live["x"]})
    assert _drive(second, 4, start=6) == expected[6:]


def test_set_state_rejects_foreign_data() -> None:
    searcher = HyperOptSearch(SPACE, metric="m", mode="min")
    with pytest.raises(ConfigError, match="not a HyperOptSearch state"):
        searcher.set_state({"version": 1})


# ----------------------------------------------------------- driver killed, then restore
STEPS = 3


def slow_quadratic(config: dict[str, Any]) -> None:
    for i in range(STEPS):
        time.sleep(0.05)
        tune.report({"loss": (config["x"] - 0.3) ** 2 + i})


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import atune as tune
from atune.search.hyperopt import HyperOptSearch
from test_hyperopt import slow_quadratic

tune.Tuner(
    slow_quadratic,
    param_space={{"x": tune.uniform(0, 1), "k": 1}},
    tune_config=tune.TuneConfig(
        metric="loss", mode="min", num_samples={n}, max_concurrent_trials=1, backend="local",
        search_alg=HyperOptSearch(random_state_seed=11, n_initial_points=2,
                                  points_to_evaluate=[{{"x": 0.25}}]),
    ),
    run_config=tune.RunConfig(name="crash", storage_path={storage!r}, verbose=0),
).fit()
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_driver_sigkill_then_restore_continues_the_search(storage: str, tmp_path: Path) -> None:
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
    assert len(created) == len(set(created)) == n
    assert len(restored) == n and restored.num_errors == 0
    got = [r.config for r in sorted(restored, key=lambda r: r.path)]
    assert len({c["x"] for c in got}) == n  # no config suggested twice

    uninterrupted = tune.Tuner(
        slow_quadratic,
        param_space={"x": tune.uniform(0, 1), "k": 1},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=n,
            max_concurrent_trials=1,
            backend="local",
            search_alg=HyperOptSearch(
                random_state_seed=11, n_initial_points=2, points_to_evaluate=[{"x": 0.25}]
            ),
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "again"), verbose=0),
    ).fit()
    assert got == [r.config for r in sorted(uninterrupted, key=lambda r: r.path)]


def test_concurrent_trials_and_wrappers(storage: str) -> None:
    from atune.search import ConcurrencyLimiter, Repeater

    searcher = HyperOptSearch(random_state_seed=3, n_initial_points=2)
    results = tune.Tuner(
        quadratic,
        param_space=SPACE,
        tune_config=tune.TuneConfig(
            search_alg=Repeater(ConcurrencyLimiter(searcher, 2, batch=True), repeat=2),
            num_samples=8,
            max_concurrent_trials=4,
            metric="loss",
            mode="min",
            backend="local",
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert len(results) == 8 and results.num_errors == 0
    configs = [{k: v for k, v in c.items() if k != "__trial_index__"} for c in _configs(results)]
    assert len({c["x"] for c in configs}) == 4  # each config ran twice
    assert [d["state"] for d in searcher.trials.trials] == [hyperopt.JOB_STATE_DONE] * 4
