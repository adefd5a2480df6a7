"""Loggers that import structlog on first use.

Importing structlog imports its console renderer and, with it, rich: about 40 ms here.
Every new Ray actor imports atune's trainable runtime, and most never log, so the modules a
worker needs take their logger from :func:`get_logger` instead of ``structlog.get_logger``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_logger"]


class _LazyLogger:
    """Stands in for ``structlog.get_logger(name)`` until a method is first used."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> Any:
    """A structlog logger for ``name`` (``info``, ``warning``, ``bind``, ...)."""
    return _LazyLogger(name)
