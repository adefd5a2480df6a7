"""The public surface of atune.search: exported names, docstrings, Ray Tune import paths."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "atune.search",
    "atune.search.sample",
    "atune.search.basic_variant",
    "atune.search.searcher",
    "atune.search.concurrency_limiter",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_exported_name_exists_and_is_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, f"{module_name}.{name} has no docstring"


def test_ray_tune_import_paths() -> None:
    from atune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
    from atune.search.basic_variant import BasicVariantGenerator as FromBasicVariant
    from atune.search.concurrency_limiter import ConcurrencyLimiter as FromLimiter
    from atune.search.sample import Domain, choice, uniform
    from atune.search.searcher import Searcher as FromSearcher

    assert FromBasicVariant is BasicVariantGenerator
    assert FromLimiter is ConcurrencyLimiter
    assert FromSearcher is Searcher
    assert isinstance(uniform(0, 1), Domain) and isinstance(choice([1]), Domain)


def test_the_thirteen_primitives_are_exported() -> None:
    import atune.search

    primitives = {
        "uniform",
        "quniform",
        "loguniform",
        "qloguniform",
        "randn",
        "qrandn",
        "randint",
        "qrandint",
        "lograndint",
        "qlograndint",
        "choice",
        "sample_from",
        "grid_search",
    }
    assert primitives <= set(atune.search.__all__)
