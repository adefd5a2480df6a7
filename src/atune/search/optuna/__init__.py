"""Optuna as an atune search algorithm (Ray Tune's ``ray.tune.search.optuna``).

Needs the ``optuna`` extra: ``pip install "atune[optuna]"``. See
:class:`~atune.search.optuna.OptunaSearch`.
"""

from __future__ import annotations

try:
    import optuna as _optuna  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'atune.search.optuna needs Optuna, which is not installed: pip install "atune[optuna]"'
    ) from exc

from atune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
