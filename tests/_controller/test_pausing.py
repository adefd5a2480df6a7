"""Pausing, stopping and exploiting as the scheduler asks, in the pure core (no Ray, no I/O).

A scheduler answers PAUSE, or calls ``pause_trial``/``stop_trial``/``exploit_trial`` on
the ``tune_controller`` it is handed; the core turns each into journaled events and
commands. The messages are fed by hand (``test_core.Run``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_core import ONE, RecordingSearch, Run, make_core, of, res

from atune._controller._core import ControllerCore
from atune._controller._messages import Launch, Release, Save, Train
from atune._controller._restore import catch_up_search
from atune._controller._run import Phase
from atune._trial import Trial
from atune.events import (
    CheckpointDeleted,
    ExperimentFinished,
    TrialCompleted,
    TrialExploited,
    TrialPaused,
    TrialResumed,
    TrialStarted,
)
from atune.schedulers import TrialScheduler
from atune.search import grid_search
from atune.storage._layout import checkpoint_name

A, B, C = "00000_00000", "00000_00001", "00000_00002"

Hook = Callable[[Any, Trial, dict[str, Any]], str]


class Scripted(TrialScheduler):
    """A per-result scheduler whose decision is a function; logs every hook."""

    def __init__(self, decide: Hook | None = None, choose: bool = True) -> None:
        super().__init__()
        self.decide = decide
        self.choose = choose
        self.calls: list[tuple[str, str]] = []

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        self.calls.append(("result", trial.trial_id))
        if self.decide is None:
            return self.CONTINUE
        return self.decide(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self.calls.append(("complete", trial.trial_id))

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.calls.append(("remove", trial.trial_id))


class NeverResumes(Scripted):
    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        return None


def pause_at(iteration: int, trial_id: str = A) -> Hook:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        hit = trial.trial_id == trial_id and result["training_iteration"] == iteration
        return TrialScheduler.PAUSE if hit else TrialScheduler.CONTINUE

    return decide


def core_with(tmp_path: Path, scheduler: TrialScheduler, **kwargs: Any) -> ControllerCore:
    kwargs.setdefault("space", {"x": grid_search([1, 2, 3])})
    return make_core(tmp_path, scheduler=scheduler, **kwargs)


def ckpt(trial_id: str, core: ControllerCore, index: int) -> str:
    return os.path.join(core.trials[trial_id].path, checkpoint_name(index))


# ------------------------------------------------------------------------ PAUSE decision
def test_a_pause_saves_a_class_trainable_releases_its_runner_and_resumes_it(
    tmp_path: Path,
) -> None:
    core = core_with(tmp_path, Scripted(pause_at(2)), is_function=False, space={"x": 1})
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1))
    events, commands = run.returned(A, res(2))
    # PAUSE on a result that is not checkpointed: save first, then pause.
    assert commands == [Save(trial_id=A, index=0)]
    assert core.trials[A].status == "RUNNING"
    events, commands = run.saved(A, 0, 2)
    (paused,) = of(events, TrialPaused)
    assert paused.checkpoint == os.path.join(core.trials[A].dirname, checkpoint_name(0))
    assert paused.scheduler == "Scripted"
    assert commands == [Release(trial_id=A)]
    assert core.trials[A].status == "PAUSED"
    # Its runner is freed: the search has no more trials, so the paused one resumes
    # from the checkpoint of its pause.
    events, commands = run.freed(A, "cached")
    assert of(events, TrialResumed) == [
        TrialResumed(ts=events[0].ts, trial_id=A, checkpoint=paused.checkpoint)
    ]
    assert commands == [Launch(trial_id=A, budget=ONE, checkpoint=ckpt(A, core, 0))]
    assert core.trials[A].status == "PENDING"
    run.started(A)
    # Counters continue: the result count (the runner continues training_iteration).
    run.returned(A, res(3))
    assert core.trials[A].num_results == 3
    assert core.trials[A].next_checkpoint_index == 1
    events, _ = run.returned(A, res(4), returned=True)
    assert [e.reason for e in of(events, TrialCompleted)] == ["returned"]


def test_a_paused_trial_holds_no_slot_new_trials_come_first_fifo(tmp_path: Path) -> None:
    core = core_with(tmp_path, Scripted(pause_at(1)), space={"x": grid_search([1, 2])})
    run = Run(core)
    run.start()
    assert [c.trial_id for c in of(run.commands, Launch)] == [A]  # one live trial at a time
    run.started(A)
    events, commands = run.returned(A, res(1, checkpoint_dir_name=checkpoint_name(0)))
    # A function trainable pauses on the checkpoint it reported: no Save.
    assert of(commands, Save) == []
    assert of(events, TrialPaused)[0].checkpoint is not None
    assert commands == [Release(trial_id=A)]
    # The paused trial holds no slot once its runner is freed: B starts.
    _, commands = run.freed(A)
    assert [c.trial_id for c in of(commands, Launch)] == [B]
    assert core.run_of(A).phase is Phase.PAUSED
    run.started(B)
    run.returned(B, res(1))
    # B ends; nothing new to create: the paused trial resumes (Ray Tune's FIFO rule).
    # Like a new trial, it is launched at once and waits for B's lease in the pool.
    events, commands = run.returned(B, returned=True)
    assert [c.trial_id for c in of(commands, Launch)] == [A]
    assert of(commands, Launch)[0].checkpoint == ckpt(A, core, 0)


def test_a_pause_without_a_checkpoint_resumes_from_scratch(tmp_path: Path) -> None:
    core = core_with(tmp_path, Scripted(pause_at(1)), space={"x": 1})
    run = Run(core)
    run.start()
    run.started(A)
    events, commands = run.returned(A, res(1))
    assert of(events, TrialPaused)[0].checkpoint is None
    _, commands = run.freed(A)
    assert commands == [Launch(trial_id=A, budget=ONE, checkpoint=None)]


def test_pause_trial_of_another_running_trial_waits_for_its_call(tmp_path: Path) -> None:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id == B:
            ctl.pause_trial(ctl.trials[A])
        return TrialScheduler.CONTINUE

    core = core_with(tmp_path, Scripted(decide), max_live_trials=2, is_function=False)
    run = Run(core)
    run.start()
    run.started(A)
    run.started(B)
    events, commands = run.returned(B, res(1))
    assert of(events, TrialPaused) == []  # A's launch is still outstanding
    assert commands == [Train(trial_id=B, budget=ONE)]
    events, commands = run.returned(A, res(1))
    # A's result is decided on as usual, then A is saved and paused.
    assert commands == [Save(trial_id=A, index=0)]
    events, commands = run.saved(A, 0, 1)
    assert [e.trial_id for e in of(events, TrialPaused)] == [A]
    assert commands == [Release(trial_id=A)]
    # A paused trial still releasing its runner counts as live: nothing new yet.
    assert of(commands, Launch) == []
    _, commands = run.freed(A)
    assert [c.trial_id for c in of(commands, Launch)] == [C]


def test_a_stop_decided_on_the_same_result_wins_over_a_pause(tmp_path: Path) -> None:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        ctl.pause_trial(trial)
        return TrialScheduler.STOP

    run = Run(core_with(tmp_path, Scripted(decide), space={"x": 1}))
    run.start()
    run.started(A)
    events, _ = run.returned(A, res(1))
    assert of(events, TrialPaused) == []
    assert [e.reason for e in of(events, TrialCompleted)] == ["scheduler"]


# ------------------------------------------------------------------------ stop_trial
def test_stop_trial_of_a_paused_trial_removes_it(tmp_path: Path) -> None:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id == A:
            return TrialScheduler.PAUSE
        ctl.stop_trial(ctl.trials[A])
        return TrialScheduler.CONTINUE

    scheduler = Scripted(decide)
    search = RecordingSearch(random_state=0)
    core = core_with(tmp_path, scheduler, search=search, space={"x": grid_search([1, 2])})
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1, checkpoint_dir_name=checkpoint_name(0)))
    run.freed(A)
    run.started(B)
    events, _ = run.returned(B, res(1))
    assert [(e.trial_id, e.reason) for e in of(events, TrialCompleted)] == [(A, "scheduler")]
    # As in Ray Tune, a trial stopped while paused is removed (not completed)...
    assert ("remove", A) in scheduler.calls
    assert ("complete", A) not in scheduler.calls
    # ...and the searcher hears its last result.
    assert [(tid, r["training_iteration"]) for tid, r, _ in search.completed if r] == [(A, 1)]
    assert core.run_of(A).phase is Phase.ENDED


# ---------------------------------------------------------------------- never a hang
def test_paused_trials_that_the_scheduler_never_resumes_fail_the_experiment(
    tmp_path: Path,
) -> None:
    core = core_with(tmp_path, NeverResumes(pause_at(1)), space={"x": 1})
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1))
    events, _ = run.freed(A)
    assert core.fatal_error is not None
    assert "NeverResumes left 1 trial(s) paused" in core.fatal_error.message
    assert [e.reason for e in of(events, TrialCompleted)] == ["scheduler"]
    assert of(events, ExperimentFinished)


def test_a_scheduler_choice_that_is_launching_already_starts_nothing(tmp_path: Path) -> None:
    """``choose_trial_to_run`` may name a trial being launched (status PENDING): the core
    starts nothing for it and asks again after the next message."""

    class FirstPending(Scripted):
        def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
            # The base class's rule, run by the scheduler itself (not the core's fast path).
            return TrialScheduler.choose_trial_to_run(self, tune_controller)

    core = core_with(
        tmp_path,
        FirstPending(pause_at(1)),
        space={"x": grid_search([1, 2])},
        max_live_trials=2,
    )
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1))
    _, commands = run.freed(A)
    # B is PENDING (being launched) and comes first: nothing is resumed for it...
    assert of(commands, Launch) == []
    assert core.trials[A].status == "PAUSED"
    # ...until B has started; then the scheduler picks A, and there is room.
    _, commands = run.started(B)
    assert [c.trial_id for c in of(commands, Launch)] == [A]


# ---------------------------------------------------------------------- exploit_trial
def exploit_by(exploiter: str, donor: str, at: int, config: dict[str, Any]) -> Hook:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id == exploiter and result["training_iteration"] == at:
            ctl.exploit_trial(trial, donor=ctl.trials[donor], config=config, experiment_tag="x")
        return TrialScheduler.CONTINUE

    return decide


def test_exploit_relaunches_the_trial_in_place_from_the_donors_checkpoint(
    tmp_path: Path,
) -> None:
    core = core_with(
        tmp_path,
        Scripted(exploit_by(B, A, at=2, config={"x": 9})),
        max_live_trials=2,
        space={"x": grid_search([1, 2])},
        num_to_keep=1,
    )
    run = Run(core)
    run.start()
    run.started(A)
    run.started(B)
    run.returned(A, res(1, checkpoint_dir_name=checkpoint_name(0)))
    run.returned(B, res(1))
    events, commands = run.returned(B, res(2))
    (exploited,) = of(events, TrialExploited)
    assert (exploited.donor_id, exploited.dir_name, exploited.config) == (
        A,
        checkpoint_name(0),
        {"x": 9},
    )
    assert core.trials[B].config == {"x": 9}
    assert core.trials[B].experiment_tag == "x"
    assert commands == [Launch(trial_id=B, budget=ONE, checkpoint=ckpt(A, core, 0), in_place=True)]
    # The donor checkpoints again: num_to_keep=1 would delete checkpoint 0, but B has not
    # loaded it yet, so it stays.
    events, _ = run.returned(A, res(2, checkpoint_dir_name=checkpoint_name(1)))
    assert of(events, CheckpointDeleted) == []
    # B relaunched from it (the driver names the checkpoint it restored).
    run.send(TrialStarted(ts=99.0, trial_id=B, restored_from=checkpoint_name(0)))
    # B commits a checkpoint of its own: the pin goes, and the retention it held back
    # happens now.
    events, _ = run.returned(B, res(3, checkpoint_dir_name=checkpoint_name(0)))
    assert [(e.trial_id, e.dir_name) for e in of(events, CheckpointDeleted)] == [
        (A, checkpoint_name(0))
    ]
    assert core.trials[B].assigned_checkpoint is None


def test_exploit_of_a_paused_trial_resumes_it_from_the_donors_checkpoint(
    tmp_path: Path,
) -> None:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id == A:
            return TrialScheduler.PAUSE
        ctl.exploit_trial(ctl.trials[A], donor=trial, config={"x": 5})
        return TrialScheduler.CONTINUE

    core = core_with(tmp_path, Scripted(decide), space={"x": grid_search([1, 2])})
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1))
    run.freed(A)
    run.started(B)
    events, _ = run.returned(B, res(1, checkpoint_dir_name=checkpoint_name(0)))
    assert of(events, TrialExploited)[0].trial_id == A
    assert core.trials[A].status == "PAUSED"
    events, commands = run.returned(B, returned=True)
    assert of(events, TrialResumed)[0].checkpoint == os.path.join(
        core.trials[B].dirname, checkpoint_name(0)
    )
    assert of(commands, Launch) == [Launch(trial_id=A, budget=ONE, checkpoint=ckpt(B, core, 0))]


def test_exploit_from_a_donor_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    core = core_with(tmp_path, Scripted(exploit_by(B, A, at=1, config={})), max_live_trials=2)
    run = Run(core)
    run.start()
    run.started(A)
    run.started(B)
    with pytest.raises(ValueError, match=f"donor trial {A} has no checkpoint"):
        run.returned(B, res(1))


# ------------------------------------------------------------------------- replay
def test_replay_reproduces_pauses_and_exploits_and_resumes_paused_trials(
    tmp_path: Path,
) -> None:
    def decide(ctl: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id == A:
            return TrialScheduler.PAUSE
        ctl.exploit_trial(ctl.trials[A], donor=trial, config={"x": 7}, experiment_tag="t")
        return TrialScheduler.CONTINUE

    space = {"x": grid_search([1, 2, 3])}
    core = core_with(tmp_path, Scripted(decide), space=space)
    run = Run(core)
    run.start()
    run.started(A)
    run.returned(A, res(1, checkpoint_dir_name=checkpoint_name(0)))
    run.freed(A)
    run.started(B)
    run.returned(B, res(1, checkpoint_dir_name=checkpoint_name(0)))
    # The driver dies here: A is PAUSED and assigned B's checkpoint; B is running.
    restored = core_with(tmp_path, Scripted(decide), space=space)
    restored.replay(list(run.events))
    catch_up_search(restored.search, list(run.events), -1)
    trial = restored.trials[A]
    assert (trial.status, trial.config, trial.experiment_tag) == ("PAUSED", {"x": 7}, "t")
    assert trial.assigned_checkpoint == os.path.join(restored.trials[B].dirname, checkpoint_name(0))
    assert restored.run_of(A).phase is Phase.PAUSED
    again = Run(restored)
    _, commands = again.start()
    # B resumes from its checkpoint; A stays paused until a slot frees, then resumes
    # from its assigned checkpoint (the FIFO rule: a new trial, C, comes first).
    assert [(c.trial_id, c.checkpoint) for c in of(commands, Launch)] == [(B, ckpt(B, restored, 0))]
    again.started(B)
    _, commands = again.returned(B, returned=True)
    assert [c.trial_id for c in of(commands, Launch)] == [C]
    again.started(C)
    _, commands = again.returned(C, returned=True)
    assert [(c.trial_id, c.checkpoint) for c in of(commands, Launch)] == [(A, ckpt(B, restored, 0))]
