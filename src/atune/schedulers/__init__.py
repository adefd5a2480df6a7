"""Trial schedulers: decide, per result, whether a trial continues, pauses or stops."""

from atune.schedulers._trial_scheduler import FIFOScheduler, TrialScheduler
from atune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from atune.schedulers.hyperband import HyperBandScheduler
from atune.schedulers.median_stopping_rule import MedianStoppingRule
from atune.schedulers.pb2 import PB2
from atune.schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay

__all__ = [
    "PB2",
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "PopulationBasedTrainingReplay",
    "TrialScheduler",
]
