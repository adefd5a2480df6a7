"""``atune.utils.util``: Ray Tune's ``ray.tune.utils.util`` import path.

It holds :func:`validate_warmstart`, which ``atune.utils`` does not re-export (as in Ray
Tune), and re-exports :func:`wait_for_gpu` and :func:`diagnose_serialization`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atune.errors import ConfigError
from atune.utils._gpu import wait_for_gpu
from atune.utils._serialization import diagnose_serialization

__all__ = ["diagnose_serialization", "validate_warmstart", "wait_for_gpu"]


def validate_warmstart(
    parameter_names: Sequence[str],
    points_to_evaluate: list[dict[str, Any] | list[Any]] | None,
    evaluated_rewards: list[Any] | None,
    validate_point_name_lengths: bool = True,
) -> None:
    """Check a searcher's warm-start input for type and length mismatches.

    Searcher adapters call it on their ``points_to_evaluate`` and ``evaluated_rewards``
    before using them. Empty or None inputs are not checked.

    Args:
        parameter_names: Names of the search-space parameters.
        points_to_evaluate: Points to try first, each a dict (by name) or list (by
            position).
        evaluated_rewards: Known rewards of those points, one per point.
        validate_point_name_lengths: If False, points may have a different number of
            entries than there are parameters.

    Raises:
        TypeError: If ``points_to_evaluate`` or ``evaluated_rewards`` is not a list, or a
            point is neither a dict nor a list.
        ConfigError: (a :class:`ValueError`) if a point's length differs from the number of
            parameters, or there are not as many rewards as points.
    """
    if points_to_evaluate:
        if not isinstance(points_to_evaluate, list):
            raise TypeError(
                f"points_to_evaluate expected to be a list, got {type(points_to_evaluate)}."
            )
        for point in points_to_evaluate:
            if not isinstance(point, dict | list):
                raise TypeError(
                    f"points_to_evaluate expected to include list or dict, got {point}."
                )
            if validate_point_name_lengths and len(point) != len(parameter_names):
                raise ConfigError(
                    f"Dim of point {point} and parameter_names {parameter_names} do not match.",
                    value=point,
                )
    if points_to_evaluate and evaluated_rewards:
        if not isinstance(evaluated_rewards, list):
            raise TypeError(
                f"evaluated_rewards expected to be a list, got {type(evaluated_rewards)}."
            )
        if len(evaluated_rewards) != len(points_to_evaluate):
            raise ConfigError(
                f"Dim of evaluated_rewards {evaluated_rewards} and points_to_evaluate "
                f"{points_to_evaluate} do not match.",
                value=evaluated_rewards,
            )
