"""flatten_dict / unflatten_dict."""

from __future__ import annotations

import copy

import pytest

from atune._flatten import flatten_dict, unflatten_dict
from atune.errors import ConfigError


def test_flattens_nested_dicts_with_the_delimiter() -> None:
    nested = {"a": {"b": {"c": 1}, "d": [1, {"e": 2}]}, "f": 3}
    assert flatten_dict(nested) == {"a/b/c": 1, "a/d": [1, {"e": 2}], "f": 3}
    assert flatten_dict(nested, delimiter=".") == {"a.b.c": 1, "a.d": [1, {"e": 2}], "f": 3}


def test_flatten_list_descends_into_lists() -> None:
    assert flatten_dict({"a": [1, {"b": 2}]}, flatten_list=True) == {"a/0": 1, "a/1/b": 2}


def test_empty_nested_dicts_disappear_and_input_is_untouched() -> None:
    nested = {"a": {}, "b": {"c": {}}, "d": 1}
    before = copy.deepcopy(nested)
    assert flatten_dict(nested) == {"d": 1}
    assert nested == before


def test_leaf_values_are_the_same_objects() -> None:
    leaf = object()
    assert flatten_dict({"a": {"b": leaf}})["a/b"] is leaf


def test_nested_keys_are_stringified() -> None:
    assert flatten_dict({"a": {1: "x"}, 2: "y"}) == {"a/1": "x", 2: "y"}


def test_prevent_delimiter_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'b/c'"):
        flatten_dict({"a": {"b/c": 1}}, prevent_delimiter=True)
    assert flatten_dict({"a/b": 1}) == {"a/b": 1}


def test_round_trip() -> None:
    nested = {"a": {"b": {"c": 1, "d": [1, 2]}, "e": "x"}, "f": None}
    assert unflatten_dict(flatten_dict(nested)) == nested
    assert unflatten_dict(flatten_dict(nested, delimiter="."), delimiter=".") == nested


def test_unflatten_keeps_list_indices_as_dict_keys() -> None:
    assert unflatten_dict({"a/0": 1}) == {"a": {"0": 1}}


@pytest.mark.parametrize("flat", [{"a": 1, "a/b": 2}, {"a/b": 2, "a": 1}])
def test_unflatten_conflict_is_a_type_error(flat: dict[str, int]) -> None:
    with pytest.raises(TypeError, match=r"cannot unflatten key"):
        unflatten_dict(flat)
