from __future__ import annotations

from typing import Any

import pytest

import atune.utils
from atune.errors import ConfigError
from atune.utils import util
from atune.utils.util import validate_warmstart


def test_public_surface_matches_ray_paths() -> None:
    assert set(atune.utils.__all__) == {
        "wait_for_gpu",
        "diagnose_serialization",
        "validate_save_restore",
    }
    assert not hasattr(atune.utils, "validate_warmstart")
    assert util.wait_for_gpu is atune.utils.wait_for_gpu
    assert util.diagnose_serialization is atune.utils.diagnose_serialization
    for module in (atune.utils, util):
        for name in module.__all__:
            assert getattr(module, name).__doc__


def test_valid_inputs_pass() -> None:
    validate_warmstart(["a", "b"], [{"a": 1, "b": 2}, [3, 4]], [0.1, 0.2])
    validate_warmstart(["a", "b"], None, None)
    validate_warmstart(["a", "b"], [], [1.0])
    validate_warmstart(["a", "b"], [{"a": 1, "b": 2}], None)


def test_point_dimension_mismatch() -> None:
    with pytest.raises(ConfigError) as info:
        validate_warmstart(["a", "b"], [{"a": 1}], None)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "Dim of point {'a': 1} and parameter_names ['a', 'b'] do not match."


def test_point_dimension_check_can_be_disabled() -> None:
    validate_warmstart(["a", "b"], [{"a": 1}], None, validate_point_name_lengths=False)


def test_rewards_length_mismatch() -> None:
    with pytest.raises(ValueError, match="evaluated_rewards"):
        validate_warmstart(["a"], [{"a": 1}, {"a": 2}], [0.5])


@pytest.mark.parametrize(
    ("points", "rewards"),
    [
        ({"a": 1}, None),
        ([("a", 1)], None),
        ([{"a": 1}], (0.5,)),
    ],
)
def test_type_errors(points: Any, rewards: Any) -> None:
    with pytest.raises(TypeError):
        validate_warmstart(["a"], points, rewards)
