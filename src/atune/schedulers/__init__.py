"""Trial schedulers: decide, per result, whether a trial continues, pauses or stops."""

from atune.schedulers._trial_scheduler import FIFOScheduler, TrialScheduler
from atune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from atune.schedulers.hyperband import HyperBandScheduler
from atune.schedulers.median_stopping_rule import MedianStoppingRule

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "TrialScheduler",
]
