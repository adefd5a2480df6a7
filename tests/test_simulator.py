"""The virtual-time simulator: real core, driver and schedulers against learning curves.

The scheduler checks here run hundreds of simulated trials and compare every decision
with an independent transcription of Ray Tune's rule (``reference/schedulers-and-search.md``)
fed the results in the order the journal recorded them.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune import schedulers
from atune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
from atune.simulator import LearningCurves, Simulator, config_key

EPOCH = 1_704_067_200.0


def noisy_curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    """A decreasing loss with deterministic noise; 40 iterations of 36 s each."""
    if iteration > 40:
        return None
    noise = random.Random(f"{config['a']}:{iteration}").gauss(0, 0.05)
    return {"loss": config["a"] + math.exp(-iteration / 8) + noise}, 36.0


def run(
    path: Path,
    curves: Any = noisy_curve,
    *,
    num_samples: int = 50,
    scheduler: Any = None,
    workers: int = 4,
    seed: int = 0,
    param_space: dict[str, Any] | None = None,
    name: str = "exp",
    max_iterations: int | None = None,
    **tune_kwargs: Any,
) -> tuple[tune.ResultGrid, Path]:
    tuner = tune.Tuner(
        Simulator(curves, workers=workers, seed=seed, max_iterations=max_iterations),
        param_space=param_space if param_space is not None else {"a": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=num_samples, scheduler=scheduler, **tune_kwargs
        ),
        run_config=tune.RunConfig(storage_path=str(path), name=name, verbose=0),
    )
    grid = tuner.fit()
    return grid, Path(tuner.experiment_path)


def journal(experiment: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (experiment / "events.jsonl").read_text().splitlines()]


def finals(experiment: Path) -> dict[str, int]:
    """Each trial's last reported ``training_iteration``, from the journal."""
    last: dict[str, int] = {}
    for event in journal(experiment):
        if event["type"] == "result_reported":
            last[event["trial_id"]] = event["result"]["training_iteration"]
    return last


# --------------------------------------------------------------------- determinism
def test_same_seed_writes_byte_identical_journals(tmp_path: Path) -> None:
    def study(seed: int) -> bytes:
        shutil.rmtree(tmp_path / "s", ignore_errors=True)
        _, experiment = run(
            tmp_path / "s",
            num_samples=50,
            workers=6,
            seed=seed,
            scheduler=ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3),
        )
        return (experiment / "events.jsonl").read_bytes()

    first, second, other = study(0), study(0), study(1)
    assert first == second
    assert first.count(b'"result_reported"') > 150  # a real study: hundreds of results
    assert other != first  # another seed: other configs, other trial ids


def test_virtual_time_stamps_and_results(tmp_path: Path) -> None:
    grid, experiment = run(tmp_path, num_samples=3, workers=1)
    events = journal(experiment)
    assert events[0]["ts"] == EPOCH  # virtual time starts at 2024-01-01 UTC
    # Three trials of 40 iterations of 36 s, one at a time: 72 virtual minutes.
    assert events[-1]["ts"] == pytest.approx(EPOCH + 3 * 40 * 36)
    result = grid[0].metrics
    assert result["training_iteration"] == 40
    assert result["time_total_s"] == 40 * 36.0
    assert result["done"] is True
    assert result["hostname"] == "simulator"
    assert result["date"].startswith("2024-01-01_")
    trial_ids = sorted(finals(experiment))
    assert trial_ids == [f"{Simulator(noisy_curve).uid}_{n:05d}" for n in (0, 1, 2)]


def test_time_budget_is_virtual(tmp_path: Path) -> None:
    _, experiment = run(tmp_path, num_samples=20, workers=2, time_budget_s=3600)
    events = journal(experiment)
    assert events[-1]["ts"] <= EPOCH + 3600 + 10
    assert sum(1 for e in events if e["type"] == "result_reported") == 2 * 3600 // 36


# --------------------------------------------------------------------- ASHA
def rung_rule(
    milestones: list[float], rf: float, max_t: float
) -> Callable[[str, float, float], bool]:
    """Ray Tune's ASHA rule (one bracket, stop_last_trials): True when it stops the trial.

    ``score`` is sign-adjusted (higher is better); percentiles interpolate linearly.
    """
    recorded: dict[float, dict[str, float]] = {m: {} for m in milestones}

    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        rank = (len(ordered) - 1) * q / 100
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    def on_result(trial_id: str, t: float, score: float) -> bool:
        if t >= max_t:
            return True
        for milestone in sorted(milestones, reverse=True):
            if t < milestone or trial_id in recorded[milestone]:
                continue
            others = list(recorded[milestone].values())
            cutoff = percentile(others, (1 - 1 / rf) * 100) if others else None
            recorded[milestone][trial_id] = score
            return cutoff is not None and score < cutoff
        return False

    return on_result


