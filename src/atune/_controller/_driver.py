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

Time: the driver reads time and waits only through its injected
:class:`~atune._controller._clock.Clock` (wall clock by default): event time stamps,
the journal flush interval, the time budget and its grace period, retry back-off, the
capacity refresh, the launch watch and the shutdown deadline. With a
:class:`~atune._controller._clock.VirtualClock` and a backend whose runners wait on the
same clock, a run is deterministic and takes no real time.

Cancellation: when the driver is cancelled (``fit()`` cancelled, a cancel scope, Ctrl-C),
it kills every runner, releases every lease and flushes the journal in a shielded scope
with a deadline, then lets the cancellation propagate.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from atune._controller._callbacks import CallbackDispatcher
from atune._controller._clock import Cancellable, Clock, WallClock
from atune._controller._core import ControllerCore
from atune._controller._messages import (
    CapacityChanged,
    Command,
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
from atune._controller._snapshot import SEARCH_TOLD, TOLD, compact, snapshot_min_bytes
from atune._log import get_logger
from atune._trial import Trial
from atune.callback import Callback
from atune.errors import (
    InfeasibleResourcesError,
    NotSerializableError,
    StorageError,
    TuneError,
    WorkerDiedError,
)
from atune.events import (
    ActorFreed,
    CheckpointDamaged,
    CheckpointDeleted,
    CheckpointSaved,
    Event,
    ExperimentStarted,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialPaused,
    TrialStarted,
    encode_event,
)
from atune.execution._growth import follow_demand
from atune.execution._protocol import ErrorInfo, TrainOutcome
from atune.execution._resources import normalize_resources, to_units
from atune.storage._remote import TrialStorage
from atune.storage._writer import FLUSH_AT_BYTES, ExperimentWriter
from atune.trainable._session import TrialInfo

__all__ = ["Driver"]

_log = get_logger(__name__)
_FLUSH_INTERVAL_S = 0.5
_SHUTDOWN_DEADLINE_S = 10.0
_TIME_BUDGET_GRACE_S = 2.0
_CAPACITY_REFRESH_S = 5.0
# A launch trains in the same call, so its return also says the trial started. A launch
# still running after this long (a long first step, a slow ``setup``, a launch queued
# behind another trial) is asked separately, by a watch in the launch's own task, when the
# trial got past its set-up, so ``TrialStarted`` (``on_trial_start``, RUNNING) is not held
# back until the first result.
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
        num_user_callbacks: int | None = None,
        time_budget_s: float | None = None,
        resumed: bool = False,
        signing_key: bytes = b"",
        clock: Clock | None = None,
        flush_interval_s: float = _FLUSH_INTERVAL_S,
        trial_storage: TrialStorage | None = None,
    ) -> None:
        self.core = core
        self.trial_storage = trial_storage  # remote storage: what each runner needs of it
        self.flush_interval_s = flush_interval_s
        self.clock: Clock = clock if clock is not None else WallClock()
        self.pool = pool
        self.writer = writer
        # One Path per trial directory, made once: a Path per result (and hashing it, as
        # the writer keys its buffers by directory) was a sixth of the driver's CPU per
        # result when results stream.
        self._trial_dirs: dict[str, Path] = {}
        self.experiment_name = experiment_name
        self.callbacks = list(callbacks)
        self.dispatch = CallbackDispatcher(
            self.callbacks,
            len(self.callbacks) if num_user_callbacks is None else num_user_callbacks,
        )
        self.time_budget_s = time_budget_s
        self.resumed = resumed
        self.signing_key = signing_key
        self._iteration = 0  # controller steps taken (Ray Tune's ``iteration``)
        self._send: MemoryObjectSendStream[Message] | None = None
        self._trial_scopes: dict[str, anyio.CancelScope] = {}
        self._last_search_state: Any = None
        self._last_scheduler_state: Any = None
        # Events a restore's catch-up tells the searcher / scheduler, since their last save.
        self._search_told = False
        self._scheduler_told = False
        self._retry_waits: dict[str, anyio.CancelScope] = {}  # retries backing off
        self._storage_failure: StorageError | None = None
        self._snapshot_min_bytes = snapshot_min_bytes()  # a bad value fails at the start
        self._warned_pause_without_checkpoint = False

    # ---------------------------------------------------------------------- run
    async def run(self) -> None:
        """Run until the core says the experiment is finished."""
        send, receive = anyio.create_memory_object_stream[Message](math.inf)
        self._send = send
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                self.dispatch.start(tg, tg.cancel_scope.cancel)
                tg.start_soon(self._flush_periodically, tg)
                if self.time_budget_s is not None:
                    tg.start_soon(self._time_budget, self.time_budget_s)
                if self.pool.backend.dynamic_capacity:
                    tg.start_soon(self._follow_capacity)
                if self.pool.scope.allocator.pending_timeout_s is not None:
                    # A cluster that grows on demand: what waits is asked of it.
                    tg.start_soon(follow_demand, self.pool.scope.allocator, self.pool.backend)
                started = ExperimentStarted(
                    ts=self.clock.time(),
                    name=self.experiment_name,
                    path=self._experiment_location(),
                    resumed=self.resumed,
                )
                try:
                    # The first step may finish the experiment already (a restored one
                    # with nothing left to run): then no message will ever arrive.
                    if not self._step(started, tg):
                        async for message in receive:
                            if self._step(message, tg):
                                break
                            if self.dispatch.backlogged:
                                await self.dispatch.relieve()
                            if self.writer.buffered_bytes >= FLUSH_AT_BYTES:
                                # Large results: write them now, and take the next message
                                # only then, so the buffers stay bounded (back-pressure).
                                await self._flush()
                    await self.dispatch.drain()
                except Exception as exc:
                    # Raised after the task group, as it is: inside it, it would reach the
                    # caller wrapped in an ExceptionGroup (``except TuneError`` would miss it).
                    failure = exc
                tg.cancel_scope.cancel()
            failure = failure or self.dispatch.failure or self._storage_failure
            if failure is not None:
                raise failure
        except BaseException:
            with self.clock.move_on_after(_SHUTDOWN_DEADLINE_S, shield=True):
                await self.pool.kill_all()
                try:
                    await self._flush(final=True)
                except StorageError as exc:  # the error being raised says more
                    _log.warning("could not flush the journal while stopping", error=str(exc))
                await self.dispatch.abort(self.core.get_trials())
            _log.warning(
                "experiment interrupted; every trial was stopped and the journal flushed. "
                f"Resume it with: Tuner.restore({self._experiment_location()!r}, trainable=...).fit()"
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
            await self._flush(final=True)
        if self.dispatch.failure is not None:  # the last get_state() failed
            raise self.dispatch.failure

    def _experiment_location(self) -> str:
        """The experiment's directory, or its URI on remote storage."""
        sync = self.writer.sync
        return str(self.writer.path) if sync is None else sync.storage.uri

    def _step(self, message: Message, tg: TaskGroup) -> bool:
        self.dispatch.step("on_step_begin", self._iteration, self.core.get_trials())
        events, commands = self.core.handle(message)
        # Every event of the step reaches the journal before any callback sees one: a
        # callback that fails the experiment must not leave events that the core applied
        # (a trial it created, which the searcher's snapshot counts) out of the journal.
        for event in events:
            self._record(event)
        if self.dispatch.callbacks:  # none (verbose=0): no hook calls to build
            trials = self.core.get_trials()
            for event in events:
                trial_id = getattr(event, "trial_id", None)
                trial = None if trial_id is None else self.core.trials[trial_id]
                self.dispatch.event(event, self._iteration, trials, trial)
        self._iteration += 1
        self.dispatch.step("on_step_end", self._iteration, self.core.get_trials())
        for trial_id, wait in self._retry_waits.items():
            if self.core.stopping(trial_id):
                wait.cancel()  # stopped while backing off: it is not launched at all
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

    async def _flush_periodically(self, tg: TaskGroup) -> None:
        """Flush every ``flush_interval_s`` (clock time); a write failure ends the experiment.

        A ``StorageError`` (full disk, file too large) is not retried: the experiment
        stops as if cancelled (runners killed, one last flush tried) and ``fit()`` raises
        it. The journal holds every flush that succeeded, so ``Tuner.restore`` continues
        from there once the disk has room.
        """
        while True:
            await self.clock.sleep(self.flush_interval_s)
            try:
                await self._flush()
            except StorageError as exc:
                self._storage_failure = exc
                tg.cancel_scope.cancel()
                return

    async def _flush(self, *, final: bool = False) -> None:
        """Write what is buffered; ``final``: the run ended, so also snapshot the journal
        and complete the uploads to remote storage.

        The final flush journals the searcher's and scheduler's states once more when
        events they were told of came after their last save, so the journal's snapshot
        (written after it) is all that ``Tuner.restore`` needs.
        """
        self._snapshot_search(force=final)
        callback_states = self.dispatch.snapshot(self.clock.time())
        if callback_states is not None:
            self.writer.journal(encode_event(callback_states))
        await self.clock.run_sync(self.writer.flush)
        # A scheduler's own files (PBT's policy log): copied here, written off the loop.
        files_to_write = getattr(self.core.scheduler, "files_to_write", None)
        job = files_to_write() if callable(files_to_write) else None
        if job is not None:
            # Shielded: the scheduler handed its changes over with the job, so a flush
            # cancelled here (the periodic one, as the run ends) must not drop it; the
            # final flush would find nothing left to write.
            with anyio.CancelScope(shield=True):
                try:
                    await self.clock.run_sync(job)
                except OSError as exc:
                    _log.warning("could not write the scheduler's files", error=str(exc))
        if final:
            await self.clock.run_sync(self._compact)
        if final and self.writer.sync is not None:  # the snapshot is uploaded too
            await self.clock.run_sync(self.writer.finish)

    def _compact(self) -> None:
        """Write the journal's snapshot; a failure only costs the next restore time."""
        try:
            compact(self.writer.path, min_tail_bytes=self._snapshot_min_bytes)
        except (OSError, TuneError) as exc:
            _log.warning("could not write the journal's snapshot", error=str(exc))

    def _snapshot_search(self, *, force: bool = False) -> None:
        """Journal the search algorithm's state when it changed (for Tuner.restore).

        ``force``: also when it did not, if events it was told of came after its last save.
        """
        state = self.core.search.get_state()
        if state != self._last_search_state or (force and state is not None and self._search_told):
            self._last_search_state = state
            self._search_told = False
            self.writer.journal(encode_event(SearcherStateSaved(ts=self.clock.time(), state=state)))
        scheduler_state = self.core.scheduler.get_state()
        if scheduler_state is not None and (
            scheduler_state != self._last_scheduler_state or (force and self._scheduler_told)
        ):
            self._scheduler_told = False
            self._last_scheduler_state = scheduler_state
            self.writer.journal(
                encode_event(SchedulerStateSaved(ts=self.clock.time(), state=scheduler_state))
            )

    async def _announce_start(self, trial: Trial, command: Launch, watch: _StartWatch) -> None:
        """Send ``TrialStarted`` once a launch still running got past the trial's set-up.

        Runs in the task that the launch's :class:`_StartWatch` starts when the call is
        still running after ``_START_NOTICE_AFTER_S``; cancelled when the call returns
        (which then says the trial started, unless this did already).
        """
        while True:
            try:
                runner = self.pool.runner(trial.trial_id)
            except KeyError:  # waiting for resources, or its actor is being created
                await self.clock.sleep(_START_NOTICE_AFTER_S / 2)
                continue
            try:
                reused = await runner.wait_started(trial.trial_id, _START_WAIT_S)
            except WorkerDiedError:  # the launch call reports it
                return
            if reused is not None:
                watch.announced = True
                self._send_message(_started(trial, command, reused, self.clock.time()))
                return

    async def _follow_capacity(self) -> None:
        """Follow the cluster's capacity as nodes join or leave.

        Every ``_CAPACITY_REFRESH_S`` the backend's capacity is read (off the event loop).
        A change goes to the allocator (waiting launches may now fit, or never will) and,
        as a :class:`CapacityChanged` in the allocator's units, to the core, which
        recomputes how many trials may be live and creates more when there is room.
        """
        while True:
            await self.clock.sleep(_CAPACITY_REFRESH_S)
            await self._check_capacity()

    async def _check_capacity(self) -> None:
        """Read the backend's capacity now; on a change, tell the allocator and the core.

        Besides the periodic refresh, a worker's death triggers a read before the core
        hears of it (see :meth:`_runner_died`): the worker may have died with its node, and
        the retry must not be granted resources the allocator still counts on that node.
        """
        if not self.pool.backend.dynamic_capacity:
            return
        capacity = await self.clock.run_sync(self.pool.backend.capacity)
        units = to_units(normalize_resources(capacity))
        if units == to_units(normalize_resources(self.pool.scope.allocator.capacity)):
            return
        self.pool.scope.allocator.update_capacity(capacity)
        self._send_message(CapacityChanged(ts=self.clock.time(), capacity=units))

    async def _runner_died(self, trial: Trial, exc: WorkerDiedError) -> RunnerFailed:
        """The failure to report for a dead worker, after re-reading the capacity."""
        await self._check_capacity()
        return RunnerFailed(ts=self.clock.time(), trial_id=trial.trial_id, error=_died(exc))

    async def _time_budget(self, budget: float) -> None:
        await self.clock.sleep(budget)
        self._send_message(StopAll(ts=self.clock.time(), reason="time_budget"))
        await self.clock.sleep(_TIME_BUDGET_GRACE_S)
        # Calls still in flight after the grace period (a step() that never returns) are
        # abandoned: their runners are killed and the trials end where they are.
        for scope in list(self._trial_scopes.values()):
            scope.cancel()

    def _send_message(self, message: Message) -> None:
        if self._send is not None:
            self._send.send_nowait(message)

    # ------------------------------------------------------------------ recording
    def _record(self, event: Event) -> None:
        """Journal the event and buffer the files it changes."""
        self.writer.journal(encode_event(event))
        if isinstance(event, TOLD):
            self._scheduler_told = True
            self._search_told = self._search_told or isinstance(event, SEARCH_TOLD)
        trial: Trial | None = None
        trial_id = getattr(event, "trial_id", None)
        if trial_id is not None:
            trial = self.core.trials[trial_id]
            if trial_id in self._trial_dirs:
                trial_dir = self._trial_dirs[trial_id]
            else:
                trial_dir = self._trial_dirs[trial_id] = Path(trial.path)
        if isinstance(event, ResultReported):
            assert trial is not None
            self.writer.result(trial_dir, event.result)
        elif isinstance(event, TrialErrored):
            assert trial is not None
            self.writer.error(trial_dir, trial.num_failures, event.ts, event.traceback)
        elif isinstance(event, CheckpointSaved):
            self.writer.checkpoint_recorded()
        elif isinstance(event, CheckpointDeleted):
            assert trial is not None
            self.writer.delete_checkpoint(trial_dir / event.dir_name)
        elif isinstance(event, CheckpointDamaged):
            assert trial is not None
            fallback = trial.checkpoint
            _log.warning(
                "checkpoint is damaged; "
                + (
                    f"restoring the trial from {fallback.path} instead"
                    if fallback is not None
                    else "the trial has no other checkpoint to restore from"
                ),
                trial_id=trial.trial_id,
                damaged=str(trial_dir / event.dir_name),
                reason=event.message,
            )
        elif isinstance(event, TrialCreated):
            assert trial is not None
            self.writer.params(trial_dir, trial.config)
        elif (
            isinstance(event, TrialPaused)
            and event.checkpoint is None
            and not self._warned_pause_without_checkpoint  # once per experiment
        ):
            self._warned_pause_without_checkpoint = True
            _log.warning(
                f"{event.scheduler} paused trial {event.trial_id}, which has no "
                "checkpoint: it will restart from scratch when resumed (its "
                "training_iteration starts over). A function trainable must report "
                "checkpoints (report(..., checkpoint=...)) to be paused and resumed; "
                "this warning is shown once per experiment",
                trial_id=event.trial_id,
                scheduler=event.scheduler,
            )
        if isinstance(event, (TrialCompleted, TrialErrored)) and trial and trial.is_finished:
            self.writer.close_trial(trial_dir)
            del self._trial_dirs[trial.trial_id]  # memory stays flat over many trials

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
            ActorFreed(
                ts=self.clock.time(), trial_id=trial_id, action="killed", reason="time budget"
            )
        )
        self._send_message(
            TrainReturned(
                ts=self.clock.time(), trial_id=trial_id, outcome=TrainOutcome(results=results)
            )
        )

    async def _drain(self, trial_id: str) -> list[dict[str, Any]]:
        with self.clock.move_on_after(_TIME_BUDGET_GRACE_S):
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
            return ActorFreed(
                ts=self.clock.time(), trial_id=trial.trial_id, action=action, reason=reason
            )
        runner = self.pool.runner(trial.trial_id)
        try:
            if isinstance(command, Train):
                outcome = await runner.train(command.budget)
                return TrainReturned(ts=self.clock.time(), trial_id=trial.trial_id, outcome=outcome)
            if isinstance(command, Save):
                saved = await runner.save(command.index)
                if saved.error is not None:
                    return RunnerFailed(
                        ts=self.clock.time(), trial_id=trial.trial_id, error=saved.error
                    )
                return CheckpointSaved(
                    ts=self.clock.time(),
                    trial_id=trial.trial_id,
                    dir_name=saved.dir_name or "",
                    training_iteration=saved.training_iteration,
                    metrics=saved.metrics,
                )
        except WorkerDiedError as exc:
            return await self._runner_died(trial, exc)
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    async def _back_off(self, trial: Trial, delay_s: float) -> bool:
        """Wait before a retry; False when the trial was stopped meanwhile (see ``_step``)."""
        with anyio.CancelScope() as wait:
            self._retry_waits[trial.trial_id] = wait
            try:
                await self.clock.sleep(delay_s)
            finally:
                del self._retry_waits[trial.trial_id]
        return not self.core.stopping(trial.trial_id)

    async def _launch(self, trial: Trial, command: Launch) -> list[Message]:
        if command.delay_s > 0 and not await self._back_off(trial, command.delay_s):
            # Never launched: the core ends the trial (in ERROR, with its last error).
            outcome = TrainOutcome(results=[])
            return [TrainReturned(ts=self.clock.time(), trial_id=trial.trial_id, outcome=outcome)]
        info = TrialInfo(
            trial_id=trial.trial_id,
            trial_name=trial.trial_name,
            trial_dir=trial.path,
            experiment_name=self.experiment_name,
            resources=trial.resources,
            checkpoint_index=trial.next_checkpoint_index,
            signing_key=self.signing_key,
            storage=self.trial_storage,
        )
        failed: ErrorInfo
        watch = _StartWatch()
        watch.timer = self.clock.call_later(
            _START_NOTICE_AFTER_S, lambda: watch.start(self._announce_start(trial, command, watch))
        )
        acquired: tuple[bool, TrainOutcome | None] | Exception
        try:
            acquired = await self.pool.acquire(
                trial,
                info,
                command.checkpoint,
                command.budget,
                after=command.after,
                in_place=command.in_place,
            )
        except Exception as exc:  # handled below, once the watch is stopped
            acquired = exc
        finally:
            watch.stop()
        # The call's messages leave one loop cycle after it returned (shielded: a result in
        # hand is never dropped here), as they did when a task group closed at this point.
        # In virtual time that cycle decides the order of events due at the same instant,
        # and so what a simulated study journals and what its restore replays.
        await anyio.lowlevel.cancel_shielded_checkpoint()
        try:
            if isinstance(acquired, Exception):
                raise acquired
            reused, trained = acquired
        except (InfeasibleResourcesError, NotSerializableError) as exc:  # would recur
            return [
                RunnerFailed(
                    ts=self.clock.time(),
                    trial_id=trial.trial_id,
                    error=ErrorInfo.from_exception(exc),
                    retryable=False,
                )
            ]
        except StartFailed as exc:
            if exc.restore_failed:
                return [
                    RunnerFailed(
                        ts=self.clock.time(),
                        trial_id=trial.trial_id,
                        error=exc.error,
                        restore_failed=True,
                        checkpoint_corrupt=exc.checkpoint_corrupt,
                        checkpoint=command.checkpoint,
                    )
                ]
            failed = exc.error
        except WorkerDiedError as exc:
            return [await self._runner_died(trial, exc)]
        else:
            now = self.clock.time()
            outcome = trained if trained is not None else TrainOutcome(results=[])
            returned = TrainReturned(ts=now, trial_id=trial.trial_id, outcome=outcome)
            if watch.announced:
                return [returned]
            return [_started(trial, command, reused, now), returned]
        return [RunnerFailed(ts=self.clock.time(), trial_id=trial.trial_id, error=failed)]


class _StartWatch:
    """The start notice of one launch call (see ``_START_NOTICE_AFTER_S``).

    Most launch calls return well before the notice is due, so until then the watch is
    only a timer; the announcing task is created when the timer fires with the call still
    running. A task group and a cancelled task for every launch (anyio's ``cancel()``
    also formats the current task for its message) were a sixth of the event loop's
    Python calls in an experiment of one-result trials. The task is a plain asyncio task,
    which :meth:`stop` cancels: a timer callback runs outside any task, where anyio
    cannot start one.
    """

    __slots__ = ("announced", "task", "timer")

    def __init__(self) -> None:
        self.announced = False  # TrialStarted was sent before the call returned
        self.timer: Cancellable | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self, announce: Coroutine[Any, Any, None]) -> None:
        """The timer fired: run ``announce`` in a task of its own."""
        self.task = asyncio.get_running_loop().create_task(announce)
        self.task.add_done_callback(_log_failed_notice)

    def stop(self) -> None:
        """The call returned (or was cancelled): no notice any more."""
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


def _log_failed_notice(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("could not tell that a trial started", error=repr(exc))


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
