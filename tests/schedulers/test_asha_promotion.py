"""ASHAScheduler(promotion=True): pause at rungs, promote the top 1/rf, always end."""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from atune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, TrialScheduler
from atune.simulator import Simulator
from atune.storage._layout import JOURNAL_FILE

SCORES = [5, 2, 8, 0, 6, 3, 7, 1, 4]
# See test_nine_trials_one_at_a_time_is_successive_halving for the derivation.
EXPECTED_FINALS = [1, 1, 9, 1, 3, 1, 3, 1, 1]


def constant(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    """A curve of 20 iterations of 60 s that reports ``score`` every iteration."""
    if iteration > 20:
        return None
    return {"score": config["score"]}, 60.0


def noisy_curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    """A decreasing loss with deterministic noise; 40 iterations of 36 s each."""
    if iteration > 40:
        return None
    noise = random.Random(f"{config['a']}:{iteration}").gauss(0, 0.05)
    return {"loss": config["a"] + math.exp(-iteration / 8) + noise}, 36.0


def promoting(**kwargs: Any) -> ASHAScheduler:
    args: dict[str, Any] = {"max_t": 9, "grace_period": 1, "reduction_factor": 3}
    return ASHAScheduler(**{**args, **kwargs}, promotion=True)


def tuner(path: Path, scheduler: Any, scores: list[float] = SCORES, workers: int = 1) -> tune.Tuner:
    return tune.Tuner(
        Simulator(constant, workers=workers, seed=0),
        param_space={"score": tune.grid_search(scores)},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(path), name="exp", verbose=0),
    )


def journal(experiment: Path) -> list[dict[str, Any]]:
    text = (experiment / JOURNAL_FILE).read_text()
    return [json.loads(line) for line in text.splitlines()]


def finals_by_score(grid: tune.ResultGrid, scores: list[float] = SCORES) -> list[int]:
    by_score = {r.config["score"]: r.metrics["training_iteration"] for r in grid}
    return [by_score[s] for s in scores]


# ------------------------------------------------------------- the worked example
def test_nine_trials_one_at_a_time_is_successive_halving(tmp_path: Path) -> None:
    """Scores 5,2,8,0,6,3,7,1,4 (max), grace_period=1, reduction_factor=3, max_t=9, one
    worker. Rungs at 1, 3, 9; a paused trial is promotable when it is among the best
    ``floor(n/3)`` of the ``n`` scores recorded at its rung; a trial starts in the order:
    promotable (highest rung first), else new.

    ====  =====  ==================================================================
    trial score  what happens
    ====  =====  ==================================================================
    T0    5      rung 1 {5}: top 0 -> pause; T1 starts
    T1    2      rung 1 {5,2}: top 0 -> pause; T2 starts
    T2    8      rung 1 {5,2,8}: top 1 = T2 -> promoted at once (continues);
                 rung 3 {8}: top 0 -> pause; T3 starts
    T3    0      rung 1 n=4, top 1 = T2 (gone on) -> pause
    T4    6      rung 1 n=5, top 1 -> pause; T5 starts
    T5    3      rung 1 n=6, top 2 = T2, T4: T4 is promotable -> T5 pauses, T4 resumes
    T4    6      rung 3 {8,6}: top 0 -> pause; T6 starts
    T6    7      rung 1 n=7, top 2 = T2, T6 -> promoted at once;
                 rung 3 {8,6,7}: top 1 = T2 (paused there) -> T6 pauses, T2 resumes
    T2    8      runs to max_t = 9: stops (the first trial to complete)
    T7    1      rung 1 n=8, top 2 = T2, T6 (both gone on) -> pause
    T8    4      rung 1 n=9, top 3 = T2, T6, T4 (gone on) -> nothing promotable, nothing
                 new, nothing running, a trial completed: the end. T8 and every paused
                 trial stop.
    ====  =====  ==================================================================

    Final iterations 1,1,9,1,3,1,3,1,1: synchronous successive halving's 9 -> 3 -> 1
    (the stopping variant gives 9,1,9,1,3,1,9,1,1).
    """
    scheduler = promoting()
    t = tuner(tmp_path, scheduler)
    grid = t.fit()
    assert grid.num_errors == 0
    assert finals_by_score(grid) == EXPECTED_FINALS
    assert all(r.metrics["done"] for r in grid)
    events = journal(Path(t.experiment_path))
    index = {e["trial_id"]: SCORES[int(e["trial_id"][-5:])] for e in events if "trial_id" in e}
    resumed = [index[e["trial_id"]] for e in events if e["type"] == "trial_resumed"]
    assert resumed == [6, 8]  # T4 from rung 1, then T2 from rung 3
    paused = [index[e["trial_id"]] for e in events if e["type"] == "trial_paused"]
    assert paused == [5, 2, 8, 0, 6, 3, 6, 7, 1]
    # Each trial's iterations ran once, in order, across its pause.
    for result in grid:
        history = result.metrics_dataframe["training_iteration"].tolist()
        assert history == list(range(1, result.metrics["training_iteration"] + 1))
    rung9, rung3, rung1 = scheduler.rungs()[0]
    assert rung1[0] == 1 and sorted(rung1[1].values()) == sorted(SCORES)
    assert rung3[0] == 3 and sorted(rung3[1].values()) == [6, 7, 8]
    assert rung9[0] == 9 and list(rung9[1].values()) == [8]


