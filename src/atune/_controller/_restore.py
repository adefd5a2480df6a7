"""Continuing an experiment from its journal (``Tuner.restore``).

``Tuner.restore`` reads the journal and builds a :class:`RestorePlan`; ``fit()`` re-reads
the journal under the experiment's lock (:func:`reread_journal`, which also cuts off a
torn last line), rebuilds the core from it (:func:`replay`) and squares the rebuilt state
with what is on disk (:func:`reconcile_disk`) before the driver starts.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atune._controller._core import ControllerCore
from atune._flatten import flatten_dict
from atune.events import (
    Event,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialPaused,
    TrialStarted,
)
from atune.schedulers import TrialScheduler
from atune.search import SearchAlgorithm
from atune.storage._layout import RESULT_FILE, is_staging_name, parse_checkpoint_name
from atune.storage._trial_files import ResultFiles

if TYPE_CHECKING:
    from atune.storage._snapshot import JournalSnapshot

__all__ = [
    "History",
    "RestorePlan",
    "catch_up_scheduler",
    "catch_up_search",
    "listens",
    "reconcile_disk",
    "replay",
    "reread_journal",
]


@dataclass(frozen=True)
class RestorePlan:
    """What ``Tuner.restore`` hands to ``run_experiment``.

    Attributes:
        experiment_path: The experiment's directory.
        uid: The experiment's id (the prefix of its trial ids).
        events: The journal's events, in order: all of them, or, with ``snapshot``, the
            snapshot's saved states (searcher, scheduler, callbacks) then the events
            after its offset.
        snapshot: The journal's snapshot the events continue, or None.
        resume_unfinished: Resume trials that had not finished (else mark them skipped).
        resume_errored: Resume errored trials from their latest checkpoint.
        restart_errored: Start errored trials over, without a checkpoint.
    """

    experiment_path: Path
    uid: str
    events: list[Event]
    resume_unfinished: bool = True
    resume_errored: bool = False
    restart_errored: bool = False
    snapshot: JournalSnapshot | None = None

    def history(self) -> History:
        """What the catch-ups know of the trials' past at the start of :attr:`events`."""
        return History.before(self.snapshot)


def reread_journal(plan: RestorePlan, *, scheduler_listens: bool = True) -> RestorePlan:
    """``plan`` with the journal as it is now, its torn last line (if any) cut off.

    Reads the journal's snapshot and the events after it, or every event when there is
    no usable snapshot or restore's catch-ups need older events (``scheduler_listens``:
    the experiment's scheduler hears trial events).

    Blocking (file I/O): call it off the event loop.
    """
    from atune._controller._snapshot import needs_full_history, read_full_history, read_history
    from atune.storage._journal import JournalContents, repair_journal
    from atune.storage._layout import JOURNAL_FILE

    history = read_history(plan.experiment_path)
    if needs_full_history(history, scheduler_listens=scheduler_listens):
        history = read_full_history(plan.experiment_path)
    repair_journal(
        plan.experiment_path / JOURNAL_FILE,
        JournalContents(history.events, history.valid_bytes, history.torn_line),
    )
    return dataclasses.replace(plan, events=history.restore_events(), snapshot=history.snapshot)


