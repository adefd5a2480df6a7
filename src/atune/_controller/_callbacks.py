"""Deliver experiment events to the user's callbacks without stalling the driver.

A callback whose hooks are all plain functions is called inline, from the driver's task,
right after the event is recorded (as in Ray Tune: a slow hook delays the experiment).

A callback with at least one ``async def`` hook gets a *lane*: its own task in the
experiment's task group, fed through a bounded queue. All of that callback's hooks (plain
and async) run in its lane, in event order, each after the previous one returned; the
driver goes on with the experiment meanwhile. Ordering guarantee: per callback, hooks run
in the order of the events; across callbacks, nothing is promised for lanes. A lane that
falls :data:`QUEUE_SIZE` calls behind makes the driver wait for room (back-pressure, so
memory stays bounded). Before ``fit()`` returns, every lane has run every call, including
``on_experiment_end``. The ``trial`` and ``trials`` objects a lane's hook receives are the
live ones: they may have moved past the event by the time the hook runs (``result`` and
``checkpoint`` are the event's own).

A hook that raises aborts ``fit()`` with :class:`~atune.errors.TuneError`.
"""

from __future__ import annotations

import inspect
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from atune._log import get_logger
from atune._trial import Trial
from atune.callback import HOOKS, Callback
from atune.errors import TuneError
from atune.events import (
    CallbackStateSaved,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ResultReported,
    TrialCompleted,
    TrialErrored,
    TrialStarted,
)

__all__ = ["QUEUE_SIZE", "CallbackDispatcher"]

_log = get_logger(__name__)

QUEUE_SIZE = 1024
"""Hook calls a lane may fall behind before the driver waits for it."""

_Call = tuple[str, dict[str, Any]]


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


class _Lane:
    """One async-capable callback's queue and task (see the module docstring)."""

    def __init__(self, callback: Callback) -> None:
        self.callback = callback
        self.send: MemoryObjectSendStream[_Call]
        self.receive: MemoryObjectReceiveStream[_Call]
        self.send, self.receive = anyio.create_memory_object_stream[_Call](QUEUE_SIZE)
        self.backlog: deque[_Call] = deque()
        self.done = anyio.Event()

    def put(self, call: _Call) -> None:
        if self.backlog:
            self.backlog.append(call)
            return
        try:
            self.send.send_nowait(call)
        except anyio.WouldBlock:
            self.backlog.append(call)

    async def run(self, fail: Callable[[BaseException], None]) -> None:
        try:
            async with self.receive:
                async for name, kwargs in self.receive:
                    try:
                        await _call(self.callback, name, kwargs)
                    except Exception as exc:
                        fail(_hook_error(self.callback, name, exc))
                        return
        finally:
            self.done.set()


async def _call(callback: Callback, name: str, kwargs: dict[str, Any]) -> None:
    outcome = getattr(callback, name)(**kwargs)
    if inspect.isawaitable(outcome):
        await outcome


