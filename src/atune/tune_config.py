"""Ray Tune's ``ray.tune.tune_config`` import path: re-exports :class:`TuneConfig`."""

from __future__ import annotations

from atune.config import TuneConfig

__all__ = ["TuneConfig"]
