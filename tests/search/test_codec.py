"""The param_space JSON codec: round trips, identical sampling, unrestorable values, merging."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from atune.errors import ConfigError, StorageError
from atune.search import (
    FINISHED,
    BasicVariantGenerator,
    Suggestion,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from atune.search._codec import (
    Unrestorable,
    decode_space,
    encode_space,
    has_unrestorable,
    merge_space,
)
from atune.search.sample import Categorical, Float, Integer, Normal, Quantized, Uniform


def roundtrip(space: Any) -> Any:
    """Encode, go through strict JSON text, decode; the space must be fully encodable."""
    data, failed = encode_space(space)
    assert failed == []
    return decode_space(json.loads(json.dumps(data, allow_nan=False)))


def assert_same(a: Any, b: Any) -> None:
    """Equal values of identical types all the way down (NaN equals NaN)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b)
    elif isinstance(a, Float | Integer | Categorical):
        assert vars(a).keys() == vars(b).keys()
        for key in vars(a):
            if key != "sampler":
                assert_same(vars(a)[key], vars(b)[key])
        assert_same_sampler(a.sampler, b.sampler)
    else:
        assert a == b


def assert_same_sampler(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, Normal):
        assert (a.mean, a.sd) == (b.mean, b.sd)
    if isinstance(a, Quantized):
        assert type(a.q) is type(b.q) and a.q == b.q
        assert_same_sampler(a.sampler, b.sampler)


def suggestions(space: Any, num_samples: int, seed: int = 7, **kwargs: Any) -> list[Suggestion]:
    bvg = BasicVariantGenerator(random_state=seed, **kwargs)
    bvg.set_search_properties(None, None, space, num_samples)
    return take(bvg)


def take(bvg: BasicVariantGenerator, limit: int = 1000) -> list[Suggestion]:
    out: list[Suggestion] = []
    for i in range(limit):
        suggestion = bvg.next_trial(f"t{i}")
        if suggestion == FINISHED:
            break
        assert isinstance(suggestion, Suggestion)
        out.append(suggestion)
    return out


def assert_samples_identically(original: Any, decoded: Any, num_samples: int = 25) -> None:
    for seed in (0, 7):
        want = suggestions(original, num_samples, seed)
        got = suggestions(decoded, num_samples, seed)
        assert len(got) == len(want) > 0
        for w, g in zip(want, got, strict=True):
            assert_same(g.config, w.config)
            assert g.experiment_tag == w.experiment_tag
            assert g.evaluated_params == w.evaluated_params


