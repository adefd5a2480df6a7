"""The driver: one task that feeds the core and carries out its commands.

It reads one anyio memory object stream of messages. For each, it asks the core
(:class:`~atune._controller._core.ControllerCore`) what happened and what to do, records
the events (journal, result files, callbacks, progress), and starts the commands as child
tasks of the experiment's task group. A child task awaits the runner (a Ray actor's
``ObjectRef`` or an in-process host) and sends what it observed back into the stream. All
experiment state is touched by the driver's task only: no locks.

Memory: large results are written as they come. When the writer's buffered bytes pass
``FLUSH_AT_BYTES``, the driver flushes at once and takes its next message only after that
(back-pressure), instead of waiting for the periodic flush; with batches bounded by bytes
(``TrainBudget.max_bytes``) the driver never holds more than a few megabytes of results.

Commands of one trial that come out of one message run in order, in one child task (a
failed runner is killed, and its ``ActorFreed`` sent, before the retry's ``Launch``).

Cancellation: when the driver is cancelled (``fit()`` cancelled, a cancel scope, Ctrl-C),
it kills every runner, releases every lease and flushes the journal in a shielded scope
with a deadline, then lets the cancellation propagate.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from atune._controller._core import (
    Command,
    ControllerCore,
    Finish,
    Launch,
    Message,
    Release,
    RunnerFailed,
    Save,
    StopAll,
    Train,
    TrainReturned,
)
from atune._controller._pool import RunnerPool, StartFailed
from atune._log import get_logger
from atune._trial import Trial
from atune.callback import Callback
from atune.errors import InfeasibleResourcesError, TuneError, WorkerDiedError
from atune.events import (
    ActorFreed,
    CheckpointDeleted,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    ResultReported,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialStarted,
    encode_event,
)
from atune.execution._host import ErrorInfo, TrainOutcome
from atune.storage._writer import FLUSH_AT_BYTES, ExperimentWriter
from atune.trainable._session import TrialInfo

__all__ = ["Driver"]

_log = get_logger(__name__)
_FLUSH_INTERVAL_S = 0.5
_SHUTDOWN_DEADLINE_S = 10.0
_TIME_BUDGET_GRACE_S = 2.0
_CAPACITY_REFRESH_S = 5.0
# A launch trains in the same call, so its return also says the trial started. A launch
# still running after this long (a long first step, a slow ``setup``) is asked separately
# when the trial got past its set-up, so ``TrialStarted`` (``on_trial_start``, RUNNING)
# is not held back until the first result.
_START_NOTICE_AFTER_S = 0.5
_START_WAIT_S = 2.0


class Driver:
    """Runs one experiment to completion; see the module docstring."""

    def __init__(
        self,
        core: ControllerCore,
        pool: RunnerPool,
        writer: ExperimentWriter,
        *,
        experiment_name: str,
        callbacks: Sequence[Callback] = (),
        time_budget_s: float | None = None,
        resumed: bool = False,
        signing_key: bytes = b"",
    ) -> None:
        self.core = core
        self.pool = pool
        self.writer = writer
        self.experiment_name = experiment_name
        self.callbacks = list(callbacks)
        self.time_budget_s = time_budget_s
        self.resumed = resumed
        self.signing_key = signing_key
        self._iteration = 0
        self._send: MemoryObjectSendStream[Message] | None = None
        self._trial_scopes: dict[str, anyio.CancelScope] = {}
        self._last_search_state: Any = None
        self._launches: dict[str, _Launching] = {}  # launch calls in flight, by trial

    # ---------------------------------------------------------------------- run
    async def run(self) -> None:
        """Run until the core says the experiment is finished."""
        send, receive = anyio.create_memory_object_stream[Message](math.inf)
        self._send = send
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush_periodically)
                tg.start_soon(self._notice_slow_launches, tg)
                if self.time_budget_s is not None:
                    tg.start_soon(self._time_budget, self.time_budget_s)
                if self.pool.backend.dynamic_capacity:
                    tg.start_soon(self._follow_capacity)
                started = ExperimentStarted(
                    ts=time.time(),
                    name=self.experiment_name,
                    path=str(self.writer.path),
                    resumed=self.resumed,
                )
                try:
                    self._step(started, tg)
                    async for message in receive:
                        if self._step(message, tg):
                            break
                        if self.writer.buffered_bytes >= FLUSH_AT_BYTES:
                            # Large results: write them now, and take the next message
                            # only then, so the buffers stay bounded (back-pressure).
                            await self._flush()
                except Exception as exc:
                    # Raised after the task group, as it is: inside it, it would reach the
                    # caller wrapped in an ExceptionGroup (``except TuneError`` would miss it).
                    failure = exc
                tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
        except BaseException:
            with anyio.move_on_after(_SHUTDOWN_DEADLINE_S, shield=True):
                await self.pool.kill_all()
                await self._flush()
            _log.warning(
                "experiment interrupted; every trial was stopped and the journal flushed. "
                f"Resume it with: Tuner.restore({str(self.writer.path)!r}, trainable=...).fit()"
            )
            raise
        finally:
            # The receiving end stays open until every child task is done: a call that
            # returns while the experiment winds down sends its message into the buffer,
            # where nobody reads it, rather than into a closed stream.
            self._send = None
            send.close()
            receive.close()
        with anyio.CancelScope(shield=True):
            await self.pool.stop_all()
            await self._flush()

    def _step(self, message: Message, tg: TaskGroup) -> bool:
        events, commands = self.core.handle(message)
        for event in events:
            self._record(event)
        by_trial: dict[str, list[Command]] = defaultdict(list)
        finished = False
        for command in commands:
            if isinstance(command, Finish):
                finished = True
                continue
            by_trial[command.trial_id].append(command)
        for trial_id, trial_commands in by_trial.items():
            tg.start_soon(self._run_commands, trial_id, trial_commands)
        return finished

    async def _flush_periodically(self) -> None:
        while True:
            await anyio.sleep(_FLUSH_INTERVAL_S)
            await self._flush()

    async def _flush(self) -> None:
        self._snapshot_search()
        await anyio.to_thread.run_sync(self.writer.flush)

    def _snapshot_search(self) -> None:
        """Journal the search algorithm's state when it changed (for Tuner.restore)."""
        state = self.core.search.get_state()
        if state != self._last_search_state:
            self._last_search_state = state
            self.writer.journal(encode_event(SearcherStateSaved(ts=time.time(), state=state)))

    async def _notice_slow_launches(self, tg: TaskGroup) -> None:
        """Start a watch on every launch call that has been running for a while."""
        while True:
            await anyio.sleep(_START_NOTICE_AFTER_S / 2)
            now = time.monotonic()
            for trial_id, launching in self._launches.items():
                if not launching.watched and now - launching.since >= _START_NOTICE_AFTER_S:
                    launching.watched = True
                    tg.start_soon(self._announce_start, trial_id, launching)

    async def _announce_start(self, trial_id: str, launching: _Launching) -> None:
        """Send ``TrialStarted`` once the launch got past the trial's set-up."""
        while self._launches.get(trial_id) is launching:
            try:
                runner = self.pool.runner(trial_id)
            except KeyError:  # waiting for resources, or its actor is being created
                await anyio.sleep(_START_NOTICE_AFTER_S / 2)
                continue
            try:
                reused = await runner.wait_started(trial_id, _START_WAIT_S)
            except WorkerDiedError:  # the launch call reports it
                return
            if reused is not None and self._launches.get(trial_id) is launching:
                launching.announced = True
                trial = self.core.trials[trial_id]
                self._send_message(_started(trial, launching.command, reused, time.time()))
                return

    async def _follow_capacity(self) -> None:
        """Keep the allocator's capacity in step with the cluster as nodes join or leave."""
        while True:
            await anyio.sleep(_CAPACITY_REFRESH_S)
            capacity = await anyio.to_thread.run_sync(self.pool.backend.capacity)
            self.pool.scope.allocator.update_capacity(capacity)

    async def _time_budget(self, budget: float) -> None:
        await anyio.sleep(budget)
        self._send_message(StopAll(ts=time.time(), reason="time_budget"))
        await anyio.sleep(_TIME_BUDGET_GRACE_S)
        # Calls still in flight after the grace period (a step() that never returns) are
        # abandoned: their runners are killed and the trials end where they are.
        for scope in list(self._trial_scopes.values()):
            scope.cancel()

    def _send_message(self, message: Message) -> None:
        if self._send is not None:
            self._send.send_nowait(message)

    # ------------------------------------------------------------------ recording
    def _record(self, event: Event) -> None:
        self._iteration += 1
        self.writer.journal(encode_event(event))
        trials = self.core.get_trials()
        trial: Trial | None = None
        trial_id = getattr(event, "trial_id", None)
        if trial_id is not None:
            trial = self.core.trials[trial_id]
        if isinstance(event, ResultReported):
            assert trial is not None
            self.writer.result(Path(trial.path), event.result)
        elif isinstance(event, TrialErrored):
            assert trial is not None
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(event.ts))
            self.writer.error(
                Path(trial.path),
                f"Failure # {trial.num_failures} (occurred at {stamp})\n{event.traceback}\n",
            )
        elif isinstance(event, CheckpointDeleted):
            assert trial is not None
            self.writer.delete_checkpoint(Path(trial.path) / event.dir_name)
        elif isinstance(event, TrialCreated):
            assert trial is not None
            self.writer.params(Path(trial.path), trial.config)
        if isinstance(event, (TrialCompleted, TrialErrored)) and trial and trial.is_finished:
            self.writer.close_trial(Path(trial.path))
        for callback in self.callbacks:
            try:
                _notify(callback, event, self._iteration, trials, trial)
            except Exception as exc:
                raise TuneError(
                    f"callback {type(callback).__name__} raised {type(exc).__name__}: {exc}"
                ) from exc

    # ------------------------------------------------------------------- commands
    async def _run_commands(self, trial_id: str, commands: list[Command]) -> None:
        with anyio.CancelScope() as scope:
            self._trial_scopes[trial_id] = scope
            try:
                for command in commands:
                    for message in await self._execute(command):
                        self._send_message(message)
                return
            finally:
                if self._trial_scopes.get(trial_id) is scope:
                    del self._trial_scopes[trial_id]
        # Cancelled by the time budget: the call was abandoned. Collect the results it had
        # already produced, kill the runner, say so, and hand the core those results (the
        # trial is already stopping).
        results = await self._drain(trial_id)
        await self.pool.release(trial_id, kill=True)
        self._send_message(
            ActorFreed(ts=time.time(), trial_id=trial_id, action="killed", reason="time budget")
        )
        self._send_message(
            TrainReturned(ts=time.time(), trial_id=trial_id, outcome=TrainOutcome(results=results))
        )

    async def _drain(self, trial_id: str) -> list[dict[str, Any]]:
        with anyio.move_on_after(_TIME_BUDGET_GRACE_S):
            try:
                return await self.pool.runner(trial_id).drain()
            except (KeyError, WorkerDiedError):  # not started yet, or already gone
                pass
        return []

    async def _execute(self, command: Command) -> list[Message]:
        trial = self.core.trials[command.trial_id]  # type: ignore[union-attr]
        if isinstance(command, Launch):
            return await self._launch(trial, command)
        return [await self._execute_one(trial, command)]

    async def _execute_one(self, trial: Trial, command: Command) -> Message:
        if isinstance(command, Release):
            action, reason = await self.pool.release(trial.trial_id, kill=command.kill)
            return ActorFreed(ts=time.time(), trial_id=trial.trial_id, action=action, reason=reason)
        runner = self.pool.runner(trial.trial_id)
        try:
            if isinstance(command, Train):
                outcome = await runner.train(command.budget)
                return TrainReturned(ts=time.time(), trial_id=trial.trial_id, outcome=outcome)
            if isinstance(command, Save):
                saved = await runner.save(command.index)
                if saved.error is not None:
                    return RunnerFailed(ts=time.time(), trial_id=trial.trial_id, error=saved.error)
                return CheckpointSaved(
                    ts=time.time(),
                    trial_id=trial.trial_id,
                    dir_name=saved.dir_name or "",
                    training_iteration=saved.training_iteration,
                    metrics=saved.metrics,
                )
        except WorkerDiedError as exc:
            return RunnerFailed(ts=time.time(), trial_id=trial.trial_id, error=_died(exc))
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    async def _launch(self, trial: Trial, command: Launch) -> list[Message]:
        info = TrialInfo(
            trial_id=trial.trial_id,
            trial_name=trial.trial_name,
            trial_dir=trial.path,
            experiment_name=self.experiment_name,
            resources=trial.resources,
            checkpoint_index=trial.next_checkpoint_index,
            signing_key=self.signing_key,
        )
        failed: ErrorInfo
        launching = self._launches[trial.trial_id] = _Launching(command)
        try:
            reused, trained = await self.pool.acquire(
                trial, info, command.checkpoint, command.budget, after=command.after
            )
        except InfeasibleResourcesError as exc:
            return [
                RunnerFailed(
                    ts=time.time(),
                    trial_id=trial.trial_id,
                    error=ErrorInfo.from_exception(exc),
                    retryable=False,
                )
            ]
        except StartFailed as exc:
            failed = exc.error
        except WorkerDiedError as exc:
            failed = _died(exc)
        else:
            now = time.time()
            outcome = trained if trained is not None else TrainOutcome(results=[])
            returned = TrainReturned(ts=now, trial_id=trial.trial_id, outcome=outcome)
            if launching.announced:
                return [returned]
            return [_started(trial, command, reused, now), returned]
        finally:
            del self._launches[trial.trial_id]
        return [RunnerFailed(ts=time.time(), trial_id=trial.trial_id, error=failed)]


