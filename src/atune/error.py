"""Ray Tune's ``ray.tune.error`` import path: re-exports :class:`~atune.errors.TuneError`.

atune's whole exception hierarchy lives in :mod:`atune.errors`.
"""

from __future__ import annotations

from atune.errors import TuneError

__all__ = ["TuneError"]