PRIMITIVES: dict[str, Callable[[], Any]] = {
    "uniform": lambda: uniform(-1.5, 2),
    "quniform": lambda: quniform(0, 10, 0.5),
    "loguniform": lambda: loguniform(1e-4, 1e-1),
    "qloguniform": lambda: qloguniform(0.5, 50, 0.5),
    "randn": lambda: randn(),
    "randn_args": lambda: randn(2.5, 0.3),
    "qrandn": lambda: qrandn(0, 3, 0.2),
    "randint": lambda: randint(-3, 7),
    "qrandint": lambda: qrandint(0, 20, 5),
    "qrandint_q1": lambda: qrandint(1, 10),
    "lograndint": lambda: lograndint(1, 1000),
    "qlograndint": lambda: qlograndint(2, 1000, 2),
    "choice_mixed": lambda: choice(
        [1, 2.0, "a", None, True, [1, 2], {"k": [3, (4, 5)]}, (6, "b"), float("inf")]
    ),
    "choice_of_domains": lambda: choice([uniform(0, 1), {"inner": randint(0, 5)}, 3]),
    "grid_search": lambda: grid_search([1, "a", {"nested": uniform(0, 1)}, [2, 3]]),
    "grid_tuple_values": lambda: {"grid_search": (1, 2.5)},
    "categorical_grid": lambda: Categorical(["x", "y", "z"]).grid(),
    "float_unsampled": lambda: Float(0.0, 1.0),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_round_trips_and_samples_identically(name: str) -> None:
    space = {"x": PRIMITIVES[name](), "const": 1}
    decoded = roundtrip(space)
    assert_same(decoded, space)
    if name != "float_unsampled":
        assert_samples_identically(space, decoded)


def test_domain_is_tagged_versioned_data() -> None:
    data, _ = encode_space({"lr": qloguniform(0.5, 50, 0.5), "n": randn(1, 2)})
    assert data["lr"] == {
        "__atune_domain__": "float",
        "v": 1,
        "lower": 0.5,
        "upper": 50,
        "sampler": {"kind": "quantized", "q": 0.5, "sampler": {"kind": "loguniform"}},
    }
    inf = {"__atune_value__": "float", "v": 1, "value": "inf"}
    assert data["n"]["upper"] == inf
    assert data["n"]["lower"] == {**inf, "value": "-inf"}
    assert data["n"]["sampler"] == {"kind": "normal", "mean": 1, "sd": 2}


def test_deprecated_loguniform_base_is_not_stored_and_decodes_without_warning() -> None:
    with pytest.warns(DeprecationWarning):
        space = {"lr": loguniform(1e-3, 1.0, base=10)}
    decoded = roundtrip(space)  # filterwarnings=error: a warning here fails the test
    assert_same(decoded, space)
    assert_samples_identically(space, decoded)


def test_nested_space_samples_identically_also_with_constant_grid() -> None:
    space = {
        "model": {
            "layers": [randint(1, 4), {"width": choice([32, 64])}, (qrandint(0, 8, 2), "relu")],
            "dropout": grid_search([0.0, 0.5]),
        },
        "opt": {"lr": loguniform(1e-4, 1e-1), "beta": grid_search([{"b1": uniform(0.8, 1)}, 1])},
        "seed": 3,
    }
    decoded = roundtrip(space)
    assert_same(decoded, space)
    assert_samples_identically(space, decoded, num_samples=4)
    for seed in (1, 2):
        want = suggestions(space, 3, seed, constant_grid_search=True)
        got = suggestions(decoded, 3, seed, constant_grid_search=True)
        assert [s.config for s in got] == [s.config for s in want]


def test_decoded_space_continues_from_the_same_generator_state() -> None:
    space = {"a": uniform(0, 1), "b": grid_search([1, 2, 3]), "c": {"d": choice(["x", "y"])}}
    original = BasicVariantGenerator(random_state=11)
    original.set_search_properties(None, None, space, 6)
    take(original, limit=7)  # stop in the middle of the third sample's grid
    state = json.loads(json.dumps(original.get_state()))
    want = take(original)

    restored = BasicVariantGenerator(random_state=11)
    restored.set_search_properties(None, None, roundtrip(space), 6)
    restored.set_state(state)
    got = take(restored)
    assert len(got) == len(want) == 18 - 7
    assert [(s.config, s.experiment_tag) for s in got] == [
        (s.config, s.experiment_tag) for s in want
    ]


def test_constants_round_trip_with_their_types() -> None:
    space = {
        "floats": [float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 0.1],
        "ints": [0, -(2**70), True, False],
        "strs": ["", "ünïcode", "grid_search"],
        "none": None,
        "empty": [{}, [], ()],
        "tuple": (1, (2, [3]), {"k": (4,)}),
        "reserved": {"__atune_domain__": "float", "__atune_value__": [1], "x": uniform(0, 1)},
        "looks_like_grid_but_two_keys": {"grid_search": [1], "other": 2},
        "np": [np.int64(3), np.float32(0.1), np.bool_(True), np.uint8(255), np.float64("nan")],
        "arrays": [np.arange(6, dtype=np.int16).reshape(2, 3), np.array([np.inf, 0.5])],
        "empty_array": np.zeros((0, 3), dtype=np.float32),
    }
    data, failed = encode_space(space)
    assert failed == []
    decoded = decode_space(json.loads(json.dumps(data, allow_nan=False)))
    assert_same(decoded, space)
    assert isinstance(decoded["reserved"]["x"], Float)


def unrestorable_space() -> dict[str, Any]:
    return {
        "a": uniform(0, 1),
        "f": sample_from(lambda config: config["a"] * 2),
        "nested": {"obj": object(), "ok": 1, "fn": len},
        "lst": [1, OrderedDict(x=1), (2, {3: "int key"})],
        "mixed_choice": choice([1, object()]),
        "grid": grid_search([1, {"g": sample_from(lambda: 5)}]),
        "sub": Float(0, 1).uniform().quantized(0.5),
    }


class MyFloat(Float):
    """A domain subclass: the codec stores only the exact domain types."""


def test_unencodable_values_become_unrestorable_markers_at_their_paths() -> None:
    space = unrestorable_space()
    space["custom_domain"] = MyFloat(0, 1).uniform()
    data, failed = encode_space(space)
    expected = [
        "f",
        "nested/obj",
        "nested/fn",
        "lst/1",
        "lst/2/1",
        "mixed_choice",
        "grid",
        "custom_domain",
    ]
    assert failed == expected
    decoded = decode_space(json.loads(json.dumps(data, allow_nan=False)))
    assert has_unrestorable(decoded) == expected
    assert decoded["nested"]["ok"] == 1
    assert isinstance(decoded["sub"], Float)
    markers = {m: decoded_at(decoded, m) for m in expected}
    assert markers["f"] == Unrestorable("f", "sample_from")
    assert markers["nested/obj"] == Unrestorable("nested/obj", "object")
    assert markers["lst/1"].type_name == "collections.OrderedDict"
    assert markers["lst/2/1"].type_name == "dict with non-str keys"
    assert markers["mixed_choice"].type_name == "categorical holding object"
    assert markers["grid"].type_name == "grid_search holding sample_from"
    assert markers["custom_domain"].type_name.endswith("MyFloat")
    text = repr(markers["nested/obj"])
    assert "nested/obj" in text and "param_space" in text and "Tuner.restore" in text


def decoded_at(space: Any, path: str) -> Any:
    node = space
    for part in path.split("/"):
        node = node[int(part)] if isinstance(node, list | tuple) else node[part]
    return node


def test_custom_sampler_makes_its_domain_unrestorable() -> None:
    class Odd(Uniform):
        pass

    domain = Float(0, 1)
    domain.set_sampler(Odd())
    data, failed = encode_space({"x": domain, "y": 2})
    assert failed == ["x"]
    assert decode_space(data)["x"].type_name.endswith("Odd")


def test_merge_fills_markers_and_samples_like_the_original() -> None:
    space = unrestorable_space()
    data, _ = encode_space(space)
    decoded = decode_space(json.loads(json.dumps(data)))
    provided = unrestorable_space()
    merged = merge_space(decoded, provided)
    assert has_unrestorable(merged) == []
    assert merged["nested"]["obj"] is provided["nested"]["obj"]
    assert merged["f"] is provided["f"]
    assert type(merged["lst"][2]) is tuple and merged["lst"][2][1] is provided["lst"][2][1]
    assert merged["a"] is decoded["a"]  # restorable values come from the stored space
    assert has_unrestorable(decoded) != []  # the decoded space itself is not modified

    stable = {k: v for k, v in space.items() if k not in ("nested", "lst", "mixed_choice")}
    merged_stable = {k: merged[k] for k in stable}
    want, got = suggestions(stable, 5), suggestions(merged_stable, 5)
    assert [s.config for s in got] == [s.config for s in want]
    assert all(s.config["f"] == s.config["a"] * 2 for s in got)


def test_merge_without_markers_needs_no_param_space() -> None:
    decoded = roundtrip({"a": uniform(0, 1)})
    assert merge_space(decoded, None) is decoded


def test_merge_without_param_space_names_every_unrestorable_path() -> None:
    data, _ = encode_space(unrestorable_space())
    with pytest.raises(ConfigError) as info:
        merge_space(decode_space(data), None)
    message = str(info.value)
    for path in ("f (sample_from)", "nested/obj (object)", "lst/2/1", "grid"):
        assert path in message
    assert "Tuner.restore(..., param_space=...)" in message
    assert info.value.value["unrestorable"] == has_unrestorable(decode_space(data))


def test_merge_names_markers_that_param_space_does_not_supply() -> None:
    data, _ = encode_space({"a": {"obj": object()}, "l": [object(), 2]})
    with pytest.raises(ConfigError) as info:
        merge_space(decode_space(data), {"a": {"obj": 1}, "l": [1]})  # the list is shorter
    assert info.value.value == {"unrestorable": ["l/0"], "keys_differ": []}
    assert "l/0 (object)" in str(info.value)


def test_merge_requires_equal_keys() -> None:
    data, _ = encode_space({"a": uniform(0, 1), "b": {"c": object(), "d": 1}, "e": {"f": 1}})
    decoded = decode_space(data)
    with pytest.raises(ConfigError) as info:
        merge_space(decoded, {"a": uniform(0, 1), "b": {"c": 2, "x": 1}, "e": 5, "new": 1})
    assert info.value.value == {
        "unrestorable": [],
        "keys_differ": [
            "b/d (only in the stored space)",
            "b/x (only in param_space)",
            "e (a dict only in the stored space)",
            "new (only in param_space)",
        ],
    }
    assert "same keys" in str(info.value)


def test_merge_reports_missing_keys_that_hold_markers_as_both() -> None:
    data, _ = encode_space({"a": 1, "f": sample_from(lambda: 1)})
    with pytest.raises(ConfigError) as info:
        merge_space(decode_space(data), {"a": 1})
    assert info.value.value == {
        "unrestorable": ["f"],
        "keys_differ": ["f (only in the stored space)"],
    }


def test_merge_rejects_a_non_dict_param_space() -> None:
    with pytest.raises(ConfigError, match="must be a dict"):
        merge_space({"a": 1}, [1])


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"x": {"__atune_domain__": "float", "v": 2, "lower": 0, "upper": 1}}, "version"),
        ({"x": {"__atune_domain__": "complex", "v": 1, "sampler": None}}, "unknown domain"),
        ({"x": {"__atune_value__": "set", "v": 1}}, "unknown value tag"),
        ({"x": {"__atune_domain__": "float", "v": 1, "lower": 0, "sampler": None}}, "upper"),
        (
            {"x": {"__atune_domain__": "float", "v": 1, "lower": 2, "upper": 1, "sampler": None}},
            "invalid domain",
        ),
        (
            {
                "x": {
                    "__atune_domain__": "integer",
                    "v": 1,
                    "lower": 0,
                    "upper": 3,
                    "sampler": {"kind": "beta"},
                }
            },
            "unknown sampler",
        ),
        ({"x": {"__atune_value__": "float", "v": 1, "value": "1.5"}}, "special float"),
        ({"x": {"__atune_value__": "numpy", "v": 1, "dtype": "O", "value": 1}}, "dtype"),
        (
            {"x": {"grid_search": [{"__atune_value__": "unrestorable", "v": 1, "type": "t"}]}},
            "inside a domain or grid",
        ),
    ],
)
def test_decode_rejects_data_it_did_not_write(data: Any, fragment: str) -> None:
    with pytest.raises(StorageError, match=fragment) as info:
        decode_space(data)
    assert "at x" in str(info.value)


