"""The sampling primitives: bounds, inclusivity, types, validation and seeding."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from atune.errors import SearchSpaceError
from atune.search import sample
from atune.search.sample import (
    Categorical,
    Float,
    Function,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
)

N = 3000


def draw(domain: sample.Domain, n: int = N, seed: int = 0) -> list[Any]:
    values = domain.sample(size=n, random_state=seed)
    assert isinstance(values, list)
    assert len(values) == n
    return values


def test_uniform_stays_in_half_open_range_and_returns_floats() -> None:
    values = draw(sample.uniform(2, 5))
    assert all(type(v) is float for v in values)
    assert all(2 <= v < 5 for v in values)
    assert min(values) < 2.1 and max(values) > 4.9


def test_quniform_rounds_to_multiples_and_includes_both_bounds() -> None:
    values = draw(sample.quniform(0, 1, 0.25))
    assert set(values) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert all(type(v) is float for v in values)


def test_loguniform_is_log_distributed() -> None:
    values = draw(sample.loguniform(1e-3, 1))
    assert all(1e-3 <= v < 1 for v in values)
    # Log-uniform over three decades puts about a third of the mass in each decade.
    below = sum(v < 1e-2 for v in values) / len(values)
    assert 0.28 < below < 0.39


def test_qloguniform_is_quantized_with_upper_inclusive() -> None:
    values = draw(sample.qloguniform(1, 8, 1))
    assert set(values) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}


def test_randn_has_the_given_mean_and_sd() -> None:
    values = draw(sample.randn(10, 0.5))
    assert all(type(v) is float for v in values)
    assert abs(float(np.mean(values)) - 10) < 0.05
    assert abs(float(np.std(values)) - 0.5) < 0.05


def test_qrandn_yields_multiples_of_q() -> None:
    values = draw(sample.qrandn(0, 3, 0.5))
    assert all(math.isclose(v / 0.5, round(v / 0.5)) for v in values)
    assert len(set(values)) > 5


def test_randint_excludes_upper() -> None:
    values = draw(sample.randint(0, 3))
    assert set(values) == {0, 1, 2}
    assert all(type(v) is int for v in values)


def test_lograndint_excludes_upper() -> None:
    values = draw(sample.lograndint(1, 10))
    assert set(values) == set(range(1, 10))
    assert all(type(v) is int for v in values)


def test_qrandint_includes_upper_for_q_above_one() -> None:
    values = draw(sample.qrandint(0, 10, 5))
    assert set(values) == {0, 5, 10}
    assert all(type(v) is int for v in values)


def test_qrandint_with_q_one_excludes_upper() -> None:
    assert set(draw(sample.qrandint(0, 10))) == set(range(10))


def test_qrandint_snaps_inwards_to_the_multiples_in_range() -> None:
    assert set(draw(sample.qrandint(1, 11, 5))) == {5, 10}


def test_qlograndint_yields_multiples_up_to_upper() -> None:
    values = draw(sample.qlograndint(1, 100, 5))
    assert all(v % 5 == 0 and 5 <= v <= 100 for v in values)
    assert 100 in values


def test_choice_returns_the_original_objects() -> None:
    marker = object()
    categories = [1, "a", None, 2.5, marker, (1, 2)]
    values = draw(sample.choice(categories))
    assert {id(v) for v in values} == {id(c) for c in categories}
    assert any(v is marker for v in values)


def test_sample_from_calls_with_and_without_config() -> None:
    assert sample.sample_from(lambda: 7).sample() == 7
    assert sample.sample_from(lambda config: config["a"] + 1).sample(config={"a": 1}) == 2
    assert sample.sample_from(lambda config: config["a"]).sample(
        config=[{"a": 1}, {"a": 2}], size=2
    ) == [1, 2]


def test_size_one_returns_a_single_value() -> None:
    value = sample.uniform(0, 1).sample(random_state=1)
    assert type(value) is float


def test_sampled_values_serialize_to_json() -> None:
    domains = [sample.uniform(0, 1), sample.randint(0, 5), sample.qrandint(0, 10, 5)]
    json.dumps([d.sample(random_state=3) for d in domains])


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        # Values Ray Tune 2.60 draws with random_state=2024: same numpy calls, same numbers.
        ("uniform", (0, 1), [0.6758313379812818, 0.21432320123825765, 0.3094520308816917]),
        ("randn", (0, 2), [2.0577137479038026, 3.2838400813423005, 2.2934390591932274]),
        ("randint", (0, 100), [24, 67, 9]),
        ("qrandint", (0, 10, 5), [0, 10, 0]),
        ("lograndint", (1, 1000), [106, 4, 8]),
        ("choice", (["a", "b", "c"],), ["a", "c", "a"]),
    ],
)
def test_a_seed_draws_what_ray_tune_draws(
    name: str, args: tuple[Any, ...], expected: list[Any]
) -> None:
    domain = getattr(sample, name)(*args)
    assert domain.sample(size=3, random_state=2024) == expected


def test_random_state_forms_are_reproducible() -> None:
    domain = sample.uniform(0, 1)
    assert draw(domain, 5, seed=4) == draw(domain, 5, seed=4)
    assert draw(domain, 5, seed=4) != draw(domain, 5, seed=5)
    gen_a, gen_b = np.random.default_rng(9), np.random.default_rng(9)
    assert domain.sample(size=5, random_state=gen_a) == domain.sample(size=5, random_state=gen_b)
    rs_a, rs_b = np.random.RandomState(9), np.random.RandomState(9)
    assert domain.sample(size=5, random_state=rs_a) == domain.sample(size=5, random_state=rs_b)


def test_none_uses_numpys_global_generator() -> None:
    domain = sample.randint(0, 1000)
    np.random.seed(11)
    first = domain.sample(size=5)
    np.random.seed(11)
    assert domain.sample(size=5) == first


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: sample.loguniform(0, 1),
            "loguniform: lower bound must be > 0, got lower=0, upper=1",
        ),
        (
            lambda: sample.randint(5, 5),
            "randint: lower bound must be < upper bound, got lower=5, upper=5",
        ),
        (
            lambda: sample.uniform(3, 1),
            "uniform: lower bound must be < upper bound, got lower=3, upper=1",
        ),
        (
            lambda: sample.uniform(0, float("inf")),
            "uniform: bounds must be finite, got lower=0, upper=inf",
        ),
        (
            lambda: sample.uniform("a", 1),  # type: ignore[arg-type]
            "uniform: lower bound must be a real number, got lower='a'",
        ),
        (lambda: sample.uniform(0, float("nan")), "uniform: bounds must be finite"),
        (lambda: sample.quniform(0, 1, 0.3), "quniform: upper bound 1 is not divisible by q=0.3"),
        (
            lambda: sample.quniform(0.1, 1, 0.25),
            "quniform: lower bound 0.1 is not divisible by q=0.25",
        ),
        (lambda: sample.quniform(0, 1, 0), "quniform: q must be a number > 0, got q=0"),
        (
            lambda: sample.qloguniform(0, 1, 0.1),
            "qloguniform: lower bound must be > 0, got lower=0",
        ),
        (lambda: sample.randn(0, 0), "randn: sd must be > 0, got sd=0"),
        (lambda: sample.qrandn(0, -1, 0.5), "qrandn: sd must be > 0, got sd=-1"),
        (lambda: sample.qrandn(0, 1, -1), "qrandn: q must be a number > 0, got q=-1"),
        (
            lambda: sample.randint(0.5, 3),  # type: ignore[arg-type]
            "randint: lower bound must be an integer, got lower=0.5",
        ),
        (
            lambda: sample.lograndint(0, 10),
            "lograndint: lower bound must be > 0, got lower=0, upper=10",
        ),
        (
            lambda: sample.qrandint(1, 4, 5),
            "qrandint: there is no multiple of q=5 between lower=1 and upper=4",
        ),
        (
            lambda: sample.qrandint(0, 10, 2.5),  # type: ignore[arg-type]
            "qrandint: q must be an integer, got q=2.5",
        ),
        (
            lambda: sample.qrandint(3, 3, 1),
            "qrandint: lower bound must be < upper bound, got lower=3, upper=3",
        ),
        (lambda: sample.qlograndint(0, 10, 2), "qlograndint: lower bound must be > 0, got lower=0"),
        (lambda: sample.choice([]), "choice: categories must not be empty, got []"),
        (lambda: sample.choice("abc"), "choice: categories must be a list of values, got 'abc'"),
        (
            lambda: sample.sample_from(3),  # type: ignore[arg-type]
            "sample_from: func must be callable, got 3",
        ),
        (
            lambda: sample.sample_from(lambda a, b: 0),
            "sample_from: func must be callable with 0 or 1 arguments",
        ),
        (lambda: sample.grid_search([]), "grid_search: values must not be empty, got []"),
        (
            lambda: sample.grid_search(5),  # type: ignore[arg-type]
            "grid_search: values must be a list of values, got 5",
        ),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_values(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(SearchSpaceError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_integer_valued_float_bounds_are_accepted_as_ints() -> None:
    domain = sample.randint(1, 1e3)  # type: ignore[arg-type]
    assert (domain.lower, domain.upper) == (1, 1000)
    assert type(domain.upper) is int


def test_base_argument_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="base"):
        sample.loguniform(1, 10, base=10)


def test_domain_introspection() -> None:
    lr = sample.qloguniform(1e-4, 1e-1, 1e-4)
    assert isinstance(lr, Float)
    assert (lr.lower, lr.upper) == (1e-4, 1e-1)
    sampler = lr.get_sampler()
    assert isinstance(sampler, Quantized) and sampler.q == 1e-4
    assert isinstance(sampler.get_sampler(), LogUniform)
    assert lr.domain_str == "(0.0001, 0.1)"

    normal = sample.randn(1, 2).get_sampler()
    assert isinstance(normal, Normal) and (normal.mean, normal.sd) == (1, 2)

    n = sample.randint(0, 10)
    assert isinstance(n, Integer) and isinstance(n.get_sampler(), Uniform)
    assert n.is_valid(5) and not n.is_valid(11)
    assert not n.is_grid() and not n.is_function()

    cat = sample.choice(["x", "y"])
    assert isinstance(cat, Categorical) and cat.categories == ["x", "y"] and len(cat) == 2
    assert cat.is_valid("x") and not cat.is_valid("z")
    assert cat.grid().is_grid() and not cat.is_grid()

    fn = sample.sample_from(lambda: 1)
    assert isinstance(fn, Function) and fn.is_function() and fn.is_valid(object())


def test_a_grid_domain_cannot_be_sampled() -> None:
    with pytest.raises(SearchSpaceError, match="grid"):
        sample.choice([1, 2]).grid().sample()


def test_set_sampler_refuses_a_second_sampler() -> None:
    domain = Float(0, 1).uniform()
    with pytest.raises(SearchSpaceError, match="already has sampler"):
        domain.set_sampler(LogUniform())


def test_builders_return_copies() -> None:
    base = Float(1, 10)
    assert base.loguniform() is not base
    assert base.sampler is None


def test_grid_search_is_a_plain_marker_dict() -> None:
    assert sample.grid_search(range(3)) == {"grid_search": [0, 1, 2]}
    assert sample.grid_search(x for x in "ab") == {"grid_search": ["a", "b"]}
