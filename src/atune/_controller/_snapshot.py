"""Reading an experiment's journal through its snapshot, and writing that snapshot.

The snapshot (:mod:`atune.storage._snapshot`) holds what replaying the journal's first
``journal_bytes`` bytes produces; :func:`read_history` returns it with the journal's
*tail* (the events after that offset), or, without a usable snapshot, every event.
Replaying the tail on top of the snapshot's trials (:func:`load_trials`, then
``ControllerCore.apply_journal``) gives exactly the state that replaying every event
gives: the snapshot is made by that same code (:func:`take_snapshot`), from the previous
snapshot and the events after it.

The driver writes a snapshot at the end of each run (:func:`compact`), after its final
flush, when it has also journaled the searcher's and scheduler's states once more: then
``Tuner.restore`` needs no event before the snapshot's offset at all. When it would (the
searcher or a listening scheduler has no state saved after the last event it must be
told about), restore reads the whole journal instead (:func:`needs_full_history`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._restore import History
from atune._env import env_number
from atune._gc import collection_paused
from atune._trial import CheckpointRecord, Trial
from atune.events import (
    CallbackStateSaved,
    Event,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
)
from atune.execution._protocol import ErrorInfo
from atune.execution.placement_groups import PlacementGroupFactory
from atune.search import BasicVariantGenerator
from atune.storage._journal import read_journal, read_journal_in_pieces
from atune.storage._layout import JOURNAL_FILE, SNAPSHOT_FILE
from atune.storage._snapshot import (
    CheckpointState,
    ErrorState,
    JournalSnapshot,
    TrialState,
    journal_check,
    read_snapshot,
    snapshot_offset,
    write_snapshot,
)

__all__ = [
    "SEARCH_TOLD",
    "TOLD",
    "JournalHistory",
    "compact",
    "export_trials",
    "load_trials",
    "needs_full_history",
    "read_history",
    "replayed_core",
    "take_snapshot",
]

TOLD = (TrialCreated, ResultReported, TrialErrored, TrialCompleted)
"""Events restore's catch-up hands to a listening scheduler: a scheduler state saved
before one of these in the snapshot's prefix is no longer current."""

SEARCH_TOLD = (TrialCreated, TrialErrored, TrialCompleted)
"""As :data:`TOLD`, for the search algorithm, which is not told intermediate results (only
a trial's last, when it completes, which the snapshot's trial records hold)."""


@dataclass(frozen=True)
class JournalHistory:
    """An experiment's journal as read: a snapshot (if usable) and the events after it.

    Attributes:
        snapshot: The snapshot the events continue, or None: ``events`` are all of them.
        events: The events after the snapshot's offset, in order.
        valid_bytes: Where the journal's valid part ends (a torn last line is not).
        torn_line: The dropped torn (or in-progress) last line, if any.
    """

    snapshot: JournalSnapshot | None
    events: list[Event]
    valid_bytes: int
    torn_line: bytes | None = None

    def restore_events(self) -> list[Event]:
        """The events for restore: the snapshot's saved states, then :attr:`events`.

        A saved state that is not current (:func:`needs_full_history`) is only used by
        restore when nothing has to be caught up (a scheduler that does not listen).
        """
        snapshot = self.snapshot
        if snapshot is None:
            return self.events
        saved = [snapshot.searcher, snapshot.scheduler, snapshot.callbacks]
        return [*(e for e in saved if e is not None), *self.events]


def read_history(experiment_path: Path, *, live: bool = False) -> JournalHistory:
    """The experiment's snapshot (when it matches the journal) and the journal after it.

    Blocking (file I/O). ``live`` as for :func:`~atune.storage._journal.read_journal`.

    Raises:
        StorageError: there is no journal.
        JournalCorruptError: the journal is damaged before its last line.
    """
    snapshot = read_snapshot(experiment_path)
    start = 0 if snapshot is None else snapshot.journal_bytes
    contents = read_journal(experiment_path / JOURNAL_FILE, live=live, start=start)
    return JournalHistory(snapshot, contents.events, contents.valid_bytes, contents.torn_line)


def read_full_history(experiment_path: Path, *, live: bool = False) -> JournalHistory:
    """Every event of the journal, ignoring any snapshot (blocking)."""
    contents = read_journal(experiment_path / JOURNAL_FILE, live=live)
    return JournalHistory(None, contents.events, contents.valid_bytes, contents.torn_line)


def needs_full_history(history: JournalHistory, *, scheduler_listens: bool) -> bool:
    """Whether restore's catch-ups need events from before the snapshot's offset.

    The search algorithm (and a scheduler that listens to trial events) is restored from
    its last saved state and told every event after it: when that state is before the
    offset and an event it must be told follows it there, the snapshot is not enough.
    """
    snapshot = history.snapshot
    if snapshot is None:
        return False
    events = history.events
    if not any(isinstance(e, SearcherStateSaved) for e in events) and not (
        snapshot.searcher is not None and snapshot.searcher_current
    ):
        return True
    return (
        scheduler_listens
        and not any(isinstance(e, SchedulerStateSaved) for e in events)
        and not (snapshot.scheduler is not None and snapshot.scheduler_current)
    )