class _Launching:
    """A launch call in flight (see ``_START_NOTICE_AFTER_S``)."""

    __slots__ = ("announced", "command", "since", "watched")

    def __init__(self, command: Launch) -> None:
        self.command = command
        self.since = time.monotonic()
        self.watched = False
        self.announced = False  # TrialStarted was sent before the call returned


def _started(trial: Trial, command: Launch, reused: bool, ts: float) -> TrialStarted:
    return TrialStarted(
        ts=ts,
        trial_id=trial.trial_id,
        attempt=trial.attempt,
        reused=reused,
        restored_from=Path(command.checkpoint).name if command.checkpoint else None,
    )


def _died(exc: WorkerDiedError) -> ErrorInfo:
    return ErrorInfo(
        type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="\n\n".join(filter(None, (exc.traceback, exc.error_message))),
    )


def _notify(
    callback: Callback, event: Event, iteration: int, trials: list[Trial], trial: Trial | None
) -> None:
    callback.on_event(event)
    if trial is None:
        if isinstance(event, ExperimentFinished):
            callback.on_experiment_end(trials=trials)
        return
    if isinstance(event, TrialStarted):
        callback.on_trial_start(iteration=iteration, trials=trials, trial=trial)
    elif isinstance(event, ResultReported):
        callback.on_trial_result(
            iteration=iteration, trials=trials, trial=trial, result=event.result
        )
    elif isinstance(event, CheckpointSaved):
        checkpoint: Any = trial.checkpoint
        callback.on_checkpoint(
            iteration=iteration, trials=trials, trial=trial, checkpoint=checkpoint
        )
        callback.on_trial_save(iteration=iteration, trials=trials, trial=trial)
    elif isinstance(event, TrialCompleted):
        callback.on_trial_complete(iteration=iteration, trials=trials, trial=trial)
    elif isinstance(event, TrialErrored):
        hook = callback.on_trial_recover if event.will_retry else callback.on_trial_error
        hook(iteration=iteration, trials=trials, trial=trial)
