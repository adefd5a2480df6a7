"""Helpers shared by the early-stopping schedulers: argument checks and JSON-safe floats."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = [
    "check_mode",
    "check_number",
    "check_reduction_factor",
    "check_type",
    "decode_float",
    "encode_float",
    "metric_op",
    "score_of",
]


def check_number(name: str, value: Any, *, positive: bool = False, integer: bool = False) -> None:
    """Refuse a constructor argument that is not a (positive) number.

    Raises:
        TypeError: ``value`` is not a real number (a bool is not), or not an int when
            ``integer``.
        ValueError: ``positive`` and ``value <= 0``.
    """
    wanted = int if integer else Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    if positive and not float(value) > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_type(name: str, value: Any, kind: type, kind_name: str) -> None:
    """Refuse a constructor argument that is not a ``kind`` (TypeError naming it)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind_name}, got {value!r}")


def check_reduction_factor(value: Any) -> None:
    """Refuse a ``reduction_factor`` that is not a number above 1."""
    check_number("reduction_factor", value)
    if not value > 1:
        raise ValueError(f"reduction_factor must be > 1, got {value!r}")


def check_mode(mode: Any) -> None:
    """Refuse a ``mode`` other than None, ``"min"`` or ``"max"`` (ValueError)."""
    if mode not in (None, "min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


def metric_op(mode: str | None) -> float:
    """``+1.0`` for ``"max"``, ``-1.0`` for ``"min"``: scores always compare higher-better."""
    return -1.0 if mode == "min" else 1.0


def score_of(result: dict[str, Any], metric: str | None, mode: str | None) -> float | None:
    """The sign-adjusted score of ``result``, or None when it has no numeric ``metric``.

    The first result of every trial is checked by the controller (missing or non-numeric
    metric fails the trial with a clear error); a later result without a usable value is
    skipped by the schedulers (CONTINUE), as Ray Tune skips one without the metric.
    """
    if metric is None:
        return None
    value = result.get(metric)
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return metric_op(mode) * float(value)


def encode_float(value: float) -> float | str:
    """``value`` as JSON data: non-finite floats become ``"nan"``, ``"inf"``, ``"-inf"``."""
    return value if math.isfinite(value) else str(value)


def decode_float(value: float | str) -> float:
    """The inverse of :func:`encode_float`."""
    return float(value)
