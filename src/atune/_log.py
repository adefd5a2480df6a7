"""atune's loggers: structlog's API, delivered through the standard library's ``logging``.

Every atune module logs through a logger from :func:`get_logger` (named after the module,
so under ``atune``: ``atune.tuner``, ``atune._controller._driver``, ...). A call such as
``_log.warning("runner did not stop cleanly", error=...)`` becomes one record of the
stdlib logger of that name, at that level, whose message is the event followed by its
key-value pairs (``runner did not stop cleanly error='...'``). So the standard tools
apply::

    logging.getLogger("atune").setLevel(logging.ERROR)   # only errors from atune
    logging.getLogger("atune").addHandler(handler)       # send them somewhere

atune never configures logging: it adds no handler (not even a ``NullHandler``), sets no
level and calls neither ``logging.basicConfig`` nor ``structlog.configure``. Where the
application configured nothing, Python's "last resort" handler prints warnings and errors
to stderr and drops the rest. An application that sends structlog's output somewhere itself
(``structlog.configure(logger_factory=...)``, or ``structlog.testing.capture_logs`` in a
test) gets atune's events through that configuration instead, as from any other
structlog user. Nothing atune logs goes to stdout; stdout carries only the
progress output that ``RunConfig(verbose=...)`` asks for.

Loggers are made on first use: structlog is imported (40 to 80 ms, with rich and pygments)
only when a message is first logged at a level the stdlib logger lets through, so Ray
workers, which import atune's trainable runtime and mostly never log, do not pay for it,
and a debug call on the event loop never stalls it with that import. (Importing it ahead
of time, with the first ``fit()``'s machinery, was measured and rejected: its 20,000 new
objects were enough to start a full collection of the process's heap during the run,
25 to 45 ms with Ray loaded, a worse stall than the import it avoided.)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["get_logger"]


class _LazyLogger:
    """Stands in for the structlog logger of ``name`` until a method is first used."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        level = _LEVELS.get(attr)
        if (
            level is not None
            and "structlog" not in sys.modules  # so no application configured it either
            and not logging.getLogger(self._name).isEnabledFor(level)
        ):
            return _discard
        import structlog

        if _structlog_chosen(structlog):
            return getattr(structlog.get_logger(self._name), attr)
        if self._logger is None:
            self._logger = _make_logger(self._name)
        return getattr(self._logger, attr)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _discard(*args: Any, **kwargs: Any) -> None:
    """A log call at a level nobody listens to, made before structlog was imported."""


def _structlog_chosen(structlog: Any) -> bool:
    """Whether the application sent structlog's output somewhere of its choosing.

    structlog's default prints to stdout, and it stays "configured" after a
    ``capture_logs`` block ends, so neither the default nor ``is_configured()`` counts:
    a logger factory other than the default printer does, and so does ``capture_logs``.
    """
    config = structlog.get_config()
    if not isinstance(config["logger_factory"], structlog.PrintLoggerFactory):
        return True
    capture = structlog.testing.LogCapture
    return any(isinstance(processor, capture) for processor in config["processors"])


def _make_logger(name: str) -> Any:
    """A structlog ``BoundLogger`` over ``logging.getLogger(name)`` (no global config)."""
    import structlog

    return structlog.stdlib.BoundLogger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, _to_stdlib],
        context={},
    )


def _to_stdlib(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[Any, ...]:
    """structlog's last processor: the stdlib call's arguments (message, exc_info)."""
    event = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", None)
    if event_dict:
        event += " " + " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    kwargs: dict[str, Any] = {"stacklevel": 4}  # the record points at atune's caller line
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (event,), kwargs


def get_logger(name: str) -> Any:
    """The logger for module ``name``: structlog's API (``info``, ``warning``, ``bind``,
    ...) over the stdlib logger of the same name (see the module docstring)."""
    return _LazyLogger(name)
