"""Schedulers as data, so that ``Tuner.restore`` can rebuild them without a pickle.

``experiment.json`` records atune's own schedulers as ``{"class": <name>, "args": {...}}``
(their ``init_args()``); on restore the class is looked up by name in the table below, never
imported from a path the file names, and built from the args. Its progress then comes back
from the journal's last ``SchedulerStateSaved`` snapshot. A user's own scheduler is not
recorded: restore says it is not restored, as before.
"""

from __future__ import annotations

from typing import Any

from atune._as_data import ClassTable

__all__ = ["scheduler_from_data", "scheduler_to_data"]

_TABLE = ClassTable(
    "scheduler",
    {
        "FIFOScheduler": "atune.schedulers._trial_scheduler",
        "AsyncHyperBandScheduler": "atune.schedulers.async_hyperband",
        "HyperBandScheduler": "atune.schedulers.hyperband",
        "MedianStoppingRule": "atune.schedulers.median_stopping_rule",
        "PopulationBasedTraining": "atune.schedulers.pbt",
        "PopulationBasedTrainingReplay": "atune.schedulers._pbt_replay",
        "PB2": "atune.schedulers.pb2",
    },
    build_errors=(TypeError, ValueError),
)


def scheduler_to_data(scheduler: Any) -> dict[str, Any] | None:
    """``scheduler`` as ``{"class", "args"}`` data, or None when it cannot be."""
    return _TABLE.to_data(scheduler)


def scheduler_from_data(data: dict[str, Any]) -> Any:
    """Build the scheduler that :func:`scheduler_to_data` described.

    Raises:
        StorageError: the record names a class outside atune's table, or its args do not
            fit the class.
    """
    return _TABLE.from_data(data)
