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
from typing import Any

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
    TrialResumed,
    TrialStarted,
)
from atune.schedulers import TrialScheduler
from atune.search import SearchAlgorithm
from atune.storage._layout import RESULT_FILE, is_staging_name, parse_checkpoint_name
from atune.storage._trial_files import ResultFiles

__all__ = [
    "RestorePlan",
    "catch_up_scheduler",
    "catch_up_search",
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
        events: The journal's events, in order.
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


def reread_journal(plan: RestorePlan) -> RestorePlan:
    """``plan`` with the journal as it is now, its torn last line (if any) cut off.

    Blocking (file I/O): call it off the event loop.
    """
    from atune.storage._journal import read_journal, repair_journal
    from atune.storage._layout import JOURNAL_FILE

    journal = plan.experiment_path / JOURNAL_FILE
    contents = read_journal(journal)
    repair_journal(journal, contents)
    return dataclasses.replace(plan, events=contents.events)


def replay(core: ControllerCore, plan: RestorePlan) -> None:
    """Rebuild the core from the journal; the searcher and scheduler from their snapshots.

    The scheduler is caught up *while* the journal is applied (see
    :func:`catch_up_scheduler`): each hook after its snapshot sees the trials as they were
    when it was called live (statuses, configs, checkpoints), not as the journal leaves
    them. PBT's choices depend on those (its quantiles, the donor's config and latest
    checkpoint); told them from the end state, its RNG, lineage and per-trial times drift
    from the interrupted run's.
    """
    events = plan.events
    scheduler_at = max(
        (i for i, e in enumerate(events) if isinstance(e, SchedulerStateSaved)), default=-1
    )
    if _listens(core.scheduler):
        core.apply_journal(events[: scheduler_at + 1])
        if scheduler_at >= 0:
            saved = events[scheduler_at]
            assert isinstance(saved, SchedulerStateSaved)
            core.scheduler.set_state(saved.state)
        catch_up_scheduler(core, events, scheduler_at, apply=core.apply_journal)
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
    catch_up_search(core.search, events, snapshot_at)


def catch_up_scheduler(
    core: ControllerCore,
    events: list[Event],
    snapshot_at: int,
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
        _catch_up_scheduler(core, events, snapshot_at, apply)
    finally:
        core._recording = True
        core._actions.clear()


def _catch_up_scheduler(
    core: ControllerCore,
    events: list[Event],
    snapshot_at: int,
    apply: Callable[[list[Event]], None] | None,
) -> None:
    scheduler = core.scheduler
    if not _listens(scheduler):
        if apply is not None:
            apply(events[snapshot_at + 1 :])
        return  # FIFO: nothing to tell (flattening every result cost seconds at scale)
    last: dict[str, dict[str, Any]] = {}
    failing: set[str] = set()
    waiting: set[str] = set()  # PAUSED, or resumed and not started again
    decided = _stopped_by_the_scheduler(events, snapshot_at)
    for index, event in enumerate(events):
        if isinstance(event, TrialPaused):
            waiting.add(event.trial_id)
        elif isinstance(event, TrialStarted):
            waiting.discard(event.trial_id)
        elif isinstance(event, TrialResumed):
            pass  # still waiting until its TrialStarted
        if isinstance(event, ResultReported):
            last[event.trial_id] = event.result
            failing.discard(event.trial_id)
        elif isinstance(event, TrialErrored) and event.will_retry:
            failing.add(event.trial_id)
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
            if event.reason == "skipped" or event.trial_id in waiting:
                # closed on an earlier restore (never seen live), or stopped while paused
                scheduler.on_trial_remove(core, trial)
            elif event.trial_id in failing and event.reason != "returned":
                scheduler.on_trial_error(core, trial)
            else:
                result = dict(last.get(event.trial_id, {}))
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


def _listens(scheduler: TrialScheduler) -> bool:
    """Whether ``scheduler`` overrides any hook that :func:`catch_up_scheduler` calls."""
    return any(
        getattr(type(scheduler), hook) is not getattr(TrialScheduler, hook)
        for hook in _SCHEDULER_HOOKS
    )


def catch_up_search(search: SearchAlgorithm, events: list[Event], snapshot_at: int) -> None:
    """Tell the search algorithm what happened after its snapshot at ``events[snapshot_at]``.

    In journal order, as it happened live: a trial created after the snapshot is asked
    for again (with the same id, so a seeded searcher hands out the same config and
    counts it), and a trial that ended after it is reported complete (its last result,
    or ``error=True``), so the searcher learns every result it had heard before the
    interruption and frees the trial's concurrency slot. Intermediate results are not
    replayed (only a pruner would use them).
    """
    last: dict[str, dict[str, Any]] = {}
    failing: set[str] = set()  # errored, to be retried, and no result since
    for index, event in enumerate(events):
        after = index > snapshot_at
        if isinstance(event, ResultReported):
            last[event.trial_id] = event.result
            failing.discard(event.trial_id)
        elif isinstance(event, TrialErrored):
            if event.will_retry:
                failing.add(event.trial_id)
            elif after:
                search.on_trial_complete(event.trial_id, None, error=True)
        elif not after:
            continue
        elif isinstance(event, TrialCreated):
            search.next_trial(event.trial_id)
        elif isinstance(event, TrialCompleted):
            if event.trial_id in failing and event.reason != "returned":
                search.on_trial_complete(event.trial_id, None, error=True)
            else:
                result = dict(last.get(event.trial_id, {}))
                result["done"] = True
                search.on_trial_complete(event.trial_id, flatten_dict(result))


def reconcile_disk(core: ControllerCore, events: list[Event]) -> None:
    """Bring the trial directories in line with the journal, before the run appends.

    Never reuse a checkpoint index found on disk; drop staging dirs of torn saves; and
    write the result rows that the journal holds but ``result.json`` does not: the writer
    appends a flush's rows only after its journal lines are durable, so a driver killed
    in between leaves rows that only the journal has. Nothing a trial reported is lost.

    Blocking (file I/O): call it off the event loop.
    """
    journaled: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if isinstance(event, ResultReported):
            journaled[event.trial_id].append(event.result)
    files = ResultFiles()
    for trial in core.get_trials():
        trial_dir = Path(trial.path)
        rows = journaled.get(trial.trial_id, [])
        missing = rows[_rows_written(trial_dir) :]
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


def _rows_written(trial_dir: Path) -> int:
    """How many whole rows the trial's ``result.json`` holds (a torn last one is not)."""
    try:
        return (trial_dir / RESULT_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
