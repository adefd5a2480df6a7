"""Ray Tune's ``tests/test_sample.py`` (the search-space part), asserted against atune.

The ``testConvert*`` tests of that file translate spaces for external searchers. The
HyperOpt ones are here (atune ships ``HyperOptSearch``); those of searchers atune does not
ship (Ax, BayesOpt, BOHB, Dragonfly, HEBO, Nevergrad, SkOpt, ZOOpt) are not; see
docs/compatibility.md.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import atune as tune
from atune.search import BasicVariantGenerator
from atune.search.sample import Categorical, Float, Function, Integer


def _variants(space: dict[str, Any], count: int) -> list[dict[str, Any]]:
    generator = BasicVariantGenerator()
    generator.set_search_properties(None, None, space, count)
    configs = []
    for index in range(count):
        suggestion = generator.next_trial(str(index))
        assert suggestion is not None and suggestion != "FINISHED"
        configs.append(suggestion.config)
    return configs


EVERY_PRIMITIVE: dict[str, Any] = {
    "func": tune.sample_from(lambda config: config["uniform"] * 0.01),
    "uniform": tune.uniform(-5, -1),
    "quniform": tune.quniform(3.2, 5.4, 0.2),
    "loguniform": tune.loguniform(1e-4, 1e-2),
    "qloguniform": tune.qloguniform(1e-4, 1e-1, 5e-5),
    "choice": tune.choice([2, 3, 4]),
    "randint": tune.randint(-9, 15),
    "lograndint": tune.lograndint(1, 10),
    "qrandint": tune.qrandint(-21, 12, 3),
    "qlograndint": tune.qlograndint(2, 20, 2),
    "randn": tune.randn(10, 2),
    "qrandn": tune.qrandn(10, 2, 0.2),
}


def _assert_in_domain(out: dict[str, Any]) -> None:
    """Each primitive of EVERY_PRIMITIVE (but ``func``) drew a value in its domain."""
    assert -5 <= out["uniform"] < -1
    assert 3.2 <= out["quniform"] <= 5.4
    assert out["quniform"] / 0.2 == pytest.approx(round(out["quniform"] / 0.2))
    assert 1e-4 <= out["loguniform"] < 1e-2
    assert 1e-4 <= out["qloguniform"] <= 1e-1
    assert out["qloguniform"] / 5e-5 == pytest.approx(round(out["qloguniform"] / 5e-5))
    assert out["choice"] in (2, 3, 4)
    assert isinstance(out["randint"], int) and -9 <= out["randint"] < 15
    assert isinstance(out["lograndint"], int) and 1 <= out["lograndint"] < 10
    assert isinstance(out["qrandint"], int) and -21 <= out["qrandint"] <= 12
    assert out["qrandint"] % 3 == 0
    assert isinstance(out["qlograndint"], int) and 2 <= out["qlograndint"] <= 20
    assert out["qlograndint"] % 2 == 0
    assert 0 < out["randn"] < 20  # five standard deviations either side
    assert 0 < out["qrandn"] < 20
    assert out["qrandn"] / 0.2 == pytest.approx(round(out["qrandn"] / 0.2))


def test_every_sampling_primitive_stays_in_its_domain() -> None:
    for out in _variants(EVERY_PRIMITIVE, 300):
        assert out["func"] == pytest.approx(out["uniform"] * 0.01)
        _assert_in_domain(out)


def test_bounded_float_one_sampler_and_log_needs_positive_bounds() -> None:
    bounded = Float(-4.2, 8.3)
    with pytest.raises(ValueError):
        bounded.normal().uniform()
    samples = bounded.uniform().sample(size=1000, random_state=0)
    assert all(-4.2 <= s < 8.3 for s in samples)
    assert np.mean(samples) > -2
    with pytest.raises(ValueError):
        bounded.loguniform().sample(size=10)
    positive = Float(1e-4, 1e-1).loguniform().sample(size=1000, random_state=0)
    assert all(1e-4 <= s < 1e-1 for s in positive)


def test_unbounded_float_needs_bounds_for_log_and_samples_normal() -> None:
    with pytest.raises(ValueError):
        Float(None, None).loguniform()
    samples = Float(None, None).normal().sample(size=1000, random_state=0)
    assert any(-5 < s < 5 for s in samples)
    assert -1 < np.mean(samples) < 1


def test_bounded_int_samples_in_range() -> None:
    samples = Integer(-3, 12).uniform().sample(size=1000, random_state=0)
    assert all(-3 <= s < 12 for s in samples)
    assert np.mean(samples) > 2


def test_categorical_draws_every_category() -> None:
    categories = [-2, -1, 0, 1, 2]
    samples = Categorical(categories).uniform().sample(size=1000, random_state=0)
    assert set(samples) == set(categories)


def test_function_domain_calls_the_function() -> None:
    domain = Function(lambda: np.random.uniform(-4, 4))
    samples = domain.sample(size=1000)
    assert all(-4 <= s < 4 for s in samples)
    assert -2 < np.mean(samples) < 2


def test_sample_from_accepts_zero_or_one_argument_functions() -> None:
    def no_args() -> int:
        return 0

    def one_arg(spec: Any) -> int:
        return 1

    def defaulted(spec: Any, b: str = "ok") -> int:
        return 2

    def two_required(spec: Any, b: str) -> int:
        return 3

    for func in (no_args, one_arg, defaulted, functools.partial(two_required, b="ok")):
        assert tune.sample_from(func).sample(None) is not None

    with pytest.raises(ValueError):
        tune.sample_from(two_required).sample(None)


def test_quantized_checks_granularity_and_stays_on_grid() -> None:
    with pytest.raises(ValueError):
        Float(1e-4, 1e-1).quantized(5e-4)  # the lower bound is not on the grid
    with pytest.raises(ValueError):
        Float(-1e-1, -1e-4).quantized(5e-4)
    samples = Float(1e-4, 1e-1).loguniform().quantized(5e-5).sample(size=1000, random_state=0)
    for sample in samples:
        assert 1e-4 <= sample <= 1e-1
        assert sample / 5e-5 == pytest.approx(round(sample / 5e-5), abs=1e-9)
    with pytest.raises(ValueError):
        Float(0, 32).quantized(3)
    samples = Float(0, 33).quantized(3).sample(size=1000, random_state=0)
    assert all(0 <= s <= 33 for s in samples)


def _constant(config: dict[str, Any]) -> int:
    return 0


def test_numpy_seed_makes_sampled_configs_reproducible(storage: str) -> None:
    space = {"integer": tune.randint(0, 100_000), "choice": tune.choice(list(range(100_000)))}

    def run() -> list[tuple[int, int]]:
        np.random.seed(1000)
        results = tune.Tuner(
            _constant,
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=8, backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        configs = [r.config for r in results]  # in the order the trials were created
        return [(c["integer"], c["choice"]) for c in configs if c is not None]

    first, second = run(), run()
    assert len(first) == 8
    assert first == second


# --------------------------------------------------------------------------- HyperOpt
def _mock_objective(config: dict[str, Any]) -> dict[str, float]:
    return {"a": 1.0}


def test_convert_hyperopt_matches_a_hand_written_space(storage: str) -> None:
    pytest.importorskip("hyperopt")
    from hyperopt import hp

    from atune.search.hyperopt import HyperOptSearch

    with pytest.raises(ValueError):
        HyperOptSearch(space={"grid": tune.grid_search([0, 1])}, metric="a", mode="max")
    space = {
        "a": Categorical([2, 3, 4]).uniform(),
        "b": {"x": Integer(-15, -10), "y": 4, "z": Float(1e-4, 1e-2).loguniform()},
    }
    by_hand = {
        "a": hp.choice("a", [2, 3, 4]),
        "b": {
            "x": hp.uniformint("b/x", -15, -11),
            "y": 4,
            "z": hp.loguniform("b/z", np.log(1e-4), np.log(1e-2)),
        },
    }
    first = HyperOptSearch(space=space, random_state_seed=1234, metric="a", mode="max")
    second = HyperOptSearch(space=by_hand, random_state_seed=1234, metric="a", mode="max")
    config = first.suggest("0")
    assert config == second.suggest("0")
    assert config["a"] in (2, 3, 4) and config["b"]["x"] in range(-15, -10)
    assert config["b"]["y"] == 4 and 1e-4 < config["b"]["z"] < 1e-2

    results = tune.Tuner(
        _mock_objective,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=HyperOptSearch(metric="a", mode="max"), num_samples=1, backend="local"
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results[0].config["a"] in (2, 3, 4)

    mixed = HyperOptSearch(
        space={"a": tune.uniform(5, 6), "b": hp.uniform("b", 8, 9)}, metric="a", mode="max"
    )
    config = mixed.suggest("0")
    assert 5 <= config["a"] <= 6 and 8 <= config["b"] <= 9


def test_convert_hyperopt_nested_choices(storage: str) -> None:
    pytest.importorskip("hyperopt")
    from atune.search.hyperopt import HyperOptSearch

    space = {
        "a": 1,
        "dict_nested": Categorical(
            [{"a": Categorical(["M", "N"]).uniform(), "b": Categorical(["O", "P"]).uniform()}]
        ).uniform(),
        "list_nested": Categorical(
            [
                [Categorical(["M", "N"]).uniform(), Categorical(["O", "P"]).uniform()],
                [Categorical(["Q", "R"]).uniform(), Categorical(["S", "T"]).uniform()],
            ]
        ).uniform(),
        "domain_nested": Categorical(
            [Categorical(["M", "N"]).uniform(), Categorical(["O", "P"]).uniform()]
        ).uniform(),
    }
    results = tune.Tuner(
        _mock_objective,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=HyperOptSearch(metric="a", mode="max"), num_samples=10, backend="local"
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert len(results) == 10 and results.num_errors == 0
    for result in results:
        config = result.config
        assert config["dict_nested"]["a"] in ("M", "N")
        assert config["dict_nested"]["b"] in ("O", "P")
        assert isinstance(config["list_nested"], list)  # Ray Tune's conversion: a dict
        if config["list_nested"][0] in ("M", "N"):
            assert config["list_nested"][1] in ("O", "P")
        else:
            assert config["list_nested"][0] in ("Q", "R")
            assert config["list_nested"][1] in ("S", "T")
        assert config["domain_nested"] in ("M", "N", "O", "P")


def test_sample_bounds_hyperopt() -> None:
    pytest.importorskip("hyperopt")
    from atune.search.hyperopt import HyperOptSearch

    space = {k: v for k, v in EVERY_PRIMITIVE.items() if k != "func"}
    searcher = HyperOptSearch(space=space, metric="a", mode="max", n_initial_points=1000)
    for i in range(300):
        config = searcher.suggest(f"trial_{i}")
        assert isinstance(config, dict)
        _assert_in_domain(config)
