"""Ray Tune's ``ray.tune.result_grid`` import path: re-exports :class:`ResultGrid`."""

from __future__ import annotations

from atune.result import ResultGrid

__all__ = ["ResultGrid"]