def _hook_error(callback: Callback, name: str, exc: BaseException) -> TuneError:
    error = TuneError(
        f"callback {type(callback).__name__}.{name} raised {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


class CallbackDispatcher:
    """Calls the hooks of every callback for each event (see the module docstring).

    Args:
        callbacks: Every callback of the run, the user's first.
        num_user: How many of ``callbacks`` are the user's (their states are journaled).
    """

    def __init__(self, callbacks: Sequence[Callback], num_user: int) -> None:
        self.callbacks = list(callbacks)
        self.num_user = num_user
        self.failure: TuneError | None = None
        self._on_failure: Callable[[], None] = lambda: None
        self._lanes: dict[int, _Lane] = {}
        self._inline: list[Callback] = []
        for callback in self.callbacks:
            if any(inspect.iscoroutinefunction(getattr(callback, hook)) for hook in HOOKS):
                self._lanes[id(callback)] = _Lane(callback)
            else:
                self._inline.append(callback)
        self._step_hooks = [
            c
            for c in self.callbacks
            if _overrides(c, "on_step_begin") or _overrides(c, "on_step_end")
        ]
        self._ended: set[int] = set()
        self._last_states: bytes | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, tg: TaskGroup, on_failure: Callable[[], None]) -> None:
        """Start the lanes in the driver's task group; ``on_failure`` stops the run."""
        self._on_failure = on_failure
        for lane in self._lanes.values():
            tg.start_soon(lane.run, self._fail)

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error if isinstance(error, TuneError) else TuneError(str(error))
        self._on_failure()

    async def setup(self, **info: Any) -> None:
        """Call every callback's ``setup`` once, before the first trial starts."""
        for callback in self.callbacks:
            try:
                await _call(callback, "setup", info)
            except Exception as exc:
                raise _hook_error(callback, "setup", exc) from exc

    @property
    def backlogged(self) -> bool:
        """Whether a lane is more than :data:`QUEUE_SIZE` calls behind."""
        return any(lane.backlog for lane in self._lanes.values())

    async def relieve(self) -> None:
        """Wait until every lane's queue has room for its backlog (back-pressure)."""
        for lane in self._lanes.values():
            while lane.backlog:
                await lane.send.send(lane.backlog.popleft())

    async def drain(self) -> None:
        """Let every lane run every call it was given, then end the lanes."""
        await self.relieve()
        for lane in self._lanes.values():
            lane.send.close()
        for lane in self._lanes.values():
            await lane.done.wait()

    async def abort(self, trials: Sequence[Trial]) -> None:
        """The run ends early: ``on_experiment_end`` for every callback that lacks it.

        Errors are logged, not raised (the run's own error is what ``fit()`` raises).
        """
        for callback in self.callbacks:
            if id(callback) in self._ended:
                continue
            self._ended.add(id(callback))
            try:
                await _call(callback, "on_experiment_end", {"trials": trials})
            except Exception as exc:
                _log.warning(str(_hook_error(callback, "on_experiment_end", exc)))

    # --------------------------------------------------------------------- events
    def _deliver(self, callback: Callback, calls: list[_Call]) -> None:
        lane = self._lanes.get(id(callback))
        if lane is not None:
            for call in calls:
                lane.put(call)
            return
        for name, kwargs in calls:
            try:
                getattr(callback, name)(**kwargs)
            except Exception as exc:
                raise _hook_error(callback, name, exc) from exc

    def step(self, hook: str, iteration: int, trials: Sequence[Trial]) -> None:
        """``on_step_begin`` / ``on_step_end`` for the callbacks that define them."""
        for callback in self._step_hooks:
            if _overrides(callback, hook):
                self._deliver(callback, [(hook, {"iteration": iteration, "trials": trials})])

    def event(
        self, event: Event, iteration: int, trials: Sequence[Trial], trial: Trial | None
    ) -> None:
        """``on_event`` and the Ray Tune hook(s) the event stands for."""
        calls = _calls(event, iteration, trials, trial)
        if isinstance(event, ExperimentFinished):
            self._ended.update(id(c) for c in self.callbacks)
        for callback in self.callbacks:
            self._deliver(callback, calls)

    # ---------------------------------------------------------------------- state
    def snapshot(self, ts: float) -> CallbackStateSaved | None:
        """The user's callbacks' states when they changed since the last snapshot.

        A ``get_state`` that raises, or returns what JSON cannot hold, stops the run.
        """
        states: list[dict[str, Any]] = []
        for index, callback in enumerate(self.callbacks[: self.num_user]):
            try:
                state = callback.get_state()
            except Exception as exc:
                self._fail(_hook_error(callback, "get_state", exc))
                return None
            if state is None:
                continue
            try:
                msgspec.json.encode(state)
            except (TypeError, ValueError, OverflowError) as exc:
                self._fail(
                    TuneError(
                        f"callback {type(callback).__name__}.get_state() must return JSON "
                        f"data (dicts, lists, strings, numbers, booleans, None): {exc}"
                    )
                )
                return None
            states.append({"index": index, "type": _qualname(callback), "state": state})
        encoded = msgspec.json.encode(states)
        if encoded == self._last_states or (not states and self._last_states is None):
            return None
        self._last_states = encoded
        return CallbackStateSaved(ts=ts, states=states)

    async def restore(self, events: Sequence[Event]) -> None:
        """Hand each user callback its state from the journal's last snapshot.

        A state goes back to the callback at the same position in ``RunConfig.callbacks``
        when its class has the same qualified name; others are left alone, with a warning.
        """
        snapshot = next((e for e in reversed(events) if isinstance(e, CallbackStateSaved)), None)
        if snapshot is None:
            return
        self._last_states = msgspec.json.encode(snapshot.states)
        user = self.callbacks[: self.num_user]
        for entry in snapshot.states:
            index, kind = entry.get("index"), entry.get("type")
            callback = user[index] if isinstance(index, int) and index < len(user) else None
            if callback is None or _qualname(callback) != kind:
                _log.warning(
                    "a callback state from the journal has no matching callback; pass the "
                    "same callbacks again to restore it (Tuner.restore(..., callbacks=...))",
                    position=index,
                    callback=kind,
                )
                continue
            try:
                await _call(callback, "set_state", {"state": entry.get("state")})
            except Exception as exc:
                raise _hook_error(callback, "set_state", exc) from exc


def _qualname(callback: Callback) -> str:
    cls = type(callback)
    return f"{cls.__module__}.{cls.__qualname__}"


def _calls(
    event: Event, iteration: int, trials: Sequence[Trial], trial: Trial | None
) -> list[_Call]:
    calls: list[_Call] = [("on_event", {"event": event})]
    if trial is None:
        if isinstance(event, ExperimentFinished):
            calls.append(("on_experiment_end", {"trials": trials}))
        return calls
    common = {"iteration": iteration, "trials": trials, "trial": trial}
    if isinstance(event, TrialStarted):
        calls.append(("on_trial_start", common))
        if event.restored_from:
            calls.append(("on_trial_restore", common))
    elif isinstance(event, ResultReported):
        calls.append(("on_trial_result", {**common, "result": event.result}))
    elif isinstance(event, CheckpointSaved):
        from atune.trainable._checkpoint import Checkpoint

        checkpoint = Checkpoint(os.path.join(trial.path, event.dir_name))
        calls.append(("on_checkpoint", {**common, "checkpoint": checkpoint}))
        calls.append(("on_trial_save", common))
    elif isinstance(event, TrialCompleted):
        calls.append(("on_trial_complete", common))
    elif isinstance(event, TrialErrored):
        calls.append(("on_trial_recover" if event.will_retry else "on_trial_error", common))
    return calls
