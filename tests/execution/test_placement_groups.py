"""PlacementGroupFactory and resource_dict_to_pg_factory (no Ray needed)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from atune.errors import ConfigError
from atune.execution._resources import normalize_resources, sum_resources
from atune.execution.placement_groups import (
    PlacementGroupFactory,
    resource_dict_to_pg_factory,
)


def test_zero_resources_are_dropped_and_amounts_become_floats() -> None:
    pgf = PlacementGroupFactory([{"CPU": 1, "GPU": 0, "custom": 2}])
    assert pgf.bundles == [{"CPU": 1.0, "custom": 2.0}]
    assert all(isinstance(v, float) for v in pgf.bundles[0].values())


def test_cpu_and_gpu_spellings_are_normalised_memory_and_custom_kept() -> None:
    pgf = PlacementGroupFactory([{"cpu": 2, "gpu": 0.5, "memory": 1e9, "tpu_v4": 1}])
    assert pgf.bundles == [{"CPU": 2.0, "GPU": 0.5, "memory": 1e9, "tpu_v4": 1.0}]
    assert pgf == PlacementGroupFactory([{"CPU": 2, "GPU": 0.5, "memory": 1e9, "tpu_v4": 1}])


def test_one_resource_spelled_twice_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'CPU' is given twice"):
        PlacementGroupFactory([{"cpu": 1, "CPU": 2}])


def test_bundles_is_a_deep_copy() -> None:
    pgf = PlacementGroupFactory([{"CPU": 1}])
    pgf.bundles[0]["CPU"] = 99
    assert pgf.bundles == [{"CPU": 1.0}]


def test_required_resources_sums_bundles_exactly() -> None:
    pgf = PlacementGroupFactory([{"CPU": 1, "GPU": 0.5}, {"CPU": 2}, {"CPU": 2, "x": 1}])
    assert pgf.required_resources == {"CPU": 5.0, "GPU": 0.5, "x": 1.0}
    tenths = PlacementGroupFactory([{"CPU": 0.1}] * 10)
    assert tenths.required_resources == {"CPU": 1.0}


def test_head_cpus_and_strategy() -> None:
    pgf = PlacementGroupFactory([{"CPU": 3, "GPU": 1}, {"CPU": 2}], strategy="SPREAD")
    assert pgf.head_cpus == 3.0
    assert pgf.strategy == "SPREAD"
    assert PlacementGroupFactory([{"GPU": 1}]).head_cpus == 0.0


def test_empty_head_bundle() -> None:
    pgf = PlacementGroupFactory([{}, {"CPU": 2}, {"CPU": 2}])
    assert pgf.head_bundle_is_empty
    assert pgf.head_cpus == 0.0
    assert pgf.bundles == [{"CPU": 2.0}, {"CPU": 2.0}]
    assert pgf.required_resources == {"CPU": 4.0}
    # A head of zeros is empty too.
    zero_head = PlacementGroupFactory([{"CPU": 0}, {"CPU": 2}])
    assert zero_head.head_bundle_is_empty
    # The empty head is part of equality: same worker bundles, different trial actor.
    assert zero_head != PlacementGroupFactory([{"CPU": 2}])
    assert not PlacementGroupFactory([{"CPU": 1}]).head_bundle_is_empty


@pytest.mark.parametrize(
    ("bundles", "match"),
    [
        ([], r"at least one bundle"),
        ([{}], r"head bundle is empty and there are no worker bundles"),
        ([{"CPU": 0}], r"head bundle is empty"),
        ([{"CPU": 1}, {}], r"bundle 1 asks for no resources"),
        ({"CPU": 1}, r"must be a list of resource dicts"),
        ([{"CPU": -1}], r"'CPU' must not be negative, got -1"),
        ([{"GPU": "two"}], r"'GPU' must be a number, got 'two'"),
        ([{"CPU": True}], r"'CPU' must be a number, got True"),
        ([{"CPU": float("inf")}], r"'CPU' must be finite"),
        ([{1: 1}], r"resource names must be non-empty strings, got 1"),
    ],
)
def test_invalid_bundles(bundles: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PlacementGroupFactory(bundles)


def test_invalid_strategy_names_the_value() -> None:
    with pytest.raises(ConfigError, match="'pack'") as info:
        PlacementGroupFactory([{"CPU": 1}], strategy="pack")
    assert info.value.value == "pack"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
def test_valid_strategies(strategy: str) -> None:
    assert PlacementGroupFactory([{"CPU": 1}], strategy).strategy == strategy


def test_equality_and_hash() -> None:
    a = PlacementGroupFactory([{"CPU": 1, "GPU": 1}])
    b = PlacementGroupFactory([{"GPU": 1.0, "CPU": 1.0, "x": 0}], strategy="PACK")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != PlacementGroupFactory([{"CPU": 1, "GPU": 1}], strategy="SPREAD")
    assert a != PlacementGroupFactory([{"CPU": 2, "GPU": 1}])
    assert a != PlacementGroupFactory([{"CPU": 1}, {"GPU": 1}])
    assert a != PlacementGroupFactory([{"CPU": 1, "GPU": 1}], "PACK", name="trial")
    assert a != {"CPU": 1, "GPU": 1}


def test_repr() -> None:
    assert repr(PlacementGroupFactory([{"cpu": 1}])) == (
        "PlacementGroupFactory([{'CPU': 1.0}], strategy='PACK')"
    )
    assert repr(PlacementGroupFactory([{}, {"CPU": 2}], "SPREAD", name="n")) == (
        "PlacementGroupFactory([{}, {'CPU': 2.0}], strategy='SPREAD', name='n')"
    )


@pytest.mark.parametrize(
    "pgf",
    [
        PlacementGroupFactory([{"CPU": 1}]),
        PlacementGroupFactory([{}, {"CPU": 2, "GPU": 0.5}], strategy="STRICT_SPREAD"),
        PlacementGroupFactory([{"CPU": 1, "memory": 2e9}], "PACK", name="t", lifetime=None),
    ],
)
def test_dict_round_trip_through_json_and_pickle(pgf: PlacementGroupFactory) -> None:
    data = json.loads(json.dumps(pgf.to_dict()))
    again = PlacementGroupFactory.from_dict(data)
    assert again == pgf
    assert again.head_bundle_is_empty == pgf.head_bundle_is_empty
    assert pickle.loads(pickle.dumps(pgf)) == pgf


def test_to_dict_shape() -> None:
    assert PlacementGroupFactory([{}, {"CPU": 2}], "SPREAD").to_dict() == {
        "bundles": [{}, {"CPU": 2.0}],
        "strategy": "SPREAD",
    }
    with pytest.raises(ConfigError, match="no 'bundles'"):
        PlacementGroupFactory.from_dict({"strategy": "PACK"})


def test_calling_the_factory_is_deprecated(monkeypatch: pytest.MonkeyPatch) -> None:
    pgf = PlacementGroupFactory([{"CPU": 1}])
    monkeypatch.setattr(PlacementGroupFactory, "to_placement_group", lambda self: "pg")
    with pytest.warns(DeprecationWarning, match="to_placement_group"):
        assert pgf() == "pg"


@pytest.mark.parametrize(
    ("spec", "bundle"),
    [
        (None, {"CPU": 1.0}),
        ({}, {"CPU": 1.0}),
        ({"cpu": 2}, {"CPU": 2.0}),
        ({"CPU": 2, "GPU": 1}, {"CPU": 2.0, "GPU": 1.0}),
        ({"cpu": 3, "CPU": 5}, {"CPU": 3.0}),  # as in Ray, lower case wins
        ({"cpu": 1, "gpu": 0, "memory": 1e9}, {"CPU": 1.0, "memory": 1e9}),
        ({"cpu": 1, "tpu": 4}, {"CPU": 1.0, "tpu": 4.0}),
        (
            {"cpu": 1, "custom_resources": {"a": 1}, "ignored": 5},
            {"CPU": 1.0, "a": 1.0},
        ),
        ({"cpu": 1, "custom_resources": {}, "b": 2}, {"CPU": 1.0, "b": 2.0}),
        ({"gpu": 1}, {"GPU": 1.0}),
    ],
)
def test_resource_dict_to_pg_factory(spec: dict[str, Any] | None, bundle: dict[str, float]) -> None:
    pgf = resource_dict_to_pg_factory(spec)
    assert pgf == PlacementGroupFactory([bundle])
    assert pgf.strategy == "PACK"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"cpu": "1"}, r"'cpu' must be a number, got '1' of type str"),
        ({"cpu": 1, "custom_resources": ["a"]}, r"custom_resources must be a dict.*\['a'\]"),
        ({"cpu": 1, "custom_resources": {"a": None}}, r"'a' must be a number, got None"),
        ({"cpu": 0}, r"ask for nothing"),
        ({"memory": -5}, r"'memory' must not be negative, got -5"),
    ],
)
def test_resource_dict_to_pg_factory_errors(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resource_dict_to_pg_factory(spec)


def test_normalize_and_sum_helpers() -> None:
    assert normalize_resources({"cpu": 0, "gpu": 1}) == {"GPU": 1.0}
    assert normalize_resources({"cpu": 0}, drop_zeros=False) == {"CPU": 0.0}
    assert sum_resources([{"CPU": 0.1}] * 3) == {"CPU": 0.3}
    assert sum_resources([]) == {}