def replayed_core(
    experiment_path: Path, history: JournalHistory, *, trainable_name: str = ""
) -> ControllerCore:
    """A core holding the trials as ``history`` leaves them (nothing decided)."""
    policy = CorePolicy(
        experiment_path=str(experiment_path),
        trainable_name=trainable_name,
        is_function=False,
        resources_for=_no_request,
        max_live_trials=1,
    )
    core = ControllerCore(policy, BasicVariantGenerator())
    if history.snapshot is not None:
        load_trials(core, history.snapshot.trials)
    core.apply_journal(history.events)
    return core


def _core_from(experiment_path: Path, snapshot: JournalSnapshot | None) -> ControllerCore:
    """A core holding the trials as ``snapshot`` records them (or none)."""
    history = JournalHistory(snapshot, [], 0 if snapshot is None else snapshot.journal_bytes)
    return replayed_core(experiment_path, history)


def _no_request(config: dict[str, Any]) -> PlacementGroupFactory:  # pragma: no cover
    raise AssertionError("replaying a journal creates no trial of its own")


# ------------------------------------------------------------------ trials <-> states
def _error_state(info: ErrorInfo | None) -> ErrorState | None:
    return None if info is None else ErrorState(info.type_name, info.message, info.traceback)


def _error_info(state: ErrorState | None) -> ErrorInfo | None:
    if state is None:
        return None
    return ErrorInfo(type_name=state.type_name, message=state.message, traceback=state.traceback)


def export_trials(core: ControllerCore) -> list[TrialState]:
    """The core's trials as snapshot records, in creation order."""
    states = []
    bundles: dict[int, list[dict[str, float]]] = {}  # trials share their request objects
    for trial in core.get_trials():
        request = bundles.get(id(trial.resources))
        if request is None:
            request = bundles[id(trial.resources)] = trial.resources.to_dict()["bundles"]
        pinned = core._pinned_by.get(trial.trial_id)
        states.append(
            TrialState(
                trial_id=trial.trial_id,
                trial_name=trial.trial_name,
                dirname=trial.dirname,
                config=trial.config,
                experiment_tag=trial.experiment_tag,
                resources=request,
                strategy=trial.resources.strategy,
                status=trial.status,
                last_result=trial.last_result,
                num_results=trial.num_results,
                num_failures=trial.num_failures,
                restore_failures=trial.restore_failures,
                attempt=trial.attempt,
                checkpoints=[
                    CheckpointState(c.dir_name, c.training_iteration, c.metrics)
                    for c in trial.checkpoints
                ],
                next_checkpoint_index=trial.next_checkpoint_index,
                error=_error_state(trial.error),
                pending_error=_error_state(trial.pending_error),
                failure_streak=trial.failure_streak,
                end_reason=trial.end_reason,
                assigned_checkpoint=trial.assigned_checkpoint,
                pinned_by=pinned,
                assigned_loaded=trial.trial_id in core._assigned_loaded,
            )
        )
    return states


def load_trials(core: ControllerCore, states: list[TrialState]) -> None:
    """Give a fresh core (no trials yet) the trials of a snapshot, as replay would."""
    assert not core.trials, "load_trials needs a core without trials"
    requests: dict[tuple[str, str], PlacementGroupFactory] = {}
    path = core.policy.experiment_path
    with collection_paused():
        for index, state in enumerate(states):
            key = (repr(state.resources), state.strategy)
            resources = requests.get(key)
            if resources is None:
                resources = requests[key] = PlacementGroupFactory(
                    state.resources, strategy=state.strategy
                )
            trial = Trial(
                trial_id=state.trial_id,
                trial_name=state.trial_name,
                dirname=state.dirname,
                config=state.config,
                experiment_tag=state.experiment_tag,
                resources=resources,
                experiment_path=path,
                index=index,
                status=state.status,
                last_result=state.last_result,
                num_results=state.num_results,
                num_failures=state.num_failures,
                restore_failures=state.restore_failures,
                attempt=state.attempt,
                checkpoints=[
                    CheckpointRecord(c.dir_name, c.training_iteration, c.metrics)
                    for c in state.checkpoints
                ],
                next_checkpoint_index=state.next_checkpoint_index,
                error=_error_info(state.error),
                pending_error=_error_info(state.pending_error),
                failure_streak=state.failure_streak,
                end_reason=state.end_reason,
                assigned_checkpoint=state.assigned_checkpoint,
            )
            core.trials[trial.trial_id] = trial
            core._trial_list.append(trial)
            if not trial.is_finished:
                core._open[trial.trial_id] = trial
            if state.pinned_by is not None:
                pin = (state.pinned_by[0], state.pinned_by[1])
                core._pins.setdefault(pin, set()).add(trial.trial_id)
                core._pinned_by[trial.trial_id] = pin
            if state.assigned_loaded:
                core._assigned_loaded.add(trial.trial_id)


