"""``Run``: a live handle on a running experiment (``async with tuner.start() as run:``).

What ``await tuner.fit()`` runs, started as a task that the handle owns, so the caller
can watch it while it runs::

    async with tuner.start() as run:
        async for event in run.events():          # typed events, in order
            if isinstance(event, ResultReported):
                print(event.trial_id, event.result["loss"])
    results = await run.wait()                    # the ResultGrid, as fit() returns it

**Subscribers.** Each call of :meth:`Run.events` is a subscriber of its own, registered at
the call; any number may read at once, each at its own pace. The events reach the handle
through a plain callback, inline in the controller's task, which only appends them to the
subscribers' buffers: a subscriber that reads slowly, or never, never slows or blocks the
experiment.

**Overflow rule.** A subscriber's buffer holds ``buffer_size`` unread events (10,000 by
default). When one more arrives, the *oldest* unread event is dropped, and the
subscriber's next read returns a :class:`~atune.events.SubscriberLagged` marker with the
number of events dropped, followed by the oldest events still buffered: nothing is ever
lost without the subscriber being told how much. A replay from the start reads the
handle's history (the last ``history`` events of the run, see :meth:`Tuner.start`) first;
when older events were already dropped from it, the replay begins with a marker too.

**Lifetime.** Leaving the ``async with`` block waits for the run to end; when the block
raises (a cancellation included), the run is cancelled first. :meth:`Run.cancel` stops the
run as cancelling ``fit()`` does: every trial is stopped, the journal flushed, and
``Tuner.restore`` continues the experiment later. The stream of every subscriber ends when
the run has ended and the subscriber has read what was buffered.

**Display.** :meth:`Run.display` shows a run (one in the background, typically) in a
notebook as one output that updates in place (:mod:`atune._run_display`).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from atune.callback import Callback
from atune.errors import ConfigError
from atune.events import (
    Event,
    ResultReported,
    StreamEvent,
    SubscriberLagged,
)

if TYPE_CHECKING:
    from types import TracebackType

    from atune._run_display import LiveOutput
    from atune._trial import Trial
    from atune.result import ResultGrid
    from atune.tuner import Tuner

__all__ = ["BestResult", "EventStream", "Run", "RunStatus"]

BUFFER_SIZE = 10_000
"""Unread events a subscriber may hold before the oldest are dropped (the default)."""

INTERRUPTED = "INTERRUPTED"
"""How :meth:`Run.status` counts the unfinished trials of a cancelled or failed run."""

RunState = Literal["not_started", "running", "finished", "failed", "cancelled"]


class BestResult(msgspec.Struct, frozen=True, kw_only=True):
    """The best result reported so far, by the experiment's ``metric`` and ``mode``.

    Attributes:
        trial_id: The trial that reported it.
        metric: The metric compared (``TuneConfig.metric``).
        value: Its value in that result.
        training_iteration: The result's ``training_iteration`` (None when absent).
        config: The trial's configuration.
    """

    trial_id: str
    metric: str
    value: float
    training_iteration: int | None
    config: dict[str, Any]


class RunStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a run (:meth:`Run.status`); ``msgspec.json.encode`` it for JSON.

    Attributes:
        state: ``"not_started"``, ``"running"``, ``"finished"``, ``"failed"`` (``fit()``
            raised) or ``"cancelled"`` (:meth:`Run.cancel`, or the block raised).
        experiment_path: The experiment directory (``Tuner.restore`` continues it).
        num_trials: Trials created so far (restored ones included).
        trials_by_status: How many trials are in each status (``PENDING``,
            ``RUNNING``, ``TERMINATED``, ``ERROR``, ...), from the controller's own trials.
            Once a run was cancelled or failed, its unfinished trials count as
            ``INTERRUPTED``: nothing runs them, and ``Tuner.restore`` resumes them.
        num_events: Events of this run so far.
        num_results: Results reported in this run so far.
        best: The best result so far (None without a metric or before any result).
        error: ``"<type>: <message>"`` of what ``fit()`` raised, when it failed.
    """

    state: RunState
    experiment_path: str
    num_trials: int
    trials_by_status: dict[str, int]
    num_events: int
    num_results: int
    best: BestResult | None = None
    error: str | None = None


