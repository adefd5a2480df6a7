"""A recording stand-in for the ``tune_controller`` that scheduler hooks receive.

Only for unit tests of schedulers' decisions: it offers the calls the core offers
(``get_trials``, ``pause_trial``, ``stop_trial``, ``exploit_trial``), records them, and
applies an exploit as the core does to what a scheduler can see (the trial's config and
tag; a donor without a checkpoint is refused).
"""

from __future__ import annotations

import copy
from typing import Any

from atune._trial import CheckpointRecord, Trial
from atune.execution.placement_groups import PlacementGroupFactory


def make_trial(index: int, config: dict[str, Any] | None = None, path: str = "/tmp/exp") -> Trial:
    """A real Trial, RUNNING, with id ``t<index>`` and tag ``<index>_tag``."""
    trial = Trial(
        trial_id=f"t{index}",
        trial_name=f"trainable_t{index}",
        dirname=f"trainable_t{index}",
        config={} if config is None else config,
        experiment_tag=f"{index}_tag",
        resources=PlacementGroupFactory([{"CPU": 1}]),
        experiment_path=path,
        index=index,
    )
    trial.status = "RUNNING"
    return trial


def add_checkpoint(trial: Trial, iteration: int, **metrics: Any) -> None:
    """Commit a checkpoint record to ``trial`` (as a ``CheckpointSaved`` event would)."""
    record = CheckpointRecord(
        dir_name=f"checkpoint_{len(trial.checkpoints):06d}",
        training_iteration=iteration,
        metrics={"training_iteration": iteration, **metrics},
    )
    trial.checkpoints.append(record)


class RecordingController:
    """Records ``(method, trial_id, ...)`` tuples in :attr:`calls`."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials
        self.calls: list[tuple[Any, ...]] = []

    def get_trials(self) -> list[Trial]:
        return list(self.trials)

    def pause_trial(self, trial: Trial) -> None:
        self.calls.append(("pause_trial", trial.trial_id))

    def stop_trial(self, trial: Trial) -> None:
        self.calls.append(("stop_trial", trial.trial_id))

    def exploit_trial(
        self,
        trial: Trial,
        *,
        donor: Trial,
        config: dict[str, Any],
        experiment_tag: str | None = None,
    ) -> None:
        if not donor.checkpoints:
            raise ValueError(f"donor {donor.trial_id} has no checkpoint")
        self.calls.append(
            ("exploit_trial", trial.trial_id, donor.trial_id, copy.deepcopy(config), experiment_tag)
        )
        trial.config = copy.deepcopy(config)
        if experiment_tag is not None:
            trial.experiment_tag = experiment_tag

    def exploits(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "exploit_trial"]
