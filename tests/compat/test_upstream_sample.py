"""Ray Tune's ``tests/test_sample.py`` (the search-space part), asserted against atune.

The ``testConvert*`` tests of that file translate spaces for external searchers (Ax,
BayesOpt, BOHB, Dragonfly, HEBO, HyperOpt, Nevergrad, Optuna, SkOpt, ZOOpt), which atune
does not ship yet; see docs/compatibility.md.
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


def test_every_sampling_primitive_stays_in_its_domain() -> None:
    space = {
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
    for out in _variants(space, 300):
        assert out["func"] == pytest.approx(out["uniform"] * 0.01)
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