def check_against_rule(experiment: Path, rule: Callable[[str, float, float], bool]) -> int:
    """Feed the journal's results to ``rule`` in order; every trial must end where it says."""
    stops = 0
    seen: dict[str, int] = {}
    stopped: set[str] = set()
    for event in journal(experiment):
        if event["type"] != "result_reported":
            continue
        trial_id, result = event["trial_id"], event["result"]
        assert trial_id not in stopped, f"{trial_id} reported after the rule stopped it"
        assert result["training_iteration"] == seen.get(trial_id, 0) + 1
        seen[trial_id] = result["training_iteration"]
        if rule(trial_id, result["training_iteration"], -result["loss"]):
            stopped.add(trial_id)
            stops += 1
    assert stopped == set(seen), "a trial ended where the rule did not stop it"
    return stops


def test_asha_worked_example_one_at_a_time(tmp_path: Path) -> None:
    """Scores 5,2,8,0,6,3,7,1,4 (grace 1, rf 3, max_t 9) end at 9,1,9,1,3,1,9,1,1."""
    scores = [5, 2, 8, 0, 6, 3, 7, 1, 4]

    def constant(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float]:
        return {"score": config["score"]}, 60.0

    tuner = tune.Tuner(
        Simulator(constant, workers=1, max_iterations=20),
        param_space={"score": tune.grid_search(scores)},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    by_score = {r.config["score"]: r.metrics["training_iteration"] for r in grid}
    assert [by_score[s] for s in scores] == [9, 1, 9, 1, 3, 1, 9, 1, 1]


@pytest.mark.parametrize("workers", [1, 8])
def test_asha_decisions_on_300_trials_match_rays_rung_rule(tmp_path: Path, workers: int) -> None:
    _, experiment = run(
        tmp_path,
        num_samples=300,
        workers=workers,
        max_iterations=30,
        scheduler=ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3),
    )
    stops = check_against_rule(experiment, rung_rule([1, 3, 9, 27], 3, 27))
    assert stops == 300
    ended = finals(experiment)
    assert len(ended) == 300
    assert set(ended.values()) <= {1, 3, 9, 27}  # stops happen at rungs only
    assert sum(1 for t in ended.values() if t == 27) >= 1


# ----------------------------------------------------------------- median stopping
def median_rule(grace: float, min_samples: int) -> Callable[[str, float, float], bool]:
    """Ray Tune's MedianStoppingRule (hard stop, no time slicing), score higher-is-better."""
    history: dict[str, list[tuple[float, float]]] = {}

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def on_result(trial_id: str, t: float, score: float) -> bool:
        history.setdefault(trial_id, []).append((t, score))
        if t < grace:
            return False
        means = []
        for other, points in history.items():
            if other == trial_id or points[-1][0] < t:
                continue
            window = [s for time, s in points if grace <= time <= t]
            if window:
                means.append(sum(window) / len(window))
        if len(means) < min_samples:
            return False
        return max(s for _, s in history[trial_id]) < median(means)

    return on_result


@pytest.mark.parametrize("workers", [1, 6])
def test_median_stopping_decisions_on_150_trials_match_rays_rule(
    tmp_path: Path, workers: int
) -> None:
    _, experiment = run(
        tmp_path,
        num_samples=150,
        workers=workers,
        max_iterations=12,
        scheduler=MedianStoppingRule(
            time_attr="training_iteration", grace_period=3, min_samples_required=3
        ),
    )
    rule = median_rule(3, 3)
    stopped_early = 0
    seen: dict[str, int] = {}
    for event in journal(experiment):
        if event["type"] != "result_reported":
            continue
        trial_id, result = event["trial_id"], event["result"]
        t = result["training_iteration"]
        assert t == seen.get(trial_id, 0) + 1
        seen[trial_id] = t
        stops = rule(trial_id, t, -result["loss"])
        # A trial ends exactly where the rule stops it, or at the curve's end (done).
        assert stops == (result["done"] and t < 12), (trial_id, t)
        stopped_early += stops
    assert len(seen) == 150
    assert 0 < stopped_early < 150


