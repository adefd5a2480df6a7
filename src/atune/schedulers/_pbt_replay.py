"""Replay the config schedule that PBT produced for one trial (``pbt_policy_<id>.txt``).

The policy file (written with ``log_config=True``) is read by
:func:`~atune.schedulers._pbt_policy.load_policy` into an initial config and a list of
``(iteration, config)`` changes. The replay trains one trial: it starts with the initial
config, and once the trial has a checkpoint at or after a change's iteration it calls
``tune_controller.exploit_trial(trial, donor=trial, config=..., experiment_tag=...)``, so
the trial continues from its own latest checkpoint with the new config (a class trainable
with ``reuse_actors=True`` gets ``reset_config``, then ``load_checkpoint``). Checkpoint
every iteration to change the config exactly at the logged iterations; with sparser
checkpoints a change happens at the first checkpoint after its iteration (a change
overtaken by a later one is skipped).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from atune._log import get_logger
from atune.schedulers._explore import make_experiment_tag
from atune.schedulers._pbt_policy import load_policy
from atune.schedulers._trial_scheduler import TrialScheduler

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["PopulationBasedTrainingReplay"]

_log = get_logger(__name__)


class PopulationBasedTrainingReplay(TrialScheduler):
    """Train one trial with the config schedule a PBT run found for one of its trials.

    Args:
        policy_file: A ``pbt_policy_<trial_id>.txt`` written by
            :class:`~atune.schedulers.PopulationBasedTraining` (or by Ray Tune's).

    Raises:
        TypeError: ``policy_file`` is not a path.
        ValueError: the file does not exist, or a line is not a policy line (the message
            names the file and the line).
    """

    def __init__(self, policy_file: str | os.PathLike[str]) -> None:
        if not isinstance(policy_file, (str, os.PathLike)):
            raise TypeError(f"policy_file must be a path, got {policy_file!r}")
        path = os.path.expanduser(os.fspath(policy_file))
        if not os.path.isfile(path):
            raise ValueError(f"policy_file: no such file: {path!r}")
        super().__init__()
        self.policy_file = path
        initial, self._policy = load_policy(path)
        self.config: dict[str, Any] | None = initial
        self.experiment_tag = f"replay_{os.path.basename(path)}"
        self._trial_id: str | None = None
        self._next = 0
        self._current_step = 0
        self._num_perturbations = 0

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, as JSON data (for ``experiment.json``)."""
        return {"policy_file": self.policy_file}

    @property
    def policy(self) -> list[tuple[int, dict[str, Any]]]:
        """The ``(iteration, config)`` changes, in order (a copy)."""
        return list(self._policy)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Take the one trial; give it the policy's initial config.

        Raises:
            ValueError: a second trial (set ``num_samples=1``), or neither a policy nor a
                config to train with.
        """
        if self._trial_id is not None and self._trial_id != trial.trial_id:
            raise ValueError(
                "PopulationBasedTrainingReplay trains one trial, got a second one "
                f"({trial.trial_id}); set TuneConfig(num_samples=1)"
            )
        if self._trial_id == trial.trial_id:  # re-added for a retry
            return
        self._trial_id = trial.trial_id
        if self._policy and self.config is not None:
            if trial.config and trial.config != self.config:
                _log.warning(
                    "the trial's config is replaced by the replayed policy's initial config",
                    policy_file=self.policy_file,
                )
            trial.config.clear()
            trial.config.update(self.config)
        elif trial.config:
            self.config = dict(trial.config)
        else:
            raise ValueError(
                f"policy_file {self.policy_file!r} holds no policy and the trial has no "
                "config; pass a param_space or a policy file from a PBT run with exploits"
            )

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """Change the config (NOOP) once a checkpoint reaches the next change; else CONTINUE."""
        step = result.get("training_iteration")
        if not isinstance(step, int) or self._next >= len(self._policy):
            return self.CONTINUE
        self._current_step = step
        if not trial.checkpoints:
            return self.CONTINUE
        at = trial.checkpoints[-1].training_iteration
        due = self._next
        while due < len(self._policy) and self._policy[due][0] <= at:
            due += 1
        if due == self._next:
            return self.CONTINUE
        if due - self._next > 1:
            _log.info(
                "PBT replay: changes overtaken by a later one are skipped (checkpoint more "
                "often to replay each)",
                skipped=[s for s, _ in self._policy[self._next : due - 1]],
            )
        _, new_config = self._policy[due - 1]
        self._next = due
        tag = make_experiment_tag(self.experiment_tag, new_config, new_config)
        tune_controller.exploit_trial(
            trial, donor=trial, config=dict(new_config), experiment_tag=tag
        )
        self.config = dict(new_config)
        self._num_perturbations += 1
        return self.NOOP

    def get_state(self) -> dict[str, Any]:
        """The replay's progress, as JSON data."""
        return {
            "trial_id": self._trial_id,
            "next": self._next,
            "current_step": self._current_step,
            "num_perturbations": self._num_perturbations,
            "config": self.config,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` data."""
        self._trial_id = state["trial_id"]
        self._next = int(state["next"])
        self._current_step = int(state["current_step"])
        self._num_perturbations = int(state["num_perturbations"])
        self.config = state["config"]

    def debug_string(self) -> str:
        """One line: the step reached and the changes made."""
        return (
            f"PopulationBasedTraining replay: Step {self._current_step}, "
            f"perturb {self._num_perturbations}"
        )