def replay(core: ControllerCore, plan: RestorePlan) -> None:
    """Rebuild the core from the journal; the searcher and scheduler from their snapshots.

    The scheduler is caught up *while* the journal is applied (see
    :func:`catch_up_scheduler`): each hook after its snapshot sees the trials as they were
    when it was called live (statuses, configs, checkpoints), not as the journal leaves
    them. PBT's choices depend on those (its quantiles, the donor's config and latest
    checkpoint); told them from the end state, its RNG, lineage and per-trial times drift
    from the interrupted run's.

    With a journal snapshot (``plan.snapshot``), the core starts from the snapshot's
    trials and ``plan.events`` continue them. :func:`reread_journal` keeps the snapshot
    only when neither catch-up needs an event before its offset: the searcher's (and a
    listening scheduler's) last saved state is then in ``plan.events`` or came after
    every event it is told of, so the trials at the offset are those its hooks saw live.
    """
    events = plan.events
    history = plan.history()
    if plan.snapshot is not None:
        from atune._controller._snapshot import load_trials

        load_trials(core, plan.snapshot.trials)
    scheduler_at = max(
        (i for i, e in enumerate(events) if isinstance(e, SchedulerStateSaved)), default=-1
    )
    if listens(core.scheduler):
        core.apply_journal(events[: scheduler_at + 1])
        if scheduler_at >= 0:
            saved = events[scheduler_at]
            assert isinstance(saved, SchedulerStateSaved)
            core.scheduler.set_state(saved.state)
        catch_up_scheduler(core, events, scheduler_at, history, apply=core.apply_journal)
    else:
        core.apply_journal(events)
    core.replay(
        [],  # applied above: this sorts the trials (resume, skip, keep)
        resume_unfinished=plan.resume_unfinished,
        resume_errored=plan.resume_errored,
        restart_errored=plan.restart_errored,
    )
    snapshot_at = max(
        (i for i, e in enumerate(events) if isinstance(e, SearcherStateSaved)), default=-1
    )
    if snapshot_at >= 0:
        snapshot = events[snapshot_at]
        assert isinstance(snapshot, SearcherStateSaved)
        core.search.set_state(snapshot.state)
    catch_up_search(core.search, events, snapshot_at, history)


def catch_up_scheduler(
    core: ControllerCore,
    events: list[Event],
    snapshot_at: int,
    history: History | None = None,
    apply: Callable[[list[Event]], None] | None = None,
) -> None:
    """Tell the scheduler what happened after its snapshot at ``events[snapshot_at]``.

    The events after the snapshot go through the scheduler's hooks as they did live (the
    core is pure, so the scheduler ends in the state it had when the driver stopped): a
    trial created is added, a result it decided on is handed to ``on_trial_result`` (its
    decision was already carried out and is ignored), a trial that ended is completed (with
    its last result) or errored. A result that ended its trial (``done``) is seen only by
    ``on_trial_complete``, as live, unless the scheduler stopped the trial there (its
    ``TrialCompleted`` says ``"scheduler"``): ``on_trial_result`` saw that one live
    (ASHA counts its stops there). A trial that ended while PAUSED gets
    ``on_trial_remove``, as live. With no snapshot (``-1``) the whole journal is replayed.
    ``history``: what happened before ``events[0]`` (a journal snapshot's); not modified.
    What the hooks ask of the controller meanwhile (``pause_trial``, ``exploit_trial``,
    ...) is ignored: its effects are in the journal already.

    With ``apply`` (the core's ``apply_journal``), each event after the snapshot is
    applied to the core in step with its hook, in the order of a live run: a result's hook
    comes before the result is applied (live, the core journals a result after the
    decision on it), every other hook after its event. The core must then hold the
    journal up to the snapshot, and no more, when this is called.
    """
    core._recording = False
    try:
        _catch_up_scheduler(
            core, events, snapshot_at, History() if history is None else history.copy(), apply
        )
    finally:
        core._recording = True
        core._actions.clear()


def _catch_up_scheduler(
    core: ControllerCore,
    events: list[Event],
    snapshot_at: int,
    history: History,
    apply: Callable[[list[Event]], None] | None,
) -> None:
    scheduler = core.scheduler
    if not listens(scheduler):
        if apply is not None:
            apply(events[snapshot_at + 1 :])
        return  # FIFO: nothing to tell (flattening every result cost seconds at scale)
    decided = _stopped_by_the_scheduler(events, snapshot_at)
    for index, event in enumerate(events):
        history.observe(event)
        if index <= snapshot_at:
            continue
        if isinstance(event, ResultReported):
            if not event.result.get("done") or index in decided:
                trial = core.trials[event.trial_id]
                scheduler.on_trial_result(core, trial, flatten_dict(event.result))
            if apply is not None:
                apply([event])
            continue
        if apply is not None:
            apply([event])
        if isinstance(event, TrialCreated):
            scheduler.on_trial_add(core, core.trials[event.trial_id])
        elif isinstance(event, TrialErrored):
            trial = core.trials[event.trial_id]
            scheduler.on_trial_error(core, trial)
            if event.will_retry:
                scheduler.on_trial_add(core, trial)
        elif isinstance(event, TrialCompleted):
            trial = core.trials[event.trial_id]
            if event.reason == "skipped" or event.trial_id in history.waiting:
                # closed on an earlier restore (never seen live), or stopped while paused
                scheduler.on_trial_remove(core, trial)
            elif event.trial_id in history.failing and event.reason != "returned":
                scheduler.on_trial_error(core, trial)
            else:
                result = dict(history.last.get(event.trial_id, {}))
                result["done"] = True
                scheduler.on_trial_complete(core, trial, flatten_dict(result))