# ------------------------------------------------------------------------ writing
def take_snapshot(experiment_path: Path, *, min_tail_bytes: int = 1) -> JournalSnapshot | None:
    """The snapshot of the journal as it is now; None when the current one will do.

    Built from the current snapshot (if usable) and the events after it, by the same
    replay every reader uses. Blocking (file I/O).

    Args:
        experiment_path: The experiment directory.
        min_tail_bytes: None is returned when a usable snapshot exists and the journal
            has grown by less than this since.
    """
    previous = read_snapshot(experiment_path)
    start = 0 if previous is None else previous.journal_bytes
    journal = experiment_path / JOURNAL_FILE
    if previous is not None and journal.stat().st_size - start < min_tail_bytes:
        return None
    core = _core_from(experiment_path, previous)
    seen = History.before(previous)
    searcher = previous.searcher if previous is not None else None
    searcher_current = previous.searcher_current if previous is not None else False
    scheduler = previous.scheduler if previous is not None else None
    scheduler_current = previous.scheduler_current if previous is not None else False
    callbacks = previous.callbacks if previous is not None else None
    offset = start
    # A piece at a time: the replay keeps each trial's last result, never every result.
    for piece in read_journal_in_pieces(journal, live=True, start=start):
        core.apply_journal(piece.events)
        for event in piece.events:
            seen.observe(event)
            if isinstance(event, SearcherStateSaved):
                searcher, searcher_current = event, True
            elif isinstance(event, SchedulerStateSaved):
                scheduler, scheduler_current = event, True
            elif isinstance(event, CallbackStateSaved):
                callbacks = event
            if isinstance(event, SEARCH_TOLD):
                searcher_current = False
            if isinstance(event, TOLD):
                scheduler_current = False
        offset = piece.valid_bytes
    return JournalSnapshot(
        journal_bytes=offset,
        journal_check=journal_check(experiment_path / JOURNAL_FILE, offset),
        trials=export_trials(core),
        searcher=searcher,
        searcher_current=searcher_current,
        scheduler=scheduler,
        scheduler_current=scheduler_current,
        callbacks=callbacks,
        failing=sorted(seen.failing),
        waiting=sorted(seen.waiting),
    )


MIN_BYTES_ENV = "ATUNE_SNAPSHOT_MIN_BYTES"
"""Environment variable: the journal growth (bytes) below which a run writes no snapshot."""

DEFAULT_MIN_BYTES = 16 << 20
"""16 MiB: replaying that much journal costs restore about a second of CPU here, and
writing its snapshot about 0.3 s inside ``fit()`` (a 10,000-result run's 4.5 MB journal
would add 10 % to its ``fit()`` for a restore that is fast anyway)."""


def snapshot_min_bytes() -> int:
    """``ATUNE_SNAPSHOT_MIN_BYTES`` (default :data:`DEFAULT_MIN_BYTES`); read at ``fit()``.

    Raises:
        ConfigError: The variable is set to something other than a whole number >= 0.
    """
    return env_number(
        MIN_BYTES_ENV, DEFAULT_MIN_BYTES, int, lambda v: v >= 0, "a whole number of bytes >= 0"
    )


def compact(experiment_path: Path, *, min_tail_bytes: int = 1) -> None:
    """Write the journal's snapshot as the journal is now (blocking).

    Call it where no one else writes the snapshot (under the experiment's lock). Nothing
    is written while the journal has grown by less than ``min_tail_bytes`` since the
    last snapshot (since its start, without one), nor while a usable snapshot exists and
    the journal has grown by less than a quarter of the snapshot's size since (replaying
    that tail costs less than rewriting the snapshot would): a restore that had nothing
    left to run rewrites nothing.

    Raises:
        OSError: it could not be written (the old snapshot, if any, stays).
    """
    try:
        size = (experiment_path / SNAPSHOT_FILE).stat().st_size
    except FileNotFoundError:
        size = 0
    min_tail_bytes = max(1, min_tail_bytes, size // 4)
    # Without a snapshot, the whole journal is the tail (a small one replays cheaply).
    covered = 0 if size == 0 else snapshot_offset(experiment_path)
    if covered is not None:
        try:
            grown = (experiment_path / JOURNAL_FILE).stat().st_size - covered
        except FileNotFoundError:
            grown = 0
        if 0 <= grown < min_tail_bytes:
            return  # not worth decoding the journal to find out (the common restore)
    snapshot = take_snapshot(experiment_path, min_tail_bytes=min_tail_bytes)
    if snapshot is not None:
        write_snapshot(experiment_path, snapshot)
