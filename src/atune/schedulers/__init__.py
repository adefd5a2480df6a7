"""Trial schedulers: decide, per result, whether a trial continues, pauses or stops."""

from atune.schedulers._trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["FIFOScheduler", "TrialScheduler"]