# --------------------------------------------------------- signed pickles of code leaves
KEY = b"k" * 32


class _Model:
    """An object in a search space (pickled by reference to this module)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Model) and other.size == self.size

    def __hash__(self) -> int:
        return self.size


class _Planted:
    """Unpickling this creates a file: it must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


def test_code_and_objects_are_stored_signed_and_come_back_with_the_key() -> None:
    import threading

    space = {
        "double": sample_from(lambda spec: spec.config.x * 2),
        "x": uniform(0, 1),
        "model": _Model(3),
        "models": choice([_Model(1), _Model(2)]),  # a leaf holding objects: stored whole
        "nested": {"fn": len, "keys": {1: "a"}},
        "lock": threading.Lock(),  # does not pickle: stays unrestorable
    }
    data, failed = encode_space(space, key=KEY)
    assert failed == ["lock"]
    decoded = decode_space(_through_json(data), key=lambda: KEY)
    assert isinstance(decoded["lock"], Unrestorable)
    assert decoded["model"] == _Model(3)
    assert decoded["models"].categories == [_Model(1), _Model(2)]
    assert decoded["nested"] == {"fn": len, "keys": {1: "a"}}
    assert type(decoded["double"]).__name__ == "Function"
    # The restored sample_from samples as the original does.
    configs = []
    for candidate in (space, decoded):
        candidate = {k: v for k, v in candidate.items() if k != "lock"}
        generator = BasicVariantGenerator(random_state=7)
        generator.set_search_properties(None, None, candidate, 2)
        suggestion = generator.next_trial("t0")
        assert isinstance(suggestion, Suggestion)
        configs.append(suggestion.config)
    assert configs[0]["double"] == configs[1]["double"] == configs[0]["x"] * 2
    assert configs[0]["model"] == configs[1]["model"]


