"""Pausing and exploiting through the real driver and pool, over the scripted backend.

Runners "train" on a virtual clock (``_scripted.py``): a class-trainable-like runner saves
``checkpoint_NNNNNN`` with its iteration and restores it on launch, so the counters a
resumed trial reports show whether it continued from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _scripted import ScriptedBackend, journal, make_core, make_driver

from atune._controller._clock import VirtualClock
from atune._trial import Trial
from atune.events import ResultReported, TrialExploited, TrialPaused, TrialResumed, TrialStarted
from atune.schedulers import TrialScheduler


class PauseOnce(TrialScheduler):
    """Pauses every trial once, at iteration 1."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if trial.trial_id in self.paused:
            return self.CONTINUE
        self.paused.add(trial.trial_id)
        return self.PAUSE


def _iterations(path: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for event in journal(path):
        if isinstance(event, ResultReported):
            out.setdefault(event.trial_id, []).append(event.result["training_iteration"])
    return out


async def test_paused_trials_resume_from_their_checkpoint_and_hold_no_slot(tmp_path: Path) -> None:
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, capacity={"CPU": 1}, step_s=10.0, iterations=3)
        core = make_core(tmp_path, xs=[1, 2, 3], is_function=False, scheduler=PauseOnce())
        await make_driver(core, backend, tmp_path, clock=clock).run()
    events = journal(tmp_path)
    assert len([e for e in events if isinstance(e, TrialPaused)]) == 3
    assert all(e.checkpoint for e in events if isinstance(e, TrialPaused))
    assert len([e for e in events if isinstance(e, TrialResumed)]) == 3
    # Every trial continued where it paused: iterations 1, 2, 3, each once.
    assert _iterations(tmp_path) == {t.trial_id: [1, 2, 3] for t in core.get_trials()}
    assert [t.status for t in core.get_trials()] == ["TERMINATED"] * 3
    # One CPU: a paused trial released its runner, so never more than one ran at a time,
    # and the three paused ones did not block each other (FIFO: new trials first).
    assert backend.max_live == 1
    started = [e.trial_id[-1] for e in events if isinstance(e, TrialStarted)]
    assert started == ["0", "1", "2", "0", "1", "2"]
    assert all(runner.released for runner in backend.runners)


class ExploitOnce(TrialScheduler):
    """Trial 1 exploits trial 0 (which has a checkpoint) at its iteration 2."""

    done = False

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if not self.done and trial.trial_id.endswith("1") and result["training_iteration"] == 2:
            self.done = True
            donor = tune_controller.get_trials()[0]
            tune_controller.exploit_trial(trial, donor=donor, config={"x": 7}, experiment_tag="e")
        return self.CONTINUE


async def test_exploit_relaunches_on_the_same_runner_with_reuse(tmp_path: Path) -> None:
    async with VirtualClock() as clock:
        backend = ScriptedBackend(clock, capacity={"CPU": 2}, step_s=10.0, iterations=4)
        core = make_core(
            tmp_path,
            xs=[1, 2],
            max_live_trials=2,
            is_function=False,
            scheduler=ExploitOnce(),
            checkpoint_frequency=1,
        )
        await make_driver(core, backend, tmp_path, clock=clock, reuse=True).run()
    (exploited,) = [e for e in journal(tmp_path) if isinstance(e, TrialExploited)]
    donor, exploiter = (t.trial_id for t in core.get_trials())
    assert (exploited.trial_id, exploited.donor_id) == (exploiter, donor)
    # Relaunched in place: a "reuse" launch of the exploiter on its own runner.
    assert backend.calls_of("reuse") == [exploiter]
    runner = next(r for r in backend.runners if r.trial_id == exploiter)
    assert runner.x == 7.0
    # It continued from the donor's checkpoint's iteration.
    saved_at = backend.checkpoints[exploited.dir_name]
    its = _iterations(tmp_path)[exploiter]
    assert its[:2] == [1, 2]
    assert its[2] == saved_at + 1
    assert core.trials[exploiter].config == {"x": 7}