def _stopped_by_the_scheduler(events: list[Event], snapshot_at: int) -> set[int]:
    """The indices of the results after ``snapshot_at`` that the scheduler stopped live.

    Such a result is journaled with ``done`` (the core sets it when a trial stops), like
    one that ended its trial by itself or by a stopper, which the scheduler never saw; the
    trial's ``TrialCompleted`` that follows tells them apart (reason ``"scheduler"``).
    Without it in the journal the trial is resumed and reports that result again.
    """
    ends: dict[str, str | None] = {}  # the reason of each trial's next end, going back
    decided: set[int] = set()
    for index in range(len(events) - 1, snapshot_at, -1):
        event = events[index]
        if isinstance(event, TrialCompleted):
            ends[event.trial_id] = str(event.reason)
        elif isinstance(event, TrialErrored):
            ends[event.trial_id] = None
        elif (
            isinstance(event, ResultReported)
            and event.result.get("done")
            and ends.get(event.trial_id) == "scheduler"
        ):
            decided.add(index)
    return decided


_SCHEDULER_HOOKS = (
    "on_trial_add",
    "on_trial_result",
    "on_trial_error",
    "on_trial_complete",
    "on_trial_remove",
)


def listens(scheduler: TrialScheduler) -> bool:
    """Whether ``scheduler`` overrides any hook that :func:`catch_up_scheduler` calls."""
    return any(
        getattr(type(scheduler), hook) is not getattr(TrialScheduler, hook)
        for hook in _SCHEDULER_HOOKS
    )


def catch_up_search(
    search: SearchAlgorithm,
    events: list[Event],
    snapshot_at: int,
    history: History | None = None,
) -> None:
    """Tell the search algorithm what happened after its snapshot at ``events[snapshot_at]``.

    In journal order, as it happened live: a trial created after the snapshot is asked
    for again (with the same id, so a seeded searcher hands out the same config and
    counts it), and a trial that ended after it is reported complete (its last result,
    or ``error=True``), so the searcher learns every result it had heard before the
    interruption and frees the trial's concurrency slot. Intermediate results are not
    replayed (only a pruner would use them). ``history``: what happened before
    ``events[0]`` (a journal snapshot's); not modified.
    """
    history = History() if history is None else history.copy()
    for index, event in enumerate(events):
        history.observe(event)
        if index <= snapshot_at:
            continue
        if isinstance(event, TrialErrored):
            if not event.will_retry:
                search.on_trial_complete(event.trial_id, None, error=True)
        elif isinstance(event, TrialCreated):
            search.next_trial(event.trial_id)
        elif isinstance(event, TrialCompleted):
            if event.trial_id in history.failing and event.reason != "returned":
                search.on_trial_complete(event.trial_id, None, error=True)
            else:
                result = dict(history.last.get(event.trial_id, {}))
                result["done"] = True
                search.on_trial_complete(event.trial_id, flatten_dict(result))


