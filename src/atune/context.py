"""Ray Tune's ``ray.tune.context`` import path: :class:`TuneContext` and :func:`get_context`."""

from __future__ import annotations

from atune.trainable._session import TuneContext, get_context

__all__ = ["TuneContext", "get_context"]