def test_a_rung_too_small_to_promote_still_trains_the_best_to_max_t(tmp_path: Path) -> None:
    """Two trials: nobody is in the top third of a rung of two; with every trial paused,
    the best one goes on (to max_t), then the other stops."""
    grid = tuner(tmp_path, promoting(), scores=[2, 5]).fit()
    assert finals_by_score(grid, [2, 5]) == [1, 9]


def test_without_stop_last_trials_the_best_runs_on_past_max_t(tmp_path: Path) -> None:
    """As the worked example, but score 8 pauses at 9 (a rung, no stop there); with nothing
    else left it goes on as the best candidate, to its curve's end (20), then the paused
    ones stop."""
    grid = tuner(tmp_path, promoting(stop_last_trials=False)).fit()
    assert grid.num_errors == 0
    assert finals_by_score(grid) == [1, 1, 20, 1, 3, 1, 3, 1, 1]


def test_the_stopping_variant_keeps_the_default_choice() -> None:
    default = TrialScheduler.choose_trial_to_run
    assert AsyncHyperBandScheduler().choose_trial_to_run.__func__ is default  # type: ignore[attr-defined]
    assert promoting().choose_trial_to_run.__func__ is not default  # type: ignore[attr-defined]
    assert promoting().init_args()["promotion"] is True
    assert "(promotion)" in promoting().debug_string()