# ------------------------------------------------------------- every scheduler
FACTORIES: dict[str, Callable[[], Any]] = {
    "FIFOScheduler": FIFOScheduler,
    "ASHAScheduler": lambda: ASHAScheduler(max_t=27, brackets=3, seed=7),
    "AsyncHyperBandScheduler": lambda: schedulers.AsyncHyperBandScheduler(max_t=27, seed=7),
    "MedianStoppingRule": lambda: MedianStoppingRule(time_attr="training_iteration"),
    "HyperBandScheduler": lambda: schedulers.HyperBandScheduler(max_t=27),
    "PopulationBasedTraining": lambda: schedulers.PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=5,
        hyperparam_mutations={"a": tune.uniform(0, 1)},
        seed=7,
    ),
    "PB2": lambda: schedulers.PB2(
        time_attr="training_iteration",
        perturbation_interval=5,
        hyperparam_bounds={"a": [0.0, 1.0]},
        seed=7,
    ),
}

ELSEWHERE = {
    # It replays the policy log of an earlier PBT run, so it needs one first.
    "PopulationBasedTrainingReplay": "tests/schedulers/test_pbt_replay.py",
}


def _exported_schedulers() -> list[str]:
    return sorted(
        name
        for name in schedulers.__all__
        if isinstance(getattr(schedulers, name), type)
        and issubclass(getattr(schedulers, name), schedulers.TrialScheduler)
        and name not in ("TrialScheduler", *ELSEWHERE)
    )


@pytest.mark.parametrize("name", _exported_schedulers())
def test_every_scheduler_runs_deterministically_in_virtual_time(tmp_path: Path, name: str) -> None:
    """Each exported scheduler: 60 trials twice, equal journals, every trial ended."""
    factory = FACTORIES.get(name)
    if factory is None:
        pytest.fail(f"add a factory for the new scheduler {name} to FACTORIES")

    def study() -> tuple[tune.ResultGrid, bytes]:
        shutil.rmtree(tmp_path / "s", ignore_errors=True)
        grid, experiment = run(
            tmp_path / "s", num_samples=60, workers=8, max_iterations=12, scheduler=factory()
        )
        return grid, (experiment / "events.jsonl").read_bytes()

    grid, first = study()
    _, second = study()
    assert first == second
    assert len(grid) == 60
    assert grid.num_errors == 0
    assert all(r.metrics["training_iteration"] >= 1 for r in grid)


# ------------------------------------------------------------------- curves
def test_learning_curves_from_rows_csv_and_dict_agree(tmp_path: Path) -> None:
    rows = [
        {"lr": lr, "depth": depth, "training_iteration": i, "time_this_iter_s": 10, "acc": a}
        for lr in (0.1, 0.01)
        for depth in (2, 4)
        for i, a in enumerate([0.5 + lr * depth * k for k in range(1, 4)], 1)
    ]
    from_rows = LearningCurves.from_rows(rows, config_keys=["lr", "depth"])
    csv_path = tmp_path / "curves.csv"
    csv_path.write_text(
        "lr,depth,training_iteration,time_this_iter_s,acc\n"
        + "".join(
            f"{r['lr']},{r['depth']},{r['training_iteration']},{r['time_this_iter_s']},{r['acc']}\n"
            for r in rows
        )
    )
    from_csv = LearningCurves.from_csv(csv_path, config_keys=["lr", "depth"])
    from_dict = LearningCurves(
        {
            (config_key(r, ["lr", "depth"]), r["training_iteration"]): ({"acc": r["acc"]}, 10)
            for r in rows
        }
    )
    for curves in (from_rows, from_csv, from_dict):
        assert len(curves) == 4
        assert curves({"lr": 0.1, "depth": 4}, 3) == ({"acc": 0.5 + 0.1 * 4 * 3}, 10.0)
        assert curves({"depth": 2, "lr": 0.01}, 4) is None  # past the curve's end
        assert curves.config_keys == ("depth", "lr")
    space = from_csv.param_space()
    assert space["lr"].categories == [0.01, 0.1]

    grid = tune.Tuner(
        Simulator(from_csv, workers=2),
        param_space={"lr": tune.grid_search([0.1, 0.01]), "depth": tune.grid_search([2, 4])},
        tune_config=tune.TuneConfig(metric="acc", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0),
    ).fit()
    best = grid.get_best_result()
    assert best.config == {"lr": 0.1, "depth": 4}
    assert best.metrics["training_iteration"] == 3
    assert best.metrics["time_total_s"] == 30.0


