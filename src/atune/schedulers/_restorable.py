"""Schedulers as data, so that ``Tuner.restore`` can rebuild them without a pickle.

``experiment.json`` records atune's own schedulers as ``{"class": <name>, "args": {...}}``
(their ``init_args()``); on restore the class is looked up by name in the table below, never
imported from a path the file names, and built from the args. Its progress then comes back
from the journal's last ``SchedulerStateSaved`` snapshot. A user's own scheduler is not
recorded: restore says it is not restored, as before.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from atune.errors import StorageError

__all__ = ["scheduler_from_data", "scheduler_to_data"]

# Class name -> module. Only these are ever built from experiment.json.
_CLASSES = {
    "FIFOScheduler": "atune.schedulers._trial_scheduler",
    "AsyncHyperBandScheduler": "atune.schedulers.async_hyperband",
    "MedianStoppingRule": "atune.schedulers.median_stopping_rule",
}


def scheduler_to_data(scheduler: Any) -> dict[str, Any] | None:
    """``scheduler`` as ``{"class", "args"}`` data, or None when it cannot be."""
    name = type(scheduler).__name__
    if _CLASSES.get(name) != type(scheduler).__module__:
        return None
    init_args = getattr(scheduler, "init_args", None)
    args = init_args() if callable(init_args) else {}
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return {"class": name, "args": dict(args)}


def scheduler_from_data(data: dict[str, Any]) -> Any:
    """Build the scheduler that :func:`scheduler_to_data` described.

    Raises:
        StorageError: the record names a class outside atune's table, or its args do not
            fit the class.
    """
    try:
        name, args = data["class"], dict(data["args"])
        module = _CLASSES[name]
    except (KeyError, TypeError) as exc:
        raise StorageError(f"experiment.json: not a restorable scheduler: {data!r}") from exc
    cls = getattr(importlib.import_module(module), name)
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"experiment.json: cannot rebuild {name} from {args!r}: {exc}") from exc
