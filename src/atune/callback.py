"""``Callback``: be told what happens in an experiment (Ray Tune's hooks).

The controller calls these hooks from its own task after it has processed each event, so
a hook must be quick: a slow hook delays the experiment (do heavy work in a thread). A
hook that raises aborts ``fit()`` with :class:`~atune.errors.TuneError`, as in Ray Tune.

Programs that prefer data to hooks can implement :meth:`Callback.on_event` and receive
every typed event of :mod:`atune.events` as it happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune._trial import Trial
    from atune.events import Event
    from atune.trainable._checkpoint import Checkpoint

__all__ = ["Callback"]


class Callback:
    """Base class for experiment callbacks; override the hooks you need.

    ``iteration`` counts events processed by the controller; ``trials`` is the list of all
    trials so far. Every hook also accepts ``**info`` for forward compatibility.
    """

    def setup(self, stop: Any = None, num_samples: int | None = None, **info: Any) -> None:
        """Once, before the first trial starts."""

    def on_event(self, event: Event) -> None:
        """(atune) Every event, in order, before the specific hook below."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A trial's runner started (also after a retry)."""

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """A trial reported a result."""

    def on_checkpoint(
        self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Checkpoint, **info: Any
    ) -> None:
        """A checkpoint of the trial was committed."""

    def on_trial_save(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """After :meth:`on_checkpoint`."""

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A trial ended without error."""

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A trial failed and will be retried."""

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A trial failed for good."""

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """The experiment ended (also when ``fit()`` raises or is cancelled)."""
