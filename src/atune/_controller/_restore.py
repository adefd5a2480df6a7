"""Continuing an experiment from its journal (``Tuner.restore``).

``Tuner.restore`` reads the journal and builds a :class:`RestorePlan`; ``fit()`` re-reads
the journal under the experiment's lock (:func:`reread_journal`, which also cuts off a
torn last line), rebuilds the core from it (:func:`replay`) and squares the rebuilt state
with what is on disk (:func:`reconcile_disk`) before the driver starts.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from atune._controller._core import ControllerCore
from atune.events import Event, SearcherStateSaved, TrialCreated
from atune.storage._layout import is_staging_name, parse_checkpoint_name

__all__ = ["RestorePlan", "reconcile_disk", "replay", "reread_journal"]


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
    """Rebuild the core from the journal, and the search algorithm from its last snapshot."""
    core.replay(
        plan.events,
        resume_unfinished=plan.resume_unfinished,
        resume_errored=plan.resume_errored,
        restart_errored=plan.restart_errored,
    )
    snapshot_at = max(
        (i for i, e in enumerate(plan.events) if isinstance(e, SearcherStateSaved)), default=-1
    )
    if snapshot_at >= 0:
        snapshot = plan.events[snapshot_at]
        assert isinstance(snapshot, SearcherStateSaved)
        core.search.set_state(snapshot.state)
    # Trials created after the last snapshot were handed out already: advance past them.
    for event in plan.events[snapshot_at + 1 :]:
        if isinstance(event, TrialCreated):
            core.search.next_trial(event.trial_id)


def reconcile_disk(core: ControllerCore) -> None:
    """Never reuse a checkpoint index found on disk; drop staging dirs of torn saves.

    Blocking (file I/O): call it off the event loop.
    """
    for trial in core.get_trials():
        trial_dir = Path(trial.path)
        if not trial_dir.is_dir():
            continue
        for child in trial_dir.iterdir():
            if is_staging_name(child.name):
                shutil.rmtree(child, ignore_errors=True)
            elif (index := parse_checkpoint_name(child.name)) is not None:
                trial.next_checkpoint_index = max(trial.next_checkpoint_index, index + 1)