@dataclass
class History:
    """What restore's catch-ups know of each trial's past at a point of the journal.

    Attributes:
        last: Each trial's last result.
        failing: Trials that failed with a retry pending and reported nothing since.
        waiting: Trials paused, or resumed and not started again.
    """

    last: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    failing: set[str] = dataclasses.field(default_factory=set)
    waiting: set[str] = dataclasses.field(default_factory=set)

    def observe(self, event: Event) -> None:
        """Move past ``event``."""
        if isinstance(event, ResultReported):
            self.last[event.trial_id] = event.result
            self.failing.discard(event.trial_id)
        elif isinstance(event, TrialErrored):
            if event.will_retry:
                self.failing.add(event.trial_id)
        elif isinstance(event, TrialPaused):
            self.waiting.add(event.trial_id)
        elif isinstance(event, TrialStarted):
            self.waiting.discard(event.trial_id)

    @classmethod
    def before(cls, snapshot: JournalSnapshot | None) -> History:
        """The history at a snapshot's offset (empty without one)."""
        if snapshot is None:
            return cls()
        return cls(
            last={t.trial_id: t.last_result for t in snapshot.trials if t.last_result},
            failing=set(snapshot.failing),
            waiting=set(snapshot.waiting),
        )

    def copy(self) -> History:
        """An independent copy."""
        return History(dict(self.last), set(self.failing), set(self.waiting))


def reconcile_disk(
    core: ControllerCore, events: list[Event], snapshot: JournalSnapshot | None = None
) -> None:
    """Bring the trial directories in line with the journal, before the run appends.

    Never reuse a checkpoint index found on disk; drop staging dirs of torn saves; and
    write the result rows that the journal holds but ``result.json`` does not: the writer
    appends a flush's rows only after its journal lines are durable, so a driver killed
    in between leaves rows that only the journal has. Nothing a trial reported is lost.

    With a ``snapshot`` (``events`` are those after it), a trial that had finished at the
    snapshot's offset, has no event since and stays finished is left alone: the snapshot
    was written after its files were (a finished experiment's restore reads no trial
    file). Rows missing from before the offset are read from the whole journal.

    Blocking (file I/O): call it off the event loop.
    """
    journaled: dict[str, list[dict[str, Any]]] = defaultdict(list)
    touched: set[str] = set()
    for event in events:
        trial_id = getattr(event, "trial_id", None)
        if trial_id is not None:
            touched.add(trial_id)
        if isinstance(event, ResultReported):
            journaled[event.trial_id].append(event.result)
    settled = set()
    if snapshot is not None:
        settled = {
            t.trial_id for t in snapshot.trials if t.status in ("TERMINATED", "ERROR")
        } - touched
    older: dict[str, list[dict[str, Any]]] | None = None  # every row, read when needed
    files = ResultFiles()
    for trial in core.get_trials():
        if trial.trial_id in settled and trial.is_finished:
            continue
        trial_dir = Path(trial.path)
        rows = journaled.get(trial.trial_id, [])
        before = trial.num_results - len(rows) if snapshot is not None else 0
        written = _rows_written(trial_dir)
        if written < before:
            if older is None:
                older = _all_rows(Path(trial.experiment_path))
            rows, before = older.get(trial.trial_id, []), 0
        missing = rows[written - before :]
        if missing:
            trial_dir.mkdir(parents=True, exist_ok=True)
            for row in missing:
                files.append(trial_dir, row)
        if not trial_dir.is_dir():
            continue
        for child in trial_dir.iterdir():
            if is_staging_name(child.name):
                shutil.rmtree(child, ignore_errors=True)
            elif (index := parse_checkpoint_name(child.name)) is not None:
                trial.next_checkpoint_index = max(trial.next_checkpoint_index, index + 1)
    files.flush()


def _all_rows(experiment_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's journaled result rows, from the whole journal."""
    from atune.storage._journal import read_journal
    from atune.storage._layout import JOURNAL_FILE

    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in read_journal(experiment_path / JOURNAL_FILE).events:
        if isinstance(event, ResultReported):
            rows[event.trial_id].append(event.result)
    return rows


def _rows_written(trial_dir: Path) -> int:
    """How many whole rows the trial's ``result.json`` holds (a torn last one is not)."""
    try:
        return (trial_dir / RESULT_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
