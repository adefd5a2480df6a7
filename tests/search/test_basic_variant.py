"""BasicVariantGenerator: grid x samples, nesting, dependencies, points, seeds, laziness."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pytest

from atune.errors import ConfigError, SearchSpaceError
from atune.search import (
    FINISHED,
    BasicVariantGenerator,
    Suggestion,
    choice,
    grid_search,
    loguniform,
    randint,
    sample_from,
    uniform,
    validate_param_space,
)


def make(space: dict[str, Any], num_samples: int = 1, **kwargs: Any) -> BasicVariantGenerator:
    bvg = BasicVariantGenerator(**kwargs)
    assert bvg.set_search_properties(None, None, space, num_samples) is True
    return bvg


def take(bvg: BasicVariantGenerator, limit: int = 10_000) -> list[Suggestion]:
    out: list[Suggestion] = []
    for i in range(limit):
        suggestion = bvg.next_trial(f"t{i}")
        if suggestion == FINISHED:
            break
        assert isinstance(suggestion, Suggestion)
        out.append(suggestion)
    return out


def configs(space: dict[str, Any], num_samples: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    return [s.config for s in take(make(space, num_samples, **kwargs))]


def test_grid_iterates_inside_each_sample() -> None:
    bvg = make({"a": grid_search([1, 2])}, num_samples=2)
    assert bvg.total_samples == 4
    assert [c["a"] for c in (s.config for s in take(bvg))] == [1, 2, 1, 2]


def test_first_grid_key_in_sorted_order_varies_fastest() -> None:
    got = configs({"b": grid_search(["x", "y"]), "a": grid_search([1, 2])})
    assert [(c["a"], c["b"]) for c in got] == [(1, "x"), (2, "x"), (1, "y"), (2, "y")]


def test_count_is_grid_product_times_num_samples() -> None:
    space = {"a": grid_search([1, 2, 3]), "b": {"c": grid_search(["x", "y"])}, "d": uniform(0, 1)}
    bvg = make(space, num_samples=4)
    assert bvg.total_samples == 24
    assert len(take(bvg)) == 24


def test_random_values_are_resampled_per_grid_point() -> None:
    got = configs({"a": grid_search([1, 2, 3]), "b": uniform(0, 1)}, random_state=0)
    assert len({c["b"] for c in got}) == 3


def test_constant_grid_search_keeps_random_values_within_a_sample() -> None:
    got = configs(
        {"a": grid_search([1, 2, 3]), "b": uniform(0, 1)},
        num_samples=2,
        constant_grid_search=True,
        random_state=0,
    )
    assert [c["a"] for c in got] == [1, 2, 3, 1, 2, 3]
    assert len({c["b"] for c in got[:3]}) == 1
    assert got[0]["b"] != got[3]["b"]


def test_nested_dicts_lists_and_tuples_are_resolved() -> None:
    space: dict[str, Any] = {
        "model": {"layers": [choice([16, 32]), 8, {"act": grid_search(["relu", "tanh"])}]},
        "opt": (uniform(0, 1), "sgd"),
    }
    got = configs(space, random_state=1)
    assert len(got) == 2
    for config in got:
        first, eight, _ = config["model"]["layers"]
        assert first in (16, 32) and eight == 8
        assert isinstance(config["opt"], tuple) and config["opt"][1] == "sgd"
        assert 0 <= config["opt"][0] < 1
    assert [c["model"]["layers"][2]["act"] for c in got] == ["relu", "tanh"]
    # The space itself is never modified.
    assert isinstance(space["opt"][0], type(uniform(0, 1)))


def test_constants_are_passed_through_as_the_same_objects() -> None:
    dataset = object()
    got = configs({"data": dataset, "nested": {"fn": len}, "a": grid_search([1, 2])})
    assert all(c["data"] is dataset and c["nested"]["fn"] is len for c in got)


def test_every_config_is_an_independent_copy() -> None:
    got = configs({"a": grid_search([{"x": 1}]), "b": {"c": [1, 2]}}, num_samples=2)
    got[0]["a"]["x"] = 99
    got[0]["b"]["c"].append(3)
    assert got[1] == {"a": {"x": 1}, "b": {"c": [1, 2]}}


def test_domains_inside_grid_values_are_resolved_and_counted() -> None:
    space = {"m": grid_search([{"lr": uniform(0, 1)}, {"lr": grid_search([5, 6])}])}
    bvg = make(space, random_state=0)
    assert bvg.total_samples == 3
    got = [s.config["m"]["lr"] for s in take(bvg)]
    assert 0 <= got[0] < 1 and got[1:] == [5, 6]


def test_experiment_tag_format() -> None:
    space = {
        "lr": loguniform(1e-4, 1e-1),
        "model": {"act": grid_search(["re lu/x", "tanh"])},
        "layers": [randint(1, 2)],
        "const": 5,
    }
    first = take(make(space, random_state=0))[0]
    lr = first.config["lr"]
    # Sorted by full path (layers/0 < lr < model/act), shown by the last component.
    assert first.experiment_tag == f"0_0=1,lr={lr:.4f},act=re_lu_x"
    assert first.evaluated_params == {"lr": lr, "model/act": "re lu/x", "layers/0": 1}


def test_tag_is_the_bare_index_without_sampled_values() -> None:
    assert [s.experiment_tag for s in take(make({"a": 1}, num_samples=2))] == ["0", "1"]


def test_sample_from_sees_resolved_values_in_any_order() -> None:
    space = {
        "c": sample_from(lambda config: config["b"] + 1),
        "b": sample_from(lambda config: config["a"] * 2),
        "a": grid_search([1, 2]),
        "n": {"d": sample_from(lambda config: config.get("a") + config["n"]["e"]), "e": 10},
    }
    got = configs(space)
    assert [(c["a"], c["b"], c["c"], c["n"]["d"]) for c in got] == [(1, 2, 3, 11), (2, 4, 5, 12)]


def test_sample_from_values_are_not_in_the_tag() -> None:
    tags = [
        s.experiment_tag for s in take(make({"a": grid_search([1]), "b": sample_from(lambda: 3)}))
    ]
    assert tags == ["0_a=1"]


def test_sample_from_can_return_a_part_of_the_config() -> None:
    got = configs({"a": {"x": randint(0, 1)}, "b": sample_from(lambda config: config["a"])})
    assert got[0]["b"] == {"x": 0} and type(got[0]["b"]) is dict


def test_circular_sample_from_dependency_fails_naming_the_paths() -> None:
    space = {
        "a": sample_from(lambda config: config["b"]),
        "b": sample_from(lambda config: config["a"]),
        "ok": 1,
    }
    with pytest.raises(SearchSpaceError, match=r"circular dependency.*a, b"):
        take(make(space))


def test_error_inside_sample_from_names_its_path() -> None:
    def boom(config: dict[str, Any]) -> None:
        raise ZeroDivisionError("nope")

    with pytest.raises(SearchSpaceError, match="sample_from at x/y raised") as info:
        take(make({"x": {"y": sample_from(boom)}}))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_deprecated_spec_config_form_still_works() -> None:
    got = configs({"a": 3, "b": sample_from(lambda spec: spec.config.a + 1)})
    assert got[0]["b"] == 4


def test_points_to_evaluate_replace_the_first_samples() -> None:
    # Ray Tune's documented example: four samples, six trials.
    bvg = make(
        {"a": grid_search([1, 2]), "b": randint(0, 3)},
        num_samples=4,
        points_to_evaluate=[{"a": 2, "b": 2}, {"a": 1}, {"b": 2}],
        random_state=0,
    )
    assert bvg.total_samples == 6
    got = take(bvg)
    assert [s.config["a"] for s in got] == [2, 1, 1, 2, 1, 2]
    assert got[0].config == {"a": 2, "b": 2} and got[0].experiment_tag == "0"
    assert got[1].experiment_tag == f"1_b={got[1].config['b']}"
    assert [s.config["b"] for s in got[2:4]] == [2, 2]
    assert got[2].experiment_tag == "2_a=1"


def test_all_points_are_used_even_beyond_num_samples() -> None:
    bvg = make({"a": uniform(0, 1)}, num_samples=1, points_to_evaluate=[{"a": 0.1}, {"a": 0.2}])
    assert bvg.total_samples == 2
    assert [s.config["a"] for s in take(bvg)] == [0.1, 0.2]


def test_point_with_unknown_key_fails_early() -> None:
    bvg = BasicVariantGenerator(points_to_evaluate=[{"nested": {"zz": 1}}])
    with pytest.raises(ConfigError, match="nested/zz"):
        bvg.set_search_properties(None, None, {"nested": {"a": uniform(0, 1)}}, 1)


def test_point_must_be_a_dict() -> None:
    with pytest.raises(ConfigError, match=r"points_to_evaluate must be a dict, got \[1\]"):
        BasicVariantGenerator(points_to_evaluate=[[1]])  # type: ignore[list-item]


def test_same_seed_same_configs_different_seed_different_configs() -> None:
    space = {"a": uniform(0, 1), "b": grid_search([1, 2]), "c": choice(["x", "y", "z"])}
    first = configs(space, num_samples=5, random_state=42)
    assert configs(space, num_samples=5, random_state=42) == first
    assert configs(space, num_samples=5, random_state=43) != first
    assert configs(space, num_samples=5, random_state=np.random.default_rng(42)) == first


def test_global_numpy_seed_makes_unseeded_runs_reproducible() -> None:
    space = {"a": uniform(0, 1), "b": randint(0, 100)}
    np.random.seed(3)
    first = configs(space, num_samples=3)
    np.random.seed(3)
    assert configs(space, num_samples=3) == first


def test_unbounded_num_samples_generates_lazily() -> None:
    calls = []

    def counted() -> int:
        calls.append(1)
        return len(calls)

    bvg = make({"a": grid_search([1, 2, 3]), "n": sample_from(counted)}, num_samples=-1)
    assert bvg.total_samples is None
    assert bvg.next_trial("t0") != FINISHED
    assert len(calls) == 1  # not the whole grid, let alone every sample
    got = take(bvg, limit=4)
    assert len(got) == 4 and len(calls) == 5
    assert [s.config["a"] for s in got] == [2, 3, 1, 2]


def test_max_concurrent_holds_back_suggestions() -> None:
    bvg = make({"a": uniform(0, 1)}, num_samples=3, max_concurrent=2)
    assert isinstance(bvg.next_trial("t0"), Suggestion)
    assert isinstance(bvg.next_trial("t1"), Suggestion)
    assert bvg.next_trial("t2") is None
    bvg.on_trial_complete("t0", {"x": 1})
    assert isinstance(bvg.next_trial("t3"), Suggestion)
    bvg.on_trial_complete("t1")
    bvg.on_trial_complete("t3", error=True)
    assert bvg.next_trial("t4") == FINISHED


def test_finished_is_sticky() -> None:
    bvg = make({}, num_samples=1)
    assert isinstance(bvg.next_trial("a"), Suggestion)
    assert bvg.next_trial("b") == FINISHED
    assert bvg.next_trial("c") == FINISHED


@pytest.mark.parametrize("kind", ["seed", "RandomState"])
@pytest.mark.parametrize("stop_after", [0, 1, 2, 3, 5])
def test_state_round_trip_continues_the_same_sequence(kind: str, stop_after: int) -> None:
    space = {"a": grid_search([1, 2, 3]), "b": uniform(0, 1), "c": choice(["x", "y"])}

    def fresh(seed: int) -> BasicVariantGenerator:
        state = seed if kind == "seed" else np.random.RandomState(seed)
        return make(space, 3, points_to_evaluate=[{"c": "x"}], random_state=state)

    reference = [(s.config, s.experiment_tag) for s in take(fresh(7))]
    first = fresh(7)
    handed = take(first, limit=stop_after)
    state = json.loads(json.dumps(first.get_state()))

    second = fresh(99)  # the restored RNG state, not the seed, decides what comes next
    second.set_state(state)
    rest = [(s.config, s.experiment_tag) for s in take(second)]
    assert [(s.config, s.experiment_tag) for s in handed] + rest == reference


def test_state_keeps_live_trials_for_max_concurrent() -> None:
    bvg = make({"a": uniform(0, 1)}, num_samples=5, max_concurrent=1, random_state=0)
    assert isinstance(bvg.next_trial("t0"), Suggestion)
    restored = make({"a": uniform(0, 1)}, num_samples=5, max_concurrent=1, random_state=0)
    restored.set_state(bvg.get_state())
    assert restored.next_trial("t1") is None
    restored.on_trial_complete("t0")
    assert isinstance(restored.next_trial("t1"), Suggestion)


def test_set_state_rejects_foreign_data() -> None:
    bvg = make({"a": uniform(0, 1)})
    with pytest.raises(ConfigError, match="not a BasicVariantGenerator state"):
        bvg.set_state({"counter": 3})


def test_suggestions_encode_with_msgspec() -> None:
    suggestion = take(make({"a": uniform(0, 1), "b": [randint(0, 3)]}, random_state=0))[0]
    decoded = msgspec.json.decode(msgspec.json.encode(suggestion), type=Suggestion)
    assert decoded == suggestion


def test_does_not_need_intermediate_results() -> None:
    assert BasicVariantGenerator.needs_intermediate_results is False


def test_next_trial_before_set_search_properties_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="set_search_properties"):
        BasicVariantGenerator().next_trial("t0")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrent": -1}, "max_concurrent must be an int >= 0, got -1"),
        ({"max_concurrent": 1.5}, "max_concurrent must be an int >= 0, got 1.5"),
        ({"random_state": "seed"}, "random_state must be an int seed.*got 'seed'"),
    ],
)
def test_constructor_validates_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BasicVariantGenerator(**kwargs)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ([1, 2], r"param_space must be a dict, got list: \[1, 2\]"),
        ("lr", "param_space must be a dict, got str: 'lr'"),
    ],
)
def test_validate_param_space_rejects_non_dicts(space: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_param_space(space)


@pytest.mark.parametrize("num_samples", [0, -2, True, "3", 1.0])
def test_validate_param_space_rejects_bad_num_samples(num_samples: Any) -> None:
    with pytest.raises(ConfigError, match=f"num_samples .* got {num_samples!r}"):
        validate_param_space({}, num_samples=num_samples)


def test_validate_param_space_accepts_valid_input() -> None:
    validate_param_space(None)
    validate_param_space({"a": uniform(0, 1)}, num_samples=-1)


def test_validate_param_space_checks_grid_markers() -> None:
    with pytest.raises(SearchSpaceError, match="grid_search at model/act has no values"):
        validate_param_space({"model": {"act": {"grid_search": []}}})


def test_constant_grid_search_still_resolves_functions_of_grid_values() -> None:
    got = configs(
        {"a": grid_search([1, 2]), "b": sample_from(lambda c: c["a"] * 10), "r": uniform(0, 1)},
        constant_grid_search=True,
        random_state=0,
    )
    assert [(c["a"], c["b"]) for c in got] == [(1, 10), (2, 20)]
    assert got[0]["r"] == got[1]["r"]
