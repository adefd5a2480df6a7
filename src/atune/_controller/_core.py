"""The controller's pure core: state + one message in, events and commands out.

``ControllerCore.handle(message)`` is the only way experiment state changes. It reads no
clock and does no I/O: every event it derives copies the time stamp of the message that
caused it, and randomness lives in the seeded searcher. The driver (``_driver.py``) feeds it
messages and carries out its commands; tests feed it messages directly, without Ray.

Messages in are public events observed by the driver (``ExperimentStarted``,
``TrialStarted``, ``CheckpointSaved``, ``ActorFreed``) and two private observations that
need a decision first (:class:`TrainReturned`, :class:`RunnerFailed`). Events out are what
the journal records and users see; every event is applied to the state by
:meth:`ControllerCore._apply`, the same function a journal replay uses.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atune._controller._actions import Action, Exploit, Pause, SchedulerActions, Stop
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
from atune._controller._metric_check import check_metrics
from atune._controller._policy import live_trial_limit, retry_delay
from atune._controller._retention import checkpoints_to_delete
from atune._controller._run import Phase, TrialRun
from atune._controller._trials_view import TrialsView
from atune._flatten import flatten_dict
from atune._gc import collection_paused
from atune._trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, CheckpointRecord, Trial
from atune.errors import MetricError
from atune.events import (
    ActorFreed,
    CallbackStateSaved,
    CheckpointDamaged,
    CheckpointDeleted,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialExploited,
    TrialPaused,
    TrialResumed,
    TrialStarted,
)
from atune.execution._protocol import ErrorInfo, TrainBudget
from atune.execution.placement_groups import PlacementGroupFactory
from atune.schedulers import FIFOScheduler, TrialScheduler
from atune.search import FINISHED, BasicVariantGenerator, SearchAlgorithm
from atune.stopper import DictStopper, Stopper
from atune.storage._layout import parse_checkpoint_name

__all__ = ["ControllerCore", "CorePolicy"]

_BATCH_RESULTS = 256
_BATCH_SECONDS = 0.25
# Bounds a batch's bytes too (see ``TrainBudget.max_bytes``): large results travel a few
# at a time, so neither the driver nor Ray holds a large batch at once.
_BATCH_BYTES = 2 << 20
_UNSAFE_CHARS = re.compile(r"[^\w.=,+-]")
# Stops decided on a result: the runner is alive and the result may still be checkpointed.
_RESULT_STOPS = ("done", "stopper", "scheduler")


@dataclass(frozen=True)
class CorePolicy:
    """Everything the core needs to decide, fixed at the start of ``fit()``."""

    experiment_path: str
    trainable_name: str
    is_function: bool
    resources_for: Callable[[dict[str, Any]], PlacementGroupFactory]
    max_live_trials: int
    """How many trials may be live at once at the start; a :class:`CapacityChanged`
    recomputes it from ``trial_request`` and ``max_concurrent_trials``."""
    max_failures: int = 0
    fail_fast: bool | str = False
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False
    pipeline: bool = False
    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    uid: str = "00000"
    required_metrics: tuple[tuple[str, str], ...] = ()
    """``(metric, who expects it)`` pairs checked on each trial's first result."""
    strict_metric_checking: bool = True
    """False (``TUNE_DISABLE_STRICT_METRIC_CHECKING=1``): a missing metric is allowed."""
    trial_name_creator: Callable[[Trial], str] | None = None
    trial_dirname_creator: Callable[[Trial], str] | None = None
    restore_retries: int = 0
    """Failed checkpoint restores a trial retries before they count as failures
    (``TUNE_RESTORE_RETRY_NUM``)."""
    trial_request: dict[str, int] | None = None
    """One trial's resource request in the allocator's units, for recomputing
    ``max_live_trials`` on a :class:`CapacityChanged`; None: the limit stays fixed."""
    max_concurrent_trials: int | None = None
    """``TuneConfig.max_concurrent_trials``: the live-trial limit never exceeds it."""
    pending_trials: int = 0
    """Trials beyond what the capacity holds that may be live, waiting for a cluster that
    grows on demand (0 on a fixed cluster); part of the recomputed limit."""