class EventStream:
    """One subscriber of a run's events (what :meth:`Run.events` returns).

    An async iterator of :data:`~atune.events.StreamEvent`; see the module docstring for
    the buffer and its overflow rule. Iteration ends when the run has ended and every
    buffered event was read. ``await stream.aclose()`` (or ``async with stream:``)
    unsubscribes early; a stream that is no longer referenced stops receiving events too.
    """

    def __init__(self, replay: Sequence[Event], missed: int, buffer_size: int) -> None:
        self._missed = missed  # lost from the history before the replay
        self._replay = deque(replay)
        self._dropped = 0  # live events dropped since the last marker
        self._live: deque[Event] = deque()
        self._buffer_size = buffer_size
        self._told = 0
        self._wakeup = asyncio.Event()
        self._ended = False
        self._closed = False

    @property
    def dropped(self) -> int:
        """How many events this subscriber has lost so far (told by markers or about to be)."""
        return self._told + self._missed + self._dropped

    def _push(self, event: Event) -> None:
        if len(self._live) >= self._buffer_size:
            self._live.popleft()  # the oldest unread event goes; the marker will say so
            self._dropped += 1
        self._live.append(event)
        self._wakeup.set()

    def _end(self) -> None:
        self._ended = True
        self._wakeup.set()

    def _marker(self, dropped: int) -> SubscriberLagged:
        self._told += dropped
        return SubscriberLagged(ts=time.time(), dropped=dropped)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        # Order: [marker for history lost] replay [marker for live drops] live events.
        while not self._closed:
            if self._missed:
                missed, self._missed = self._missed, 0
                return self._marker(missed)
            if self._replay:
                return self._replay.popleft()
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                return self._marker(dropped)
            if self._live:
                return self._live.popleft()
            if self._ended:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Unsubscribe: drop what is buffered and end the iteration."""
        self._closed = True
        self._replay.clear()
        self._live.clear()
        self._wakeup.set()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Sink(Callback):
    """The handle's inline callback: records each event and hands it to the subscribers.

    Constant work per event and subscriber, never awaits: the controller is never held up.
    """

    def __init__(self, history: int, metric: str | None, mode: str | None) -> None:
        self.history: deque[Event] = deque(maxlen=history)
        self.num_events = 0
        self.num_results = 0
        self.trials: Sequence[Trial] = ()
        self.streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self.outputs: list[LiveOutput] = []  # Run.display()'s notebook outputs
        self.best: BestResult | None = None
        self._metric = metric
        self._sign = -1.0 if mode == "min" else 1.0

    def on_step_begin(self, iteration: int, trials: Sequence[Trial], **info: Any) -> None:
        self.trials = trials  # the core's read-only, live view of its trials

    def on_event(self, event: Event, **info: Any) -> None:
        self.num_events += 1
        self.history.append(event)
        if isinstance(event, ResultReported):
            self.num_results += 1
            if self._metric is not None:
                self._consider(event)
        for stream in self.streams:
            stream._push(event)
        for output in self.outputs:
            output.on_event(event)

    def _consider(self, event: ResultReported) -> None:
        assert self._metric is not None
        value = event.result.get(self._metric)
        if value is None and "/" in self._metric:
            from atune._flatten import flatten_dict

            value = flatten_dict(event.result).get(self._metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if math.isnan(value):
            return
        if self.best is not None and self._sign * value <= self._sign * self.best.value:
            return
        iteration = event.result.get("training_iteration")
        config = event.result.get("config")
        self.best = BestResult(
            trial_id=event.trial_id,
            metric=self._metric,
            value=float(value),
            training_iteration=iteration if isinstance(iteration, int) else None,
            config=dict(config) if isinstance(config, dict) else {},
        )

    def end(self) -> None:
        for stream in self.streams:
            stream._end()
        outputs, self.outputs = self.outputs, []
        for output in outputs:
            output.refresh()  # the final state


class Run:
    """A live handle on one run of an experiment; get it from :meth:`Tuner.start`.

    Use it as ``async with tuner.start() as run:`` (see the module docstring): entering
    starts the run as a task of the current event loop, leaving waits for its end (or
    cancels it when the block raised). A handle runs once.

    To keep a run going beyond one request of a service, enter the block in a task of its
    own and keep the handle where the requests find it::

        async def keep(run_id: str, tuner: Tuner) -> None:
            async with tuner.start() as run:
                runs[run_id] = run
                await run.wait()
    """

    def __init__(self, tuner: Tuner, *, history: int) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ConfigError(
                f"Tuner.start(history=...) must be a whole number >= 1, got {history!r}",
                value=history,
            )
        self._tuner = tuner
        tune_config = tuner._tune_config
        self._sink = _Sink(history, tune_config.metric, tune_config.mode)
        self._task: asyncio.Task[ResultGrid] | None = None
        self._cancelled = False

    # ------------------------------------------------------------------ lifetime
    async def __aenter__(self) -> Run:
        if self._task is not None:
            raise RuntimeError("this Run was started already; call Tuner.start() again")
        self._task = asyncio.get_running_loop().create_task(
            self._tuner._fit(observers=[self._sink]), name="atune run"
        )
        self._task.add_done_callback(lambda _: self._sink.end())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._running_task()
        if exc is not None:
            self.cancel()
            await self._settle(task)
            if not task.cancelled():
                task.exception()  # the block's error is the one raised; mark this seen
            return
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # the block's own task was cancelled: stop the run too
                self.cancel()
                await self._settle(task)
                raise
            if not self._cancelled:
                raise

    @staticmethod
    async def _settle(task: asyncio.Task[ResultGrid]) -> None:
        """Wait until the run's task has ended, whatever it ended with."""
        await asyncio.wait([task])

    def _running_task(self) -> asyncio.Task[ResultGrid]:
        if self._task is None:
            raise RuntimeError("the Run has not started: use `async with tuner.start() as run:`")
        return self._task

    def cancel(self) -> None:
        """Stop the run cleanly; it can be continued with ``Tuner.restore`` later.

        As when ``fit()`` is cancelled: every trial is stopped, every resource released
        and the journal flushed before the run's task ends. Returns at once; ``await
        run.wait()`` (or leaving the block) waits for that wind-down. Cancelling a run
        that has ended does nothing.
        """
        task = self._running_task()
        if not task.done():
            self._cancelled = True
            task.cancel()

    async def wait(self) -> ResultGrid:
        """Wait for the run to end and return its ``ResultGrid``.

        Cancelling the call does not cancel the run. After :meth:`cancel`, returns the
        results the run had when it stopped (as :meth:`results`).

        Raises:
            Exception: what ``fit()`` raised, when the run failed.
        """
        task = self._running_task()
        await asyncio.wait([task])  # cancelling this wait leaves the run alone
        if task.cancelled():
            return self.results()
        return task.result()

    # ------------------------------------------------------------------ watching
    def events(self, *, from_start: bool = True, buffer_size: int = BUFFER_SIZE) -> EventStream:
        """Subscribe to the run's events: an async iterator of typed events, in order.

        Args:
            from_start: Begin with the events the run had before this call (kept in the
                handle's history, see :meth:`Tuner.start`), then continue live; False:
                only the events after this call.
            buffer_size: Unread live events this subscriber may hold; when one more
                arrives, the oldest is dropped and the next read is a
                :class:`~atune.events.SubscriberLagged` marker saying how many were lost.

        The subscription is registered by this call, so no event between it and the
        first read is missed. A stream asked for after the run ended replays the history
        (or yields nothing with ``from_start=False``) and ends.

        Raises:
            ConfigError: ``buffer_size`` is not a whole number >= 1.
        """
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigError(
                f"Run.events(buffer_size=...) must be a whole number >= 1, got {buffer_size!r}",
                value=buffer_size,
            )
        sink = self._sink
        if from_start:
            stream = EventStream(
                list(sink.history), sink.num_events - len(sink.history), buffer_size
            )
        else:
            stream = EventStream((), 0, buffer_size)
        if self._task is not None and self._task.done():
            stream._end()
        else:
            sink.streams.add(stream)
        return stream

    def display(self) -> None:
        """Show the run's progress: in a notebook, one output that updates in place.

        In a notebook (an IPython kernel), makes one output in the calling cell, the
        status line and an HTML table of the trials (with a ``text/plain`` version
        without escape codes), and returns at once; the output is updated in place as
        the run goes (at most once a second) and a last time when it ends, while the
        notebook goes on. Each call makes an output of its own. Meant for a run in the
        background (a task that owns the ``async with`` block, see the class docstring);
        it shows whatever ``RunConfig(verbose=...)`` says, ``verbose=0`` included.

        Outside a notebook, prints the status line and the trial table once, as plain
        text, to stdout (``RunConfig(verbose=1)`` is the live terminal display).
        """
        from atune._progress_view import View
        from atune._run_display import LiveOutput, print_snapshot, wants_live_output

        tune_config = self._tuner._tune_config
        view = View(tune_config.metric, tune_config.mode, None)
        sink = self._sink
        if not wants_live_output():
            print_snapshot(view, sink.trials)
            return
        output = LiveOutput(view, lambda: sink.trials)
        output.show()
        if self._task is None or not self._task.done():
            sink.outputs.append(output)

    @property
    def experiment_path(self) -> str:
        """The experiment directory (what ``Tuner.restore`` continues)."""
        return self._tuner.experiment_path

    @property
    def state(self) -> RunState:
        """``"not_started"``, ``"running"``, ``"finished"``, ``"failed"`` or ``"cancelled"``."""
        task = self._task
        if task is None:
            return "not_started"
        if not task.done():
            return "running"
        if task.cancelled():
            return "cancelled"
        return "failed" if task.exception() is not None else "finished"

    def status(self) -> RunStatus:
        """A snapshot: state, trials by status, counts and the best result so far."""
        trials = list(self._sink.trials)
        ended = self.state in ("cancelled", "failed")
        by_status: dict[str, int] = {}
        for trial in trials:
            # A run that ended early left its unfinished trials as the journal has them
            # (what Tuner.restore resumes), but none of them runs any more.
            status = INTERRUPTED if ended and not trial.is_finished else trial.status
            by_status[status] = by_status.get(status, 0) + 1
        error = None
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                error = f"{type(exc).__name__}: {exc}"
        return RunStatus(
            state=self.state,
            experiment_path=self.experiment_path,
            num_trials=len(trials),
            trials_by_status=by_status,
            num_events=self._sink.num_events,
            num_results=self._sink.num_results,
            best=self._sink.best,
            error=error,
        )

    def results(self) -> ResultGrid:
        """A ``ResultGrid`` of what the run knows now (every trial, its latest result).

        Built from the controller's own trials (no file is read); a finished run's grid
        is the one ``fit()`` returned. ``metrics_dataframe`` reads the trial's result file
        and may lag by the last half second (the writer's flush interval).
        """
        task = self._task
        if task is not None and task.done() and not task.cancelled() and not task.exception():
            return task.result()
        from atune._fit import build_result_grid

        tuner = self._tuner
        return build_result_grid(
            list(self._sink.trials),
            self.experiment_path,
            tuner._tune_config,
            tuner._run_config.checkpoint_config,
        )