def test_bad_promotion_value_names_the_parameter() -> None:
    with pytest.raises(TypeError, match="promotion must be a bool, got 'yes'"):
        ASHAScheduler(promotion="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------- many trials, workers
def replay_checks(events: list[dict[str, Any]], milestones: list[int], rf: int) -> None:
    """Check the promotion rule on a journal, independently of the scheduler's code.

    Rung records come from the results (a trial is recorded at a milestone when it first
    reports it). At every resume the trial is in the top ``floor(n/rf)`` of its rung, or
    every other live trial is paused (the fallback); a trial that ends while paused is
    not in the top of its rung.
    """
    records: dict[int, dict[str, float]] = {m: {} for m in milestones}
    status: dict[str, str] = {}
    rung_of: dict[str, int] = {}

    def top(m: int) -> set[str]:
        ranked = sorted(records[m], key=lambda t: -records[m][t])
        return set(ranked[: math.floor(len(records[m]) / rf)])

    for event in events:
        kind, trial_id = event["type"], event.get("trial_id")
        if kind == "trial_created":
            status[trial_id] = "PENDING"
        elif kind == "trial_started":
            status[trial_id] = "RUNNING"
        elif kind == "trial_paused":
            status[trial_id] = "PAUSED"
        elif kind == "result_reported":
            t = event["result"]["training_iteration"]
            if t in records and trial_id not in records[t]:
                records[t][trial_id] = -event["result"]["loss"]
                rung_of[trial_id] = t
        elif kind == "trial_resumed":
            others = [s for o, s in status.items() if o != trial_id]
            fallback = all(s == "PAUSED" for s in others)
            assert trial_id in top(rung_of[trial_id]) or fallback, trial_id
            status[trial_id] = "PENDING"
        elif kind == "trial_completed":
            if status[trial_id] == "PAUSED":
                assert trial_id not in top(rung_of[trial_id]), trial_id
            del status[trial_id]
    assert not status


@pytest.mark.parametrize("workers", [1, 8])
def test_many_trials_always_end_every_trial_terminated(tmp_path: Path, workers: int) -> None:
    def study(path: Path) -> tuple[tune.ResultGrid, Path]:
        shutil.rmtree(path, ignore_errors=True)
        t = tune.Tuner(
            Simulator(noisy_curve, workers=workers, seed=3),
            param_space={"a": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=90,
                scheduler=ASHAScheduler(
                    max_t=27, grace_period=1, reduction_factor=3, promotion=True
                ),
            ),
            run_config=tune.RunConfig(storage_path=str(path), name="exp", verbose=0),
        )
        return t.fit(), Path(t.experiment_path)

    grid, experiment = study(tmp_path / "s")
    first = (experiment / JOURNAL_FILE).read_bytes()
    assert len(grid) == 90
    assert grid.num_errors == 0
    events = journal(experiment)
    ended = [e for e in events if e["type"] == "trial_completed"]
    assert len(ended) == 90
    finals = [r.metrics["training_iteration"] for r in grid]
    assert set(finals) <= {1, 3, 9, 27}  # trials end at rungs only
    assert finals.count(27) >= 1
    # At least the final top third of rung 1 was promoted.
    assert sum(f >= 3 for f in finals) >= 90 // 3
    replay_checks(events, [1, 3, 9, 27], 3)
    # Deterministic: the same study writes the same journal.
    if workers == 1:
        return
    _, again = study(tmp_path / "s")
    assert (again / JOURNAL_FILE).read_bytes() == first


def test_several_brackets_with_a_seeded_draw(tmp_path: Path) -> None:
    scheduler = ASHAScheduler(
        max_t=27, grace_period=1, reduction_factor=3, brackets=3, seed=5, promotion=True
    )
    grid = tune.Tuner(
        Simulator(noisy_curve, workers=4, seed=1),
        param_space={"a": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=60, scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 60
    assert {r.metrics["training_iteration"] for r in grid} <= {1, 3, 9, 27}
    sizes = [sum(len(rec) for _, rec in bracket) for bracket in scheduler.rungs()]
    assert all(size > 0 for size in sizes)  # every bracket got trials


# ------------------------------------------------------------------------ restore
def test_state_is_json_and_restore_continues(tmp_path: Path) -> None:
    """Interrupt the worked example after four pauses; the restored run ends as an
    uninterrupted one, with the rung records and pauses carried over."""
    scheduler = promoting()
    t = tuner(tmp_path, scheduler)

    async def interrupted() -> None:
        pauses = 0
        async with t.start() as handle:
            async for event in handle.events():
                if isinstance(event, tune.events.TrialPaused):
                    pauses += 1
                    if pauses == 4:
                        handle.cancel()
                        break

    anyio.run(interrupted)
    path = Path(t.experiment_path)
    state = scheduler.get_state()
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    assert "promotion" in state
    before = sum(1 for e in journal(path) if e["type"] == "trial_completed")
    assert before < 9
    restored = tune.Tuner.restore(str(path), Simulator(constant, workers=1, seed=0))
    grid = restored.fit()
    assert grid.num_errors == 0
    assert finals_by_score(grid) == EXPECTED_FINALS
    resumed = [e for e in journal(path) if e["type"] == "trial_resumed"]
    assert len(resumed) == 2  # T4 and T2, as uninterrupted: no pause lost or repeated


def test_state_round_trips_into_a_new_scheduler(tmp_path: Path) -> None:
    scheduler = promoting()
    tuner(tmp_path, scheduler).fit()
    state = json.loads(json.dumps(scheduler.get_state()))
    copy = promoting()
    copy.set_state(state)
    assert copy.get_state() == scheduler.get_state()
    assert copy.rungs() == scheduler.rungs()
    assert state["promotion"]["completed"] is True


# ------------------------------------------------------------ local backend, class
class Steps(tune.Trainable):
    """``score = config["score"]``; counts its restores through its checkpoints."""

    def setup(self, config: dict[str, Any]) -> None:
        self.score = config["score"]
        self.restores = 0

    def step(self) -> dict[str, Any]:
        return {"score": self.score, "restores": self.restores}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"restores": self.restores}

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restores = checkpoint["restores"] + 1


def test_local_class_trainable_pauses_and_resumes_where_it_was(storage: str) -> None:
    grid = tune.Tuner(
        Steps,
        param_space={"score": tune.grid_search(SCORES)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            max_concurrent_trials=1,
            scheduler=promoting(),
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert grid.num_errors == 0
    assert finals_by_score(grid) == EXPECTED_FINALS
    by_score = {r.config["score"]: r for r in grid}
    # Score 8: promoted at once from rung 1, paused at 3, resumed once to 9.
    history = by_score[8].metrics_dataframe
    assert history["training_iteration"].tolist() == list(range(1, 10))
    assert history["restores"].tolist() == [0, 0, 0] + [1] * 6
    # Score 6: paused at 1, resumed (restored) once, training_iteration went on from 1.
    history = by_score[6].metrics_dataframe
    assert history["training_iteration"].tolist() == [1, 2, 3]
    assert history["restores"].tolist() == [0, 1, 1]
    assert by_score[5].metrics["restores"] == 0  # never promoted


class DepthProbe(AsyncHyperBandScheduler):
    """The promotion variant, noting the stack depth of each ``on_trial_remove``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.depths: list[int] = []

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        depth, frame = 0, sys._getframe()
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        self.depths.append(depth)
        super().on_trial_remove(tune_controller, trial)


def test_hundreds_of_paused_trials_stopped_at_once_do_not_deepen_the_stack(
    tmp_path: Path,
) -> None:
    """About 160 trials wait at rung 1 when the last one pauses; all are stopped from that
    one hook. The core carries the stops out in one loop: it used to nest two calls per
    stopped trial, so about 450 of them passed Python's recursion limit."""
    scheduler = DepthProbe(max_t=3, grace_period=1, reduction_factor=3, promotion=True)
    grid = tune.Tuner(
        Simulator(noisy_curve, workers=1, seed=0),
        param_space={"a": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=240, scheduler=scheduler
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert len(grid) == 240
    assert grid.num_errors == 0
    finals = [r.metrics["training_iteration"] for r in grid]
    # The final top third of rung 1 was promoted (to max_t), the rest stopped at 1.
    assert finals.count(3) >= 80
    assert finals.count(1) + finals.count(3) == 240
    # Every trial stopped at 1 but the last (STOP on its own result) was removed paused.
    assert len(scheduler.depths) == finals.count(1) - 1 > 120
    assert max(scheduler.depths) - min(scheduler.depths) < 10