def test_without_the_key_signed_values_are_markers_and_nothing_is_unpickled(
    tmp_path: Any,
) -> None:
    data, _ = encode_space({"fn": sample_from(lambda spec: 1)}, key=KEY)
    marker = tmp_path / "pwned"
    data["fn"]["data"] = (
        __import__("base64").b64encode(__import__("pickle").dumps(_Planted(str(marker)))).decode()
    )
    decoded = decode_space(_through_json(data))
    assert decoded["fn"] == Unrestorable("fn", "sample_from")
    assert has_unrestorable(decoded) == ["fn"]
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["planted", "unsigned", "other_key"])
def test_unsigned_or_tampered_values_are_refused_never_executed(tmp_path: Any, damage: str) -> None:
    import base64
    import pickle

    from atune._signing import sign

    marker = tmp_path / "pwned"
    data, _ = encode_space({"a": {"fn": sample_from(lambda spec: 1)}}, key=KEY)
    stored = data["a"]["fn"]
    if damage == "planted":  # a payload swapped in, the old signature kept
        stored["data"] = base64.b64encode(pickle.dumps(_Planted(str(marker)))).decode()
    elif damage == "unsigned":
        blob = pickle.dumps(_Planted(str(marker)))
        stored["data"] = base64.b64encode(blob).decode()
        del stored["sig"]
    else:  # signed, but by another installation's key
        blob = pickle.dumps(_Planted(str(marker)))
        stored["data"] = base64.b64encode(blob).decode()
        stored["sig"] = sign(b"x" * 32, blob)
    with pytest.raises(StorageError, match=r"refusing to unpickle .*'a/fn'.*param_space="):
        decode_space(_through_json(data), key=lambda: KEY)
    assert not marker.exists()


def test_the_key_is_read_only_when_a_signed_value_needs_it() -> None:
    data, _ = encode_space({"x": uniform(0, 1)}, key=KEY)

    def no_key() -> bytes:
        raise AssertionError("the key was read for a space without pickles")

    assert isinstance(decode_space(data, key=no_key)["x"], Float)
