"""``LoggerCallback``: per-trial logging in a worker thread (Ray Tune's base class).

Ray Tune's logger callbacks implement ``log_trial_start``, ``log_trial_result``,
``log_trial_end`` and friends, called from the driver loop. Logging libraries block:
they write files, flush, and sometimes talk to a server. So in atune these methods run in
a worker thread, never on the event loop:

* The hooks of :class:`LoggerCallback` are ``async def``; atune therefore runs them in a
  task of the callback's own, in event order, one after the other (see
  :mod:`atune.callback`). Each hook hands its ``log_trial_*`` call to a worker thread
  (``anyio.to_thread.run_sync``) and waits for it, so the calls are made one at a time,
  in the order of the events, and never two at once: a logger needs no lock.
* The experiment goes on meanwhile; the callback may fall up to 1024 calls behind before
  the controller waits for it, and ``fit()`` returns only after every call was made.
* The ``trial`` handed to a ``log_trial_*`` method is the live trial object: its
  ``trial_id``, name, ``config`` and ``path`` are fixed, but its ``status`` and
  ``last_result`` may have moved on. Use the ``result`` argument, not ``last_result``.

Which hook calls which method, as in Ray Tune:

=========================  ==============================================
``on_trial_start``         ``log_trial_start(trial)``
``on_trial_restore``       ``log_trial_restore(trial)``
``on_trial_save``          ``log_trial_save(trial)``
``on_trial_result``        ``log_trial_result(iteration, trial, result)``
``on_trial_complete``      ``log_trial_end(trial, failed=False)``
``on_trial_error``         ``log_trial_end(trial, failed=True)``
``on_experiment_end``      (atune) ``log_trial_end(trial, failed=True)`` for every trial
                           that started but did not end (the experiment was cancelled
                           or failed), then ``log_experiment_end()``
=========================  ==============================================

``setup`` is called as a plain hook on the event loop; a subclass with blocking set-up work
should do it in ``log_setup``, which runs in the worker thread before anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from atune.callback import Callback

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["LoggerCallback"]


class LoggerCallback(Callback):
    """Base class for per-trial loggers; override the ``log_*`` methods (module docstring)."""

    def __init__(self) -> None:
        self._open_trials: dict[str, Trial] = {}

    # -- the methods a logger overrides (each runs in the worker thread) ------------------

    def log_setup(self, **info: Any) -> None:
        """(atune) Once, before the first trial, in the worker thread: blocking set-up."""

    def log_trial_start(self, trial: Trial) -> None:
        """The trial started (again after each retry)."""

    def log_trial_restore(self, trial: Trial) -> None:
        """The trial started from a checkpoint."""

    def log_trial_save(self, trial: Trial) -> None:
        """A checkpoint of the trial was committed (``trial.checkpoint`` is it)."""

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """The trial reported ``result``."""

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """The trial ended; ``failed`` when it ended in error (or never ended, see above)."""

    def log_experiment_end(self) -> None:
        """(atune) The experiment ended, after every trial's ``log_trial_end``."""

    # -- the hooks atune calls (each hands its work to the worker thread) -----------------

    async def _run(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def setup(  # type: ignore[override]
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Runs :meth:`log_setup` in the worker thread."""
        if not hasattr(self, "_open_trials"):  # a subclass that skipped __init__
            self._open_trials = {}
        await self._run(
            self.log_setup,
            stop=stop,
            num_samples=num_samples,
            total_num_samples=total_num_samples,
            **info,
        )

    async def on_trial_start(  # type: ignore[override]
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Runs :meth:`log_trial_start`."""
        self._open_trials[trial.trial_id] = trial
        await self._run(self.log_trial_start, trial)

    async def on_trial_restore(  # type: ignore[override]
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Runs :meth:`log_trial_restore`."""
        await self._run(self.log_trial_restore, trial)

    async def on_trial_save(  # type: ignore[override]
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Runs :meth:`log_trial_save`."""
        await self._run(self.log_trial_save, trial)

    async def on_trial_result(  # type: ignore[override]
        self,
        iteration: int,
        trials: list[Trial],
        trial: Trial,
        result: dict[str, Any],
        **info: Any,
    ) -> None:
        """Runs :meth:`log_trial_result`."""
        await self._run(self.log_trial_result, iteration, trial, result)

    async def on_trial_complete(  # type: ignore[override]
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Runs :meth:`log_trial_end` with ``failed=False``."""
        self._open_trials.pop(trial.trial_id, None)
        await self._run(self.log_trial_end, trial, failed=False)

    async def on_trial_error(  # type: ignore[override]
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Runs :meth:`log_trial_end` with ``failed=True``."""
        self._open_trials.pop(trial.trial_id, None)
        await self._run(self.log_trial_end, trial, failed=True)

    async def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:  # type: ignore[override]
        """Ends the trials left open, then runs :meth:`log_experiment_end`."""
        open_trials = list(self._open_trials.values())
        self._open_trials.clear()

        def end_all() -> None:
            for trial in open_trials:
                self.log_trial_end(trial, failed=True)
            self.log_experiment_end()

        await self._run(end_all)
