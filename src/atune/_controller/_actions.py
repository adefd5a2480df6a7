"""What a scheduler may ask of the controller from inside its hooks (``tune_controller``).

Ray Tune hands its schedulers the controller itself, and calls like ``pause_trial`` act at
once, in the middle of another decision. atune's core is pure and decides one message at
a time, so these calls only *record* an action; the core carries the actions out, in the
order they were made, right after the hook returns (``ControllerCore._carry_out``), and
every effect is an event in the journal (``TrialPaused``, ``TrialExploited``,
``TrialCompleted``), so a replay reproduces them. A hook never sees its own call take
effect before it returns: a hook that pauses or stops another trial can never be
re-entered through that trial's ``on_trial_remove``.

While a journal is replayed through the scheduler's hooks (``Tuner.restore`` catching a
scheduler up after its snapshot) the calls do nothing: their effects are in the journal
already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["Exploit", "Pause", "SchedulerActions", "Stop"]


@dataclass(frozen=True)
class Pause:
    """Pause the trial (save a class trainable first when ``checkpoint``)."""

    trial_id: str
    checkpoint: bool = True


@dataclass(frozen=True)
class Stop:
    """Stop the trial (TERMINATED, reason ``"scheduler"``)."""

    trial_id: str


@dataclass(frozen=True)
class Exploit:
    """Continue the trial from checkpoint ``dir_name`` of ``donor_id`` with ``config``."""

    trial_id: str
    donor_id: str
    dir_name: str
    config: dict[str, Any]
    experiment_tag: str | None


Action = Pause | Stop | Exploit


class SchedulerActions:
    """The controller's methods for schedulers (Ray Tune's ``TuneController`` names).

    Every method records an action, carried out by the core once the calling hook has
    returned (see the module docstring). A call about a trial that has ended by then is
    ignored.
    """

    trials: dict[str, Trial]
    _actions: list[Action]
    _recording: bool
    # While a hook decides on a result: that trial and the checkpoint the result carries
    # (a function trainable's), which counts as its latest from the hook's point of view.
    _deciding: tuple[str, str] | None

    def get_live_trials(self) -> list[Trial]:
        """The trials that have not ended (PENDING, RUNNING or PAUSED), in creation order."""
        return [t for t in self.trials.values() if not t.is_finished]

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Pause ``trial``: checkpoint it, release its runner, resume it later.

        The trial's outstanding call (if any) returns first and its results are decided
        on as usual (a STOP among them wins). Then a class trainable is saved (unless
        ``should_checkpoint`` is False or its last result is checkpointed already); a
        function trainable keeps the last checkpoint it reported (with none, it will start
        over, and the experiment logs one warning naming the scheduler). Its runner is
        released: a PAUSED trial holds no resources and does not count against
        ``max_concurrent_trials``. It is launched again, from that checkpoint, when the
        scheduler's ``choose_trial_to_run`` picks it, with every counter continuing.

        Returning ``TrialScheduler.PAUSE`` from ``on_trial_result`` does the same for the
        trial decided on.
        """
        if self._recording:
            self._actions.append(Pause(trial.trial_id, bool(should_checkpoint)))

    def stop_trial(self, trial: Trial) -> None:
        """Stop ``trial`` (TERMINATED, reason ``"scheduler"``).

        A running trial stops once its outstanding call returns and gets
        ``on_trial_complete``; a PAUSED (or not yet started) trial ends at once and gets
        ``on_trial_remove``, as in Ray Tune. The searcher hears ``on_trial_complete``
        with the trial's last result either way.
        """
        if self._recording:
            self._actions.append(Stop(trial.trial_id))

    def exploit_trial(
        self,
        trial: Trial,
        *,
        donor: Trial,
        config: dict[str, Any],
        experiment_tag: str | None = None,
    ) -> None:
        """Make ``trial`` continue from ``donor``'s latest checkpoint with ``config`` (PBT).

        The donor's latest checkpoint includes one reported with the result being decided
        on, when the donor is that result's trial.

        Journaled as one ``TrialExploited`` event. A running trial (the one decided on
        included) is relaunched once its outstanding call returns: on its own runner
        when actors are reused (a class trainable gets ``reset_config(config)`` and then
        ``load_checkpoint`` of the donor's checkpoint), else on a fresh one. A PAUSED
        trial resumes from the donor's checkpoint when it is chosen; a trial also asked
        to pause is paused without a save (its own state is superseded). Its
        ``training_iteration`` (and the other counters) continue from the donor's
        checkpoint. The donor's checkpoint is pinned: ``num_to_keep`` does not delete it
        until ``trial`` commits a checkpoint of its own after loading it, is exploited
        again, or ends.

        Raises:
            ValueError: ``donor`` has no committed checkpoint, ``trial`` has ended, or
                ``config`` is not a dict.
        """
        if not self._recording:
            return
        if not isinstance(config, dict):
            raise TypeError(f"exploit_trial: config must be a dict, got {config!r}")
        if trial.is_finished:
            raise ValueError(
                f"exploit_trial: trial {trial.trial_id} has ended ({trial.status}); only a "
                "live trial can continue from another's checkpoint"
            )
        dir_name = donor.checkpoints[-1].dir_name if donor.checkpoints else None
        if self._deciding is not None and self._deciding[0] == donor.trial_id:
            dir_name = self._deciding[1]
        if dir_name is None:
            raise ValueError(
                f"exploit_trial: donor trial {donor.trial_id} has no checkpoint to continue "
                f"from, so trial {trial.trial_id} cannot exploit it; pick donors that have "
                "checkpointed (CheckpointConfig(checkpoint_frequency=...), or report(..., "
                "checkpoint=...) in a function trainable)"
            )
        self._actions.append(
            Exploit(
                trial.trial_id,
                donor.trial_id,
                dir_name,
                dict(config),
                experiment_tag,
            )
        )