class ControllerCore(SchedulerActions):
    """Owns the experiment's state; see the module docstring.

    It is also the ``tune_controller`` that scheduler hooks receive: ``get_trials()``,
    ``get_live_trials()``, ``pause_trial``, ``stop_trial`` and ``exploit_trial``
    (:class:`~atune._controller._actions.SchedulerActions`).
    """

    def __init__(
        self,
        policy: CorePolicy,
        search: SearchAlgorithm,
        *,
        scheduler: TrialScheduler | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        self.policy = policy
        self.search = search
        self.scheduler = scheduler or FIFOScheduler()
        self.stopper = stopper
        self.trials: dict[str, Trial] = {}
        self._trial_list: list[Trial] = []
        self._trials_view = TrialsView(self._trial_list)
        self._runs: dict[str, TrialRun] = {}
        # The trials not known to be finished, in creation order: scans per message stay
        # proportional to the live trials, not to every trial of the experiment.
        self._open: dict[str, Trial] = {}
        self._shared_resources: dict[tuple[str, str], PlacementGroupFactory] = {}
        self.search_finished = False
        self.finished = False
        self.fatal_error: ErrorInfo | None = None
        self._counter = 0
        self.max_live_trials = policy.max_live_trials
        # Pipelining pays only while trials end where their runner sees it too (see
        # ``_ENDS_SEEN_BY_THE_RUNNER``); any other end (a scheduler's stop) leaves a queued
        # launch waiting, so it is switched off.
        self._pipeline_pays = True
        self._to_resume: list[str] = []
        # Scheduler actions recorded during a hook, carried out after it (``_carry_out``).
        self._actions: list[Action] = []
        self._recording = True
        # While ``_carry_out`` runs: a trial it ends leaves the actions its hooks asked for,
        # and the ``_fill`` after them, to that loop (no recursion per trial ended).
        self._carrying_out = False
        self._fill_after_actions = False
        self._deciding: tuple[str, str] | None = None
        # PAUSED trials (in pause order); a pause is resumed by ``choose_trial_to_run``.
        self._paused: dict[str, None] = {}
        # The scheduler's own method (a subclass's, or one set on the instance, as ASHA's
        # promotion variant does) or the default.
        self._default_choice = (
            getattr(self.scheduler.choose_trial_to_run, "__func__", None)
            is TrialScheduler.choose_trial_to_run
        )
        # With a scheduler that chooses (HyperBand, PBT), trials are created ahead of
        # their launch, as Ray Tune's pending trials, so that it sees them (HyperBand
        # fills its brackets at creation): up to 16 with the variant generator, else 1.
        self._unlaunched: dict[str, None] = {}
        self._max_pending = 16 if isinstance(search, BasicVariantGenerator) else 1
        # Checkpoints an exploit assigned: (donor id, dir name) -> the trials assigned it;
        # pinned against retention (``_enforce_retention``) while any of them needs it.
        self._pins: dict[tuple[str, str], set[str]] = {}
        self._pinned_by: dict[str, tuple[str, str]] = {}
        self._assigned_loaded: set[str] = set()  # exploiters started from their assignment
        self._unpinned: list[str] = []  # donors whose pin went, retention to be re-run
        self._to_skip: list[str] = []
        self._events: list[Event] = []
        self._commands: list[Command] = []
        self._batching = (
            self.scheduler.supports_buffered_results
            and not search.needs_intermediate_results
            and (stopper is None or isinstance(stopper, DictStopper))
        )

    # ------------------------------------------------------------------ public API
    def get_trials(self) -> TrialsView:
        """All trials, in creation order (for schedulers and callbacks), read-only.

        The same view every time, of the list kept as trials are created, so that
        handing it to callbacks on every event costs nothing; it cannot be modified.
        """
        return self._trials_view

    def get_live_trials(self) -> list[Trial]:
        """The trials that have not ended (PENDING, RUNNING or PAUSED), in creation order.

        Costs the number of unfinished trials, not of every trial of the experiment.
        """
        return self._unfinished()

    def run_of(self, trial_id: str) -> TrialRun:
        """The core's run record of the trial: its phase, a decided stop, the pipelining
        links (see :mod:`atune._controller._run`). For inspection only: never modify it."""
        return self._run(trial_id)

    def stopping(self, trial_id: str) -> bool:
        """Whether a stop of the trial has been decided (it is not launched again)."""
        return self._run(trial_id).stop_reason is not None

    def _run(self, trial_id: str) -> TrialRun:
        run = self._runs.get(trial_id)
        if run is None:
            run = self._runs[trial_id] = TrialRun()
        return run

    def replay(
        self,
        events: list[Event],
        *,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
    ) -> None:
        """Rebuild the state of an earlier run from its journal (``Tuner.restore``).

        Events are applied exactly as they were live; then each trial is sorted: finished
        trials stay as they are; unfinished ones resume from their latest checkpoint
        (or are marked TERMINATED with reason ``"skipped"`` when ``resume_unfinished`` is
        False); errored ones stay ERROR unless ``resume_errored`` (resume from their latest
        checkpoint) or ``restart_errored`` (start over without a checkpoint). The search
        algorithm's state must be restored by the caller.
        """
        self.apply_journal(events)
        self._counter = len(self.trials)
        # Nothing of the earlier run's bookkeeping carries over: every trial starts from a
        # fresh run record, ENDED when it stays finished, PENDING when it is launched again.
        self._runs = {}
        for trial in self.trials.values():
            if trial.status == ERROR:
                if resume_errored or restart_errored:
                    if restart_errored:
                        trial.checkpoints = []
                        trial.last_result = {}
                    trial.status = PENDING
                    trial.error = None
                    trial.pending_error = None
                    trial.failure_streak = 0
                    self._to_resume.append(trial.trial_id)
            elif trial.status == PAUSED and resume_unfinished:
                # It stays PAUSED: ``choose_trial_to_run`` resumes it, as it would have.
                self._run(trial.trial_id).phase = Phase.PAUSED
                self._paused[trial.trial_id] = None
            elif (
                trial.status == PENDING
                and resume_unfinished
                and not self._default_choice
                and not trial.num_results
                and trial.restore_checkpoint is None
            ):
                self._unlaunched[trial.trial_id] = None  # never ran: started when chosen
            elif trial.status != TERMINATED:
                trial.status = PENDING
                target = self._to_resume if resume_unfinished else self._to_skip
                target.append(trial.trial_id)
            if trial.is_finished:
                self._run(trial.trial_id).phase = Phase.ENDED
        self._open = {t.trial_id: t for t in self.trials.values() if not t.is_finished}

    def apply_journal(self, events: list[Event]) -> None:
        """Rebuild the recorded state from journaled events, deciding nothing.

        Each event goes through :meth:`_apply`, exactly as it did live, so the trials end
        up as the run that wrote the journal last knew them: a trial still running there
        is RUNNING here, with its last journaled result. :meth:`replay` builds on this to
        resume a run; reading past results (``atune.load_results``) uses it alone.
        """
        with collection_paused():
            for event in events:
                self._apply(event)
        self._unpinned.clear()  # retention was decided live, and journaled

    def handle(self, message: Message) -> tuple[list[Event], list[Command]]:
        """Process one message; return the events it produced and the commands to run."""
        self._events, self._commands = [], []
        if isinstance(message, ExperimentStarted):
            self._emit(message)
            self._resume(message.ts)
            self._fill(message.ts)
        elif isinstance(message, TrialStarted):
            self._on_started(message)
        elif isinstance(message, TrainReturned):
            self._on_train_returned(message)
        elif isinstance(message, CheckpointSaved):
            self._on_checkpoint(message)
        elif isinstance(message, RunnerFailed):
            trial = self.trials[message.trial_id]
            if not self._on_restore_failure(message, trial):
                self._on_failure(message.ts, trial, message.error, message.retryable)
        elif isinstance(message, ActorFreed):
            self._emit(message)
            run = self._run(message.trial_id)
            run.holds_runner = False
            if run.phase is Phase.RELEASING:
                run.phase = Phase.ENDED
            self._fill(message.ts)
        elif isinstance(message, StopAll):
            self._stop_all(message.ts, message.reason)
        elif isinstance(message, CapacityChanged):
            self._on_capacity(message)
        else:  # pragma: no cover - other events are only produced here
            raise TypeError(f"unexpected message {message!r}")
        ts = getattr(message, "ts", 0.0)
        self._carry_out(ts)
        if self._paused:
            # A decision of this step may have marked paused trials to resume (HyperBand
            # unpauses the good ones of a bracket on another trial's result).
            self._fill(ts)
        self._maybe_finish(ts)
        return self._events, self._commands

    # --------------------------------------------------------------- state changes
    def _emit(self, event: Event) -> None:
        self._apply(event)
        self._events.append(event)
        if self._unpinned:  # an exploiter no longer needs a donor's checkpoint
            donors, self._unpinned = self._unpinned, []
            for donor_id in donors:
                self._enforce_retention(event.ts, self.trials[donor_id])

    def _apply(self, event: Event) -> None:
        """Apply one event to the state (live runs and journal replay alike)."""
        if isinstance(event, TrialCreated):
            trial = Trial(
                trial_id=event.trial_id,
                trial_name=event.trial_name,
                dirname=event.dirname,
                config=event.config,
                experiment_tag=event.experiment_tag,
                resources=self._resources_of(event),
                experiment_path=self.policy.experiment_path,
                index=len(self.trials),
            )
            self.trials[trial.trial_id] = trial
            self._trial_list.append(trial)
            self._open[trial.trial_id] = trial
            return
        if isinstance(
            event,
            (
                ExperimentStarted,
                ExperimentFinished,
                SearcherStateSaved,
                SchedulerStateSaved,
                CallbackStateSaved,
            ),
        ):
            return
        trial = self.trials[event.trial_id]
        if isinstance(event, TrialStarted):
            trial.status = RUNNING
            trial.attempt = event.attempt
            assigned = trial.assigned_checkpoint
            if assigned is not None and event.restored_from == os.path.basename(assigned):
                self._assigned_loaded.add(trial.trial_id)  # it loaded what it was assigned
        elif isinstance(event, ResultReported):
            trial.last_result = event.result
            trial.num_results += 1
            trial.pending_error = None  # the retry made progress: no longer failing
            trial.failure_streak = 0
        elif isinstance(event, CheckpointSaved):
            if trial.trial_id in self._assigned_loaded:
                self._unassign(trial)  # its own checkpoint now supersedes the assigned one
            trial.checkpoints.append(
                CheckpointRecord(event.dir_name, event.training_iteration, event.metrics)
            )
            index = parse_checkpoint_name(os.path.basename(event.dir_name))
            if index is not None:
                trial.next_checkpoint_index = max(trial.next_checkpoint_index, index + 1)
        elif isinstance(event, (CheckpointDeleted, CheckpointDamaged)):
            trial.checkpoints = [c for c in trial.checkpoints if c.dir_name != event.dir_name]
        elif isinstance(event, TrialPaused):
            trial.status = PAUSED
        elif isinstance(event, TrialResumed):
            trial.status = PENDING
        elif isinstance(event, TrialExploited):
            self._unassign(trial)
            trial.config = event.config
            if event.experiment_tag is not None:
                trial.experiment_tag = event.experiment_tag
            donor = self.trials[event.donor_id]
            trial.assigned_checkpoint = os.path.join(donor.dirname, event.dir_name)
            key = (event.donor_id, event.dir_name)
            self._pins.setdefault(key, set()).add(trial.trial_id)
            self._pinned_by[trial.trial_id] = key
        elif isinstance(event, TrialCompleted):
            self._unassign(trial)
            trial.status = TERMINATED
            trial.end_reason = event.reason
            if trial.pending_error is not None and event.reason != "returned":
                # Stopped while failing (a retry that never reported): not a success.
                trial.status = ERROR
                trial.error = trial.pending_error
            trial.pending_error = None
            if trial.last_result:
                trial.last_result = _final_result(trial)
        elif isinstance(event, TrialErrored):
            if event.counted:
                trial.num_failures += 1
                trial.failure_streak += 1
            else:
                trial.restore_failures += 1
            if event.will_retry:
                trial.status = PENDING
                trial.attempt = event.attempt + 1
                trial.pending_error = ErrorInfo(
                    type_name=event.error_type, message=event.message, traceback=event.traceback
                )
            else:
                self._unassign(trial)
                trial.pending_error = None
                trial.status = ERROR
                trial.error = ErrorInfo(
                    type_name=event.error_type, message=event.message, traceback=event.traceback
                )

    def _unassign(self, trial: Trial) -> None:
        """Drop the trial's assigned checkpoint, and the donor's pin with it."""
        trial.assigned_checkpoint = None
        self._assigned_loaded.discard(trial.trial_id)
        key = self._pinned_by.pop(trial.trial_id, None)
        if key is None:
            return
        holders = self._pins[key]
        holders.discard(trial.trial_id)
        if not holders:
            del self._pins[key]
            self._unpinned.append(key[0])

    def _resources_of(self, event: TrialCreated) -> PlacementGroupFactory:
        """The trial's request: one shared object per distinct request (they are immutable)."""
        key = (repr(event.resources), event.strategy)
        resources = self._shared_resources.get(key)
        if resources is None:
            resources = PlacementGroupFactory(event.resources, strategy=event.strategy)
            self._shared_resources[key] = resources
        return resources

    def _unfinished(self) -> list[Trial]:
        """The trials not finished, in creation order (finished ones are dropped here)."""
        finished = [trial_id for trial_id, t in self._open.items() if t.is_finished]
        for trial_id in finished:
            del self._open[trial_id]
        return list(self._open.values())

    # --------------------------------------------------------------------- handlers
    def _live(self) -> int:
        """Trials that count against the live-trial limit.

        Not a launch queued on another trial's runner (pipelining), not a PAUSED trial
        whose runner is freed (a paused trial still releasing its runner counts until its
        ``ActorFreed``, so the limit is never exceeded).
        """
        live = 0
        for trial in self._unfinished():
            run = self._run(trial.trial_id)
            if run.queued_on or (run.phase is Phase.PAUSED and not run.holds_runner):
                continue
            if trial.trial_id in self._unlaunched:
                continue
            live += 1
        return live

    def _fill(self, ts: float) -> None:
        """Start trials while there is room: paused ones the scheduler chooses, new ones.

        With a scheduler of its own ``choose_trial_to_run`` (HyperBand, PBT) its choice
        among the PAUSED trials goes first. With the default (Ray Tune's FIFO rule: the
        first PENDING trial, else the first PAUSED one) new trials come first and paused
        ones resume, in creation order, once the search has none to give.
        """
        while True:
            room = self._live() < self.max_live_trials
            if not self._default_choice:
                while (
                    not self.search_finished
                    and len(self._unlaunched) < self._max_pending
                    and self._create(ts, None, launch=False)
                ):
                    pass
                chosen = self._choose() if room else None
                if chosen is None:
                    break
                self._start_chosen(ts, chosen)
                continue
            if not self.search_finished:
                host = None if room else self._pipeline_host()
                if (room or host is not None) and self._create(ts, host):
                    continue
            if room and self._paused and self._default_choice:
                chosen = self._choose()
                if chosen is not None:
                    self._resume_paused(ts, chosen)
                    continue
            break
        if self._paused:
            self._check_stuck(ts)

    def _choose(self) -> Trial | None:
        """The paused trial to resume now (None: none may, or none is ready)."""
        if self._default_choice:
            ready = [
                self.trials[trial_id]
                for trial_id in self._paused
                if not self._run(trial_id).holds_runner
            ]
            return min(ready, key=lambda t: t.index) if ready else None
        chosen = self.scheduler.choose_trial_to_run(self)
        if chosen is not None:
            trial_id = chosen.trial_id
            if trial_id in self._unlaunched:
                return chosen
            # A paused trial whose runner is still being released is resumed on its
            # ``ActorFreed``.
            if trial_id in self._paused and not self._run(trial_id).holds_runner:
                return chosen
        # No choice, or one that needs no start (a trial already launching: its status
        # is PENDING until it starts): trials not launched yet start in creation order,
        # as Ray Tune starts its pending trials; paused ones wait for the scheduler.
        for trial_id in self._unlaunched:
            return self.trials[trial_id]
        return None

    def _start_chosen(self, ts: float, trial: Trial) -> None:
        if trial.trial_id not in self._unlaunched:
            self._resume_paused(ts, trial)
            return
        del self._unlaunched[trial.trial_id]
        self._run(trial.trial_id).phase = Phase.LAUNCHING
        self._commands.append(Launch(trial_id=trial.trial_id, budget=self._budget()))

    def _check_stuck(self, ts: float) -> None:
        """Fail the experiment when only paused trials are left and none is chosen.

        Waiting could never end (Ray Tune hangs here: "There are paused trials, but no
        more pending trials with sufficient resources"), so the experiment fails with an
        error naming the scheduler and the trials.
        """
        if self.finished or self.fatal_error is not None:
            return
        unfinished = self._unfinished()
        for trial in unfinished:
            run = self._run(trial.trial_id)
            if run.phase is not Phase.PAUSED or run.holds_runner or run.stop_reason:
                return
        names = ", ".join(t.trial_id for t in unfinished)
        self.fatal_error = ErrorInfo(
            type_name="atune.errors.TuneError",
            message=f"{type(self.scheduler).__name__} left {len(unfinished)} trial(s) "
            f"paused ({names}) with nothing running, and its choose_trial_to_run() chose "
            "none of them to resume: the experiment could never finish",
            traceback="",
        )
        self.search_finished = True
        self._stop_all(ts, "scheduler")

    def _resume_paused(self, ts: float, trial: Trial) -> None:
        """Launch a paused trial again, from its checkpoint (none: from scratch)."""
        del self._paused[trial.trial_id]
        checkpoint = trial.restore_checkpoint
        self._emit(
            TrialResumed(ts=ts, trial_id=trial.trial_id, checkpoint=_relative(trial, checkpoint))
        )
        self._run(trial.trial_id).phase = Phase.LAUNCHING
        self._commands.append(
            Launch(
                trial_id=trial.trial_id,
                budget=self._budget(),
                checkpoint=checkpoint.path if checkpoint else None,
            )
        )

    def _create(self, ts: float, host: Trial | None, *, launch: bool = True) -> bool:
        """Create and launch the search's next trial (queued behind ``host`` if set);
        False when the search has none to give now. Without ``launch`` it waits, PENDING,
        for the scheduler's ``choose_trial_to_run``."""
        trial_id = f"{self.policy.uid}_{self._counter:05d}"
        suggestion = self.search.next_trial(trial_id)
        if suggestion is FINISHED or suggestion == FINISHED:
            self.search_finished = True
            return False
        if suggestion is None:
            return False
        self._counter += 1
        config = suggestion.config  # type: ignore[union-attr]
        tag = suggestion.experiment_tag  # type: ignore[union-attr]
        resources = self.policy.resources_for(config)
        name, dirname = self._names(trial_id, config, tag, resources)
        self._emit(
            TrialCreated(
                ts=ts,
                trial_id=trial_id,
                trial_name=name,
                dirname=dirname,
                config=config,
                experiment_tag=tag,
                resources=resources.bundles,
                strategy=resources.strategy,
            )
        )
        trial = self.trials[trial_id]
        run = self._run(trial_id)
        self.scheduler.on_trial_add(self, trial)
        if not launch:
            self._unlaunched[trial_id] = None  # phase PENDING
            self._carry_out(ts)
            return True
        run.phase = Phase.LAUNCHING
        if host is not None:
            self._run(host.trial_id).successor = trial_id
            run.queued_on = host.trial_id
        self._commands.append(
            Launch(
                trial_id=trial_id,
                budget=self._budget(),
                after=None if host is None else host.trial_id,
            )
        )
        self._carry_out(ts)
        return True

    def _on_capacity(self, message: CapacityChanged) -> None:
        """Recompute the live-trial limit for the new capacity; fill up to it."""
        request = self.policy.trial_request
        if request is None:
            return
        self.max_live_trials = live_trial_limit(
            message.capacity,
            request,
            self.policy.max_concurrent_trials,
            self.policy.pending_trials,
        )
        self._fill(message.ts)

    def _pipeline_host(self) -> Trial | None:
        """A running trial whose runner may take the next trial right after it (or None).

        Pipelining applies to reused runners with batched results (see
        ``CorePolicy.pipeline``): a trial is queued behind each running one, at most one.
        The runner lets the queued launch in once the running trial has ended there: its
        function returned, or a result ended it (``done``, a dict stopper's criterion).
        """
        # A checkpoint taken at a trial's end would find the runner switched already.
        if not (self.policy.pipeline and self._batching) or self.policy.checkpoint_at_end:
            return None
        if not self._pipeline_pays:
            return None
        for trial in self._unfinished():
            run = self._run(trial.trial_id)
            if (
                run.busy
                and run.stop_reason is None
                and run.successor is None
                and run.queued_on is None
            ):
                return trial
        return None

    def _resume(self, ts: float) -> None:
        """Relaunch the trials a journal replay left to resume; close the skipped ones."""
        for trial_id in self._to_skip:
            self._emit(TrialCompleted(ts=ts, trial_id=trial_id, reason="skipped"))
            self._run(trial_id).phase = Phase.ENDED
        for trial_id in self._to_resume:
            trial = self.trials[trial_id]
            self._run(trial_id).phase = Phase.LAUNCHING
            checkpoint = trial.restore_checkpoint
            self._commands.append(
                Launch(
                    trial_id=trial_id,
                    budget=self._budget(),
                    checkpoint=checkpoint.path if checkpoint else None,
                )
            )
        self._to_resume, self._to_skip = [], []

    def _names(
        self, trial_id: str, config: dict[str, Any], tag: str, resources: PlacementGroupFactory
    ) -> tuple[str, str]:
        name = f"{self.policy.trainable_name}_{trial_id}"
        probe = Trial(trial_id, name, "", config, tag, resources, self.policy.experiment_path)
        if self.policy.trial_name_creator is not None:
            name = str(self.policy.trial_name_creator(probe))
            probe.trial_name = name
        if self.policy.trial_dirname_creator is not None:
            dirname = str(self.policy.trial_dirname_creator(probe))
        else:
            # Short, bounded names: Ray Tune's embed every parameter and overflow path limits.
            dirname = f"{name}_{tag}"[:100]
        return name, _UNSAFE_CHARS.sub("_", dirname).strip("._") or trial_id

    def _on_started(self, event: TrialStarted) -> None:
        # The launch trains in the same call, so the trial stays busy until that
        # ``TrainReturned`` arrives; a stop decided meanwhile is carried out then.
        self._emit(event)
        run = self._run(event.trial_id)
        run.holds_runner = True
        run.queued_on = None
        if self._paused:  # the scheduler may have waited for this trial to start
            self._fill(event.ts)

    def _on_train_returned(self, message: TrainReturned) -> None:
        trial = self.trials[message.trial_id]
        run = self._run(trial.trial_id)
        outcome = message.outcome
        # Still busy while its results are processed: an experiment-wide stop decided on
        # one of them marks this trial, which then ends below, after its own outcome.
        # Results produced before an external stop (time budget, stop_all) was carried out
        # are all kept; a stop decided on one of these results ends the batch there.
        for result in outcome.results:
            if trial.num_results == 0 and self.policy.required_metrics:
                problem = check_metrics(
                    trial.trial_id,
                    result,
                    self.policy.required_metrics,
                    strict=self.policy.strict_metric_checking,
                )
                if problem is not None:
                    self._on_failure(message.ts, trial, problem, False)
                    return
            if self._on_result(message.ts, trial, result):
                break
        if trial.is_finished:
            return
        run.phase = Phase.IDLE
        if outcome.error is not None and run.stop_reason is None:
            self._on_failure(message.ts, trial, outcome.error, True)
        elif outcome.returned and run.stop_reason is None:
            self._complete(message.ts, trial, "returned")
        else:
            self._next_step(message.ts, trial)

    def _on_result(self, ts: float, trial: Trial, result: dict[str, Any]) -> bool:
        """Process one result; True when it decided that the trial stops here."""
        flat = flatten_dict(result)
        # As in Ray Tune, the stopper sees every result, unflattened, even one with done=True.
        stopped = self.stopper is not None and self.stopper(trial.trial_id, result)
        reason: str | None = None
        decision = TrialScheduler.CONTINUE
        if result.get("done"):
            reason = "done"
        elif stopped:
            reason = "stopper"
        else:
            carried = result.get("checkpoint_dir_name")
            self._deciding = (trial.trial_id, carried) if carried else None
            try:
                decision = self.scheduler.on_trial_result(self, trial, flat)
            except MetricError as exc:  # a result the scheduler cannot score (PBT, PB2)
                self._on_failure(ts, trial, ErrorInfo.from_exception(exc), False)
                return True
            finally:
                self._deciding = None
            if decision == TrialScheduler.STOP:
                reason = "scheduler"
        run = self._run(trial.trial_id)
        if reason is None:
            self.search.on_trial_result(trial.trial_id, flat)
            if decision == TrialScheduler.PAUSE and run.stop_reason is None:
                run.pausing = True
        else:
            result["done"] = True
            if run.stop_reason is None:  # an earlier (external) stop keeps its reason
                run.stop_reason = reason
        self._emit(ResultReported(ts=ts, trial_id=trial.trial_id, result=result))
        dir_name = result.get("checkpoint_dir_name")
        if dir_name:
            self._emit(
                CheckpointSaved(
                    ts=ts,
                    trial_id=trial.trial_id,
                    dir_name=dir_name,
                    training_iteration=int(result.get("training_iteration", 0)),
                    metrics=result,
                )
            )
            # A function trainable's checkpoint is committed with its result: retention
            # applies here as it does to a class trainable's save (``_on_checkpoint``).
            self._enforce_retention(ts, trial)
        # What the scheduler asked for from the hook (this trial's own pause or exploit
        # included) takes effect now, after the result it was decided on.
        self._carry_out(ts)
        if self.stopper is not None and self.stopper.stop_all():
            self._stop_all(ts, "stop_all")
        return reason is not None

    def _on_checkpoint(self, event: CheckpointSaved) -> None:
        self._emit(event)
        trial = self.trials[event.trial_id]
        self._enforce_retention(event.ts, trial)
        run = self._run(trial.trial_id)
        run.phase = Phase.IDLE
        if run.stop_reason is not None:
            self._complete(event.ts, trial, run.stop_reason)
        else:
            self._next_step(event.ts, trial)

    def _enforce_retention(self, ts: float, trial: Trial) -> None:
        """Delete checkpoints beyond ``num_to_keep`` (:mod:`._retention`'s rule).

        A checkpoint an exploit assigned to another trial stays until it is loaded and
        superseded (Ray Tune deletes it too early: PBT then restores nothing).
        """
        keep = self.policy.num_to_keep
        if keep is None or len(trial.checkpoints) <= keep:
            return
        pinned = {name for trial_id, name in self._pins if trial_id == trial.trial_id}
        for record in checkpoints_to_delete(
            trial.checkpoints,
            keep,
            self.policy.checkpoint_score_attribute,
            self.policy.checkpoint_score_order,
            pinned,
        ):
            self._emit(CheckpointDeleted(ts=ts, trial_id=trial.trial_id, dir_name=record.dir_name))

    def _next_step(self, ts: float, trial: Trial) -> None:
        """Decide what a started, idle trial does next."""
        run = self._run(trial.trial_id)
        if run.stop_reason is not None:
            # Ray Tune takes a due checkpoint even from the result that stops the trial.
            due = run.stop_reason in _RESULT_STOPS and self._checkpoint_due(trial)
            if run.holds_runner and (due or self._wants_final_checkpoint(trial)):
                self._save(trial)
            else:
                self._complete(ts, trial, run.stop_reason)
            return
        if run.pausing:
            if (
                run.pause_save
                and not run.relaunch
                and run.holds_runner
                and not self.policy.is_function
                and trial.last_result
                and not self._last_checkpointed(trial)
            ):
                self._save(trial)  # back here on its ``CheckpointSaved``
            else:
                self._pause(ts, trial)
            return
        if run.relaunch:
            self._relaunch_exploited(trial)
            return
        if self._checkpoint_due(trial):
            self._save(trial)
            return
        run.phase = Phase.TRAINING
        self._commands.append(Train(trial_id=trial.trial_id, budget=self._budget()))

    def _budget(self) -> TrainBudget:
        if not self._batching:
            return TrainBudget(max_results=1)
        criteria = self.stopper.criteria if isinstance(self.stopper, DictStopper) else None
        freq = 0 if self.policy.is_function else self.policy.checkpoint_frequency
        return TrainBudget(
            max_results=_BATCH_RESULTS,
            max_seconds=_BATCH_SECONDS,
            stop_criteria=criteria,
            checkpoint_frequency=freq,
            max_bytes=_BATCH_BYTES,
        )

    def _last_checkpointed(self, trial: Trial) -> bool:
        iteration = trial.last_result.get("training_iteration")
        return bool(trial.checkpoints) and trial.checkpoints[-1].training_iteration == iteration

    def _checkpoint_due(self, trial: Trial) -> bool:
        if self.policy.is_function or not trial.last_result or self._last_checkpointed(trial):
            return False
        if trial.last_result.get("should_checkpoint"):
            return True
        freq = self.policy.checkpoint_frequency
        return bool(freq) and trial.last_result.get("training_iteration", 0) % freq == 0

    def _wants_final_checkpoint(self, trial: Trial) -> bool:
        return (
            not self.policy.is_function
            and self.policy.checkpoint_at_end
            and self._run(trial.trial_id).stop_reason in _RESULT_STOPS
            and bool(trial.last_result)
            and not self._last_checkpointed(trial)
        )

    def _save(self, trial: Trial) -> None:
        self._run(trial.trial_id).phase = Phase.SAVING
        self._commands.append(Save(trial_id=trial.trial_id, index=trial.next_checkpoint_index))
        trial.next_checkpoint_index += 1

    def _hand_over(self, trial: Trial) -> None:
        """The trial's runner is leaving it: a trial queued on it now counts as live."""
        run = self._run(trial.trial_id)
        if run.successor is not None:
            self._run(run.successor).queued_on = None
            run.successor = None
        run.queued_on = None

    def _complete(self, ts: float, trial: Trial, reason: Any) -> None:
        if reason not in _ENDS_SEEN_BY_THE_RUNNER:
            self._pipeline_pays = False
        self._hand_over(trial)
        run = self._run(trial.trial_id)
        waiting = run.phase in (Phase.PAUSED, Phase.PENDING)  # not running: removed
        self._paused.pop(trial.trial_id, None)
        self._unlaunched.pop(trial.trial_id, None)
        self._emit(TrialCompleted(ts=ts, trial_id=trial.trial_id, reason=reason))
        if trial.status == ERROR:  # stopped while failing: see ``Trial.pending_error``
            self.scheduler.on_trial_error(self, trial)
            self.search.on_trial_complete(trial.trial_id, None, error=True)
        else:
            flat = flatten_dict(trial.last_result)
            if waiting:
                self.scheduler.on_trial_remove(self, trial)
            else:
                self.scheduler.on_trial_complete(self, trial, flat)
            self.search.on_trial_complete(trial.trial_id, flat)
        if run.holds_runner and run.phase is not Phase.PAUSED:
            self._commands.append(Release(trial_id=trial.trial_id))
        # A paused trial still releasing its runner ends with that ``ActorFreed``.
        run.phase = Phase.RELEASING if run.holds_runner else Phase.ENDED
        if self._carrying_out:
            # Stopped by ``_carry_out``: its loop carries out what the hooks asked, then
            # fills, in the same order as a nested call would (which recursed twice per
            # trial: a scheduler stopping hundreds at once passed the recursion limit).
            self._fill_after_actions = True
            return
        self._carry_out(ts)
        self._fill(ts)

    def _on_restore_failure(self, message: RunnerFailed, trial: Trial) -> bool:
        """A launch failed restoring its checkpoint; False when that is a plain failure.

        A damaged checkpoint (gone, or atune's files in it unreadable) is dropped with a
        ``CheckpointDamaged`` and the trial relaunches from its newest remaining
        checkpoint, which costs no failure; with none left, the trial fails for good,
        naming the damaged path. A restore that raised otherwise (the user's
        ``load_checkpoint``) is retried from the same checkpoint without counting against
        ``max_failures`` up to ``restore_retries`` times (Ray Tune's
        ``TUNE_RESTORE_RETRY_NUM``); after that it is a failure like any other.
        """
        if not message.restore_failed or message.checkpoint is None:
            return False
        if self._run(trial.trial_id).stop_reason is not None:
            return False
        dir_name = os.path.basename(message.checkpoint)  # a string operation, no I/O
        error = message.error
        if message.checkpoint_corrupt and any(c.dir_name == dir_name for c in trial.checkpoints):
            self._emit(
                CheckpointDamaged(
                    ts=message.ts, trial_id=trial.trial_id, dir_name=dir_name, message=error.message
                )
            )
            if trial.checkpoints:
                self._relaunch(trial)
            else:
                final = ErrorInfo(
                    type_name=error.type_name,
                    message=f"trial {trial.trial_id} has no intact checkpoint left to restore "
                    f"from: {error.message}",
                    traceback=error.traceback,
                    payload=error.payload,
                )
                self._on_failure(message.ts, trial, final, retryable=False)
            return True
        if trial.restore_failures >= self.policy.restore_retries:
            return False
        self._hand_over(trial)
        self._emit_error(message.ts, trial, error, will_retry=True, counted=False)
        self._relaunch(trial)
        return True

    def _relaunch(self, trial: Trial) -> None:
        """Launch the trial again from its latest checkpoint (none: from scratch)."""
        self._run(trial.trial_id).phase = Phase.LAUNCHING
        checkpoint = trial.restore_checkpoint
        self._commands.append(
            Launch(
                trial_id=trial.trial_id,
                budget=self._budget(),
                checkpoint=checkpoint.path if checkpoint else None,
            )
        )

    def _emit_error(
        self, ts: float, trial: Trial, error: ErrorInfo, *, will_retry: bool, counted: bool = True
    ) -> None:
        self._emit(
            TrialErrored(
                ts=ts,
                trial_id=trial.trial_id,
                error_type=error.type_name,
                message=error.message,
                traceback=error.traceback,
                attempt=trial.attempt,
                will_retry=will_retry,
                counted=counted,
            )
        )

    def _on_failure(self, ts: float, trial: Trial, error: ErrorInfo, retryable: bool) -> None:
        self._hand_over(trial)
        run = self._run(trial.trial_id)
        run.phase = Phase.IDLE
        run.pausing = run.relaunch = False  # a retry resumes from its checkpoint anyway
        max_failures = self.policy.max_failures
        will_retry = (
            retryable
            and run.stop_reason is None
            and (max_failures < 0 or trial.num_failures + 1 <= max_failures)
        )
        self._emit_error(ts, trial, error, will_retry=will_retry)
        if run.holds_runner:
            # The driver runs a trial's commands of one step in order: the kill (and its
            # ActorFreed) happens before a retry's Launch.
            self._commands.append(Release(trial_id=trial.trial_id, kill=True))
        if will_retry:
            trial.pending_error = error  # with the pickled original, as ``error`` below
        else:
            trial.error = error  # with the pickled original, to rebuild its type in results
        self.scheduler.on_trial_error(self, trial)
        if will_retry:
            self.scheduler.on_trial_add(self, trial)  # Ray Tune re-adds a requeued trial
            self._carry_out(ts)
            run.phase = Phase.LAUNCHING
            checkpoint = trial.restore_checkpoint
            self._commands.append(
                Launch(
                    trial_id=trial.trial_id,
                    budget=self._budget(),
                    checkpoint=checkpoint.path if checkpoint else None,
                    delay_s=retry_delay(trial.failure_streak),
                )
            )
            return
        run.phase = Phase.RELEASING if run.holds_runner else Phase.ENDED
        self.search.on_trial_complete(trial.trial_id, None, error=True)
        if self.policy.fail_fast:
            if self.policy.fail_fast == "raise":
                self.fatal_error = error
            self._stop_all(ts, "fail_fast")
        else:
            self._fill(ts)

    # ------------------------------------------------------------ scheduler actions
    def _carry_out(self, ts: float) -> None:
        """Carry out what the scheduler asked for in its hooks, in order (see ``_actions``).

        One loop: a trial it ends (``_complete``) appends the actions of its hooks to the
        queue, and the ``_fill`` that follows them runs once the queue is empty.
        """
        if self._carrying_out:
            return
        self._carrying_out = True
        try:
            self._carry_out_queue(ts)
        finally:
            self._carrying_out = False
        if self._fill_after_actions:
            self._fill_after_actions = False
            self._fill(ts)

    def _carry_out_queue(self, ts: float) -> None:
        while self._actions:
            action = self._actions.pop(0)
            trial = self.trials.get(action.trial_id)
            if trial is None or trial.is_finished:
                continue
            run = self._run(trial.trial_id)
            waiting = run.phase in (Phase.PAUSED, Phase.PENDING)
            if isinstance(action, Stop):
                if run.stop_reason is None:
                    run.stop_reason = "scheduler"
                if waiting:
                    self._complete(ts, trial, "scheduler")
            elif isinstance(action, Pause):
                if waiting or run.stop_reason is not None:
                    continue
                run.pausing = True
                run.pause_save = run.pause_save and action.checkpoint
            elif isinstance(action, Exploit):
                self._emit(
                    TrialExploited(
                        ts=ts,
                        trial_id=trial.trial_id,
                        donor_id=action.donor_id,
                        dir_name=action.dir_name,
                        config=action.config,
                        experiment_tag=action.experiment_tag,
                    )
                )
                if not waiting:
                    run.relaunch = True

    def _pause(self, ts: float, trial: Trial) -> None:
        """Pause an idle trial: journal it, let go of its runner, start what may start."""
        run = self._run(trial.trial_id)
        run.pausing = run.relaunch = False
        run.pause_save = True
        self._pipeline_pays = False  # its runner did not see it end
        self._hand_over(trial)
        self._emit(
            TrialPaused(
                ts=ts,
                trial_id=trial.trial_id,
                checkpoint=_relative(trial, trial.restore_checkpoint),
                scheduler=type(self.scheduler).__name__,
            )
        )
        run.phase = Phase.PAUSED
        self._paused[trial.trial_id] = None
        if run.holds_runner:
            self._commands.append(Release(trial_id=trial.trial_id))
        self._fill(ts)

    def _relaunch_exploited(self, trial: Trial) -> None:
        """Launch an exploited trial again, from its assigned checkpoint, on its runner."""
        run = self._run(trial.trial_id)
        run.relaunch = False
        self._pipeline_pays = False
        self._hand_over(trial)
        run.phase = Phase.LAUNCHING
        checkpoint = trial.restore_checkpoint
        self._commands.append(
            Launch(
                trial_id=trial.trial_id,
                budget=self._budget(),
                checkpoint=checkpoint.path if checkpoint else None,
                in_place=run.holds_runner,
            )
        )

    def _stop_all(self, ts: float, reason: Any) -> None:
        """End every live trial: idle ones now, busy ones when their call returns."""
        self.search_finished = True
        unfinished = self._unfinished()
        for trial in unfinished:
            run = self._run(trial.trial_id)
            if run.stop_reason is None:
                run.stop_reason = reason
        for trial in unfinished:
            if trial.is_finished:  # completed by an earlier iteration's side effects
                continue
            run = self._run(trial.trial_id)
            if not run.busy:
                self._complete(ts, trial, reason)

    def _maybe_finish(self, ts: float) -> None:
        if self.finished or not self.search_finished:
            return
        # Every trial ENDED: finished, no call outstanding, no runner held.
        if any(not t.is_finished for t in self._open.values()):
            return
        if any(run.phase is not Phase.ENDED for run in self._runs.values()):
            return
        self.finished = True
        errors = sum(1 for t in self.trials.values() if t.status == ERROR)
        self._emit(ExperimentFinished(ts=ts, num_trials=len(self.trials), num_errors=errors))
        self._commands.append(Finish())


_ENDS_SEEN_BY_THE_RUNNER = frozenset({"returned", "done", "stopper"})
"""Reasons a trial ends that its runner saw itself, so a launch queued on it goes ahead.

The runner evaluates ``done`` and the dict stopper's criteria on every result (see
``TrainBudget``); only a ``stopper`` that is a ``DictStopper`` allows pipelining at all.
"""


def _relative(trial: Trial, checkpoint: Any) -> str | None:
    """``checkpoint`` (the trial's restore checkpoint) relative to the experiment dir."""
    if checkpoint is None:
        return None
    if trial.assigned_checkpoint is not None:
        return trial.assigned_checkpoint
    return os.path.join(trial.dirname, trial.checkpoints[-1].dir_name)


def _final_result(trial: Trial) -> dict[str, Any]:
    """The trial's last result marked ``done``, compacted for the rest of the run.

    Every finished trial keeps its last result for the result grid, so it is kept small:
    its keys are interned (every trial reports the same names) and a ``config`` equal to
    the trial's own is that same object.
    """
    result = {
        (sys.intern(key) if type(key) is str else key): value
        for key, value in trial.last_result.items()
    }
    result["done"] = True
    if _equal(result.get("config"), trial.config):
        result["config"] = trial.config
    return result


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` when that is a plain truth (arrays compare elementwise, or raise)."""
    try:
        return (a == b) is True
    except Exception:
        return False
