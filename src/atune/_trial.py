"""``Trial``: the controller's record of one trial, as schedulers and callbacks see it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from atune.execution.placement_groups import PlacementGroupFactory
from atune.trainable._checkpoint import Checkpoint

__all__ = ["CheckpointRecord", "Trial"]

PENDING = "PENDING"
RUNNING = "RUNNING"
PAUSED = "PAUSED"
TERMINATED = "TERMINATED"
ERROR = "ERROR"


@dataclass
class CheckpointRecord:
    """A committed checkpoint of a trial."""

    dir_name: str
    training_iteration: int
    metrics: dict[str, Any]


@dataclass(eq=False)
class Trial:
    """One trial: its identity, config, status and what it reported.

    A record of what the experiment's events set (as Optuna's ``FrozenTrial``): replaying
    the journal rebuilds it exactly. Only the controller changes a ``Trial``, by applying
    events; schedulers, searchers and callbacks read it. The controller's bookkeeping for
    driving a trial (its phase, a pending stop, the runner it holds) is kept apart, in the
    core's private run record (``atune._controller._run``).

    Attributes:
        trial_id: Unique id (``<5 hex>_<5 digits>``).
        trial_name: ``<trainable>_<trial_id>`` unless a ``trial_name_creator`` said otherwise.
        dirname: Name of the trial directory under the experiment directory.
        config: The trial's hyperparameters.
        experiment_tag: ``"<index>_<key>=<value>,..."``.
        resources: Resource request (``placement_group_factory`` is an alias).
        status: PENDING, RUNNING, PAUSED, TERMINATED or ERROR.
        last_result: The latest result (empty until the first).
        num_failures: Failed attempts so far.
        checkpoints: Checkpoints committed and still kept, oldest first.
        error: The final error event's data, for trials in ERROR.
        pending_error: The error of the last failed attempt while a retry has not yet
            reported a result; a trial stopped in that state (time budget, ``stop_all``)
            ends in ERROR with it instead of looking like a success.
        failure_streak: Failed attempts since the last result (sets the retry back-off).
        num_results: Results reported so far (over all attempts).
        restore_failures: Failed restores retried without counting as failures
            (``TUNE_RESTORE_RETRY_NUM``).
        attempt: The attempt now running or next to run (0 first).
        next_checkpoint_index: The number the next checkpoint gets.
        end_reason: Why the trial ended (``TrialCompleted.reason``).
        assigned_checkpoint: A checkpoint a scheduler assigned (``TrialExploited``),
            relative to the experiment directory: the trial's next launch restores from
            it instead of its own latest checkpoint. Cleared when the trial commits a
            checkpoint of its own or ends.
    """

    trial_id: str
    trial_name: str
    dirname: str
    config: dict[str, Any]
    experiment_tag: str
    resources: PlacementGroupFactory
    experiment_path: str
    index: int = 0
    status: str = PENDING
    last_result: dict[str, Any] = field(default_factory=dict)
    num_results: int = 0
    num_failures: int = 0
    restore_failures: int = 0
    attempt: int = 0
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    next_checkpoint_index: int = 0
    error: Any = None
    pending_error: Any = None
    failure_streak: int = 0
    end_reason: str | None = None
    assigned_checkpoint: str | None = None

    @property
    def path(self) -> str:
        """The trial directory."""
        return os.path.join(self.experiment_path, self.dirname)

    @property
    def local_path(self) -> str:
        """Alias of :attr:`path` (Ray Tune's name)."""
        return self.path

    @property
    def placement_group_factory(self) -> PlacementGroupFactory:
        """Alias of :attr:`resources` (Ray Tune's name)."""
        return self.resources

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The latest committed checkpoint, or None."""
        if not self.checkpoints:
            return None
        return Checkpoint(os.path.join(self.path, self.checkpoints[-1].dir_name))

    @property
    def restore_checkpoint(self) -> Checkpoint | None:
        """What the trial's next launch restores from: an assigned checkpoint (an
        exploit's), else its latest own one, else None (from scratch)."""
        if self.assigned_checkpoint is not None:
            return Checkpoint(os.path.join(self.experiment_path, self.assigned_checkpoint))
        return self.checkpoint

    @property
    def is_finished(self) -> bool:
        """True once the trial is TERMINATED or in ERROR."""
        return self.status in (TERMINATED, ERROR)

    def __str__(self) -> str:
        return self.trial_name

    def __repr__(self) -> str:
        return f"Trial({self.trial_name!r}, status={self.status!r})"