def test_learning_curves_from_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "x": [1, 1, 2, 2],
            "training_iteration": [1, 2, 1, 2],
            "time_this_iter_s": [5.0, 5.0, 6.0, 6.0],
            "loss": [3.0, 2.0, 4.0, float("nan")],
        }
    )
    curves = LearningCurves.from_dataframe(frame, config_keys=["x"])
    assert curves({"x": 1}, 2) == ({"loss": 2.0}, 5.0)
    assert curves({"x": 2}, 2) == ({}, 6.0)  # NaN cells are left out
    assert type(curves({"x": 1}, 1)[0]["loss"]) is float  # type: ignore[index]


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="no iterations \\[2\\]"):
        LearningCurves({((("x", 1),), 1): ({}, 1.0), ((("x", 1),), 3): ({}, 1.0)})
    with pytest.raises(ValueError, match="count from 1"):
        LearningCurves({((("x", 1),), 0): ({}, 1.0)})
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        LearningCurves({((("x", 1),), 1): ({}, -1.0)})
    with pytest.raises(ValueError, match="needs the keys"):
        LearningCurves({((("x", 1),), 1): ({}, 1.0), ((("y", 1),), 1): ({}, 1.0)})
    with pytest.raises(ValueError, match="has no \\['seconds'\\]"):
        LearningCurves.from_rows(
            [{"x": 1, "it": 1}], config_keys=["x"], iteration="it", seconds="seconds"
        )
    with pytest.raises(TypeError, match="curves must be"):
        Simulator(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        Simulator(noisy_curve, workers=0)
    with pytest.raises(ValueError, match="launch_s"):
        Simulator(noisy_curve, launch_s=-1)


def test_a_config_missing_from_the_table_fails_its_trial_only(tmp_path: Path) -> None:
    curves = LearningCurves({((("x", 1),), 1): ({"loss": 1.0}, 1.0)})
    grid, _ = run(tmp_path, curves, num_samples=1, param_space={"x": tune.grid_search([1, 2])})
    assert grid.num_errors == 1
    (errored,) = [r for r in grid if r.error is not None]
    assert "no curve for the config {'x': 2}" in str(errored.error)
    assert [r.metrics["loss"] for r in grid if r.error is None] == [1.0]


def test_a_curve_function_that_raises_fails_its_trial(tmp_path: Path) -> None:
    def broken(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float]:
        if iteration == 3:
            raise ZeroDivisionError("diverged")
        return {"loss": 1.0 / iteration}, 1.0

    grid, _ = run(tmp_path, broken, num_samples=2)
    assert grid.num_errors == 2
    assert all(isinstance(r.error, ZeroDivisionError) for r in grid)
    assert all(r.metrics["training_iteration"] == 2 for r in grid)


# ------------------------------------------------------------------ checkpoints
def test_checkpoints_carry_the_iteration_across_restores(tmp_path: Path) -> None:
    """Interrupt a simulated study, restore it: trials continue from their checkpoints."""
    curve = noisy_curve

    async def interrupted() -> str:
        tuner = tune.Tuner(
            Simulator(curve, workers=2),
            param_space={"a": tune.grid_search([0.1, 0.2, 0.3])},
            tune_config=tune.TuneConfig(metric="loss", mode="min"),
            run_config=tune.RunConfig(
                storage_path=str(tmp_path),
                name="exp",
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=5),
            ),
        )
        async with tuner.start() as handle:
            async for event in handle.events():
                if (
                    isinstance(event, tune.events.CheckpointSaved)
                    and event.training_iteration == 10
                ):
                    handle.cancel()
                    break
        return tuner.experiment_path

    import anyio

    path = anyio.run(interrupted)
    before = finals(Path(path))
    assert before and max(before.values()) < 40
    grid = tune.Tuner.restore(path, Simulator(curve, workers=2)).fit()
    assert grid.num_errors == 0
    assert [r.metrics["training_iteration"] for r in grid] == [40, 40, 40]
    restarts = [
        e
        for e in journal(Path(path))
        if e["type"] == "trial_started" and e.get("restored_from") is not None
    ]
    assert restarts  # resumed from a checkpoint, not from scratch
    uninterrupted, _ = run(
        tmp_path / "plain",
        curve,
        num_samples=1,
        workers=2,
        param_space={"a": tune.grid_search([0.1, 0.2, 0.3])},
    )
    assert [r.metrics["loss"] for r in grid] == [r.metrics["loss"] for r in uninterrupted]
