"""The Pareto front of a set of results (``ResultGrid.get_pareto_front``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from atune._flatten import flatten_dict
from atune.errors import ConfigError

__all__ = ["pareto_front"]


def pareto_front(items: Sequence[Any], metrics: Sequence[str], modes: Sequence[str]) -> list[Any]:
    """The items of ``items`` (with ``.metrics``) that no other item dominates.

    Optuna's ``study.best_trials`` rule: ``a`` dominates ``b`` when ``a`` is at least as
    good in every metric and better in one. Items lacking a metric, or with a NaN or
    non-numeric value, are left out; equal points are all kept. Order is kept.

    Raises:
        ConfigError: ``metrics``/``modes`` are empty, of different lengths, or a mode is
            not ``"min"``/``"max"``.
    """
    if isinstance(metrics, str) or isinstance(modes, str) or not metrics:
        raise ConfigError(
            f"get_pareto_front needs a list of metrics and a list of modes, got "
            f"metrics={metrics!r}, modes={modes!r}",
            value=metrics,
        )
    if len(metrics) != len(modes):
        raise ConfigError(
            f"get_pareto_front: {len(metrics)} metrics but {len(modes)} modes", value=modes
        )
    for mode in modes:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", value=mode)
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    points: list[tuple[Any, list[float]]] = []
    for item in items:
        flat = flatten_dict(getattr(item, "metrics", None) or {})
        values = [flat.get(metric) for metric in metrics]
        if all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)
            for v in values
        ):
            points.append((item, [s * float(v) for s, v in zip(signs, values, strict=True)]))  # type: ignore[arg-type]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    return [item for item, p in points if not any(dominates(q, p) for _, q in points)]
