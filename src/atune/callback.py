"""``Callback``: be told what happens in an experiment (Ray Tune's hooks).

Override the hooks you need; each receives ``**info`` for forward compatibility. When
they fire (``iteration`` counts the controller's steps: one step handles one thing the
controller learned, such as a batch of results or a trial's start):

=====================  ====================================================================
``setup``              once, before the first trial starts (after ``set_state`` on restore)
``on_step_begin``      before each controller step
``on_step_end``        after each controller step (``iteration`` already counts it)
``on_trial_start``     a trial's runner started it (again after each retry)
``on_trial_restore``   right after ``on_trial_start``, when the trial resumed from a
                       checkpoint (a retry, or ``Tuner.restore``). Ray Tune 2.60 defines
                       this hook but never calls it.
``on_trial_result``    a trial reported a result
``on_checkpoint``      a checkpoint of the trial was committed (then ``on_trial_save``)
``on_trial_save``      after ``on_checkpoint``
``on_trial_complete``  a trial ended without error
``on_trial_recover``   a trial failed and will be retried
``on_trial_error``     a trial failed for good
``on_experiment_end``  the experiment ended; also when ``fit()`` raises or is cancelled
=====================  ====================================================================

(atune) :meth:`Callback.on_event` receives every typed event of :mod:`atune.events`, in
order, before the specific hook.

**Plain or async hooks.** A callback whose hooks are plain functions is called from the
controller's own task, right after each event is recorded: a slow hook delays the
experiment (do heavy work in a thread). Any hook may instead be an ``async def``: such a
callback runs all its hooks in a task of its own, in event order, one after the other,
while the experiment goes on; it may fall up to 1024 calls behind before the controller
waits for it, and ``fit()`` returns only after it has run every hook. Its hooks see the
live ``trial`` objects, which may have moved on since the event.

A hook that raises aborts ``fit()`` with :class:`~atune.errors.TuneError`, as in Ray Tune.

**State across restore.** ``get_state()`` may return JSON data (dicts, lists, strings,
numbers); atune journals it with the experiment (never pickled) whenever it changes, at
most every half second, and hands it back with ``set_state`` when the experiment is
continued with ``Tuner.restore(path, trainable, callbacks=[...])`` and the callback at the
same position is of the same class.

A method whose name starts with ``on_`` and looks like a misspelt hook (``on_trial_reslt``)
gets a warning when the class is defined: atune would never call it.
"""

from __future__ import annotations

import difflib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune._trial import Trial
    from atune.events import Event
    from atune.trainable._checkpoint import Checkpoint

__all__ = ["HOOKS", "Callback"]

HOOKS = (
    "setup",
    "on_event",
    "on_step_begin",
    "on_step_end",
    "on_trial_start",
    "on_trial_restore",
    "on_trial_save",
    "on_trial_result",
    "on_trial_complete",
    "on_trial_recover",
    "on_trial_error",
    "on_checkpoint",
    "on_experiment_end",
)
"""The names of the hooks atune calls on a :class:`Callback`."""

_HOOK_NAMES = frozenset(HOOKS)


class Callback:
    """Base class for experiment callbacks; override the hooks you need (module docstring).

    ``iteration`` is the controller's step counter; ``trials`` is the list of all trials
    so far. Every hook also accepts ``**info`` for forward compatibility.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if not name.startswith("on_") or name in _HOOK_NAMES or not callable(value):
                continue
            close = difflib.get_close_matches(name, HOOKS, n=1, cutoff=0.85)
            if close:
                warnings.warn(
                    f"{cls.__qualname__}.{name} looks like a misspelling of the callback "
                    f"hook {close[0]!r}; atune never calls {name!r}",
                    UserWarning,
                    stacklevel=2,
                )

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Once, before the first trial starts.

        Args:
            stop: ``RunConfig.stop``.
            num_samples: ``TuneConfig.num_samples``.
            total_num_samples: Trials the search will create, grid expansion included
                (None when the search does not know).
            **info: ``time_budget_s``, and more in later versions.
        """

    def on_event(self, event: Event) -> None:
        """(atune) Every event, in order, before the specific hook below."""

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Before each controller step."""

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """After each controller step; ``iteration`` already counts it."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A trial's runner started it (also after a retry)."""

    def on_trial_restore(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """The trial just started from a checkpoint (after :meth:`on_trial_start`)."""

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

    def get_state(self) -> dict[str, Any] | None:
        """This callback's state to keep with the experiment (JSON data), or None.

        Called from the controller's task at each journal flush; see the module docstring.
        """
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back a state that :meth:`get_state` returned in an earlier run."""
