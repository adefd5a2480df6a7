"""ASHAScheduler: Ray Tune's rung rule, bad input, metric/mode resolution, state, restore."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune.errors import ConfigError
from atune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, TrialScheduler
from atune.storage._layout import JOURNAL_FILE

SCORES = [5, 2, 8, 0, 6, 3, 7, 1, 4]
# See test_rung_survivors_for_nine_trials_one_at_a_time for the derivation.
EXPECTED_FINALS = [9, 1, 9, 1, 3, 1, 9, 1, 1]


def constant_score(config: dict[str, Any]) -> None:
    """Reports the same score every iteration, for up to 20 iterations."""
    for _ in range(20):
        time.sleep(config.get("sleep", 0))
        tune.report({"score": config["score"]})


def _finals(results: tune.ResultGrid) -> list[int]:
    by_score = {r.config["score"]: r.metrics["training_iteration"] for r in results}
    return [by_score[s] for s in SCORES]


def test_rung_survivors_for_nine_trials_one_at_a_time(storage: str) -> None:
    """Nine trials, grace_period=1, reduction_factor=3, max_t=9, one at a time.

    Rungs are at 1, 3, 9; the cutoff at a rung is the 66.7th percentile (linear
    interpolation) of the scores recorded there before; a trial stops iff its score is
    strictly below it; the score is recorded either way.

    ====  =====  ==========================  ========================  =====
    trial score  rung 1 (recorded; cutoff)   rung 3 (recorded; cutoff) final
    ====  =====  ==========================  ========================  =====
    1     5      -; none                     -; none                   9 (max_t)
    2     2      5; 5.0 -> stop                                        1
    3     8      5,2; 4.0                    5; 5.0                    9
    4     0      2,5,8; 6.0 -> stop                                    1
    5     6      0,2,5,8; 5.0                5,8; 7.0 -> stop          3
    6     3      0,2,5,6,8; 5.667 -> stop                              1
    7     7      0,2,3,5,6,8; 5.333          5,6,8; 6.667              9
    8     1      0,2,3,5,6,7,8; 6.0 -> stop                            1
    9     4      0,1,2,3,5,6,7,8; 6.667 -> stop                        1
    ====  =====  ==========================  ========================  =====
    """
    results = tune.Tuner(
        constant_score,
        param_space={"score": tune.grid_search(SCORES)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            max_concurrent_trials=1,
            scheduler=ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert results.num_errors == 0
    assert _finals(results) == EXPECTED_FINALS


def _feed(scheduler: TrialScheduler, scores: list[float], max_iter: int) -> list[int]:
    """Run trials one at a time through the scheduler alone; their final iterations."""
    finals = []
    for index, score in enumerate(scores):
        trial: Any = type("T", (), {"trial_id": f"t{index}"})()
        scheduler.on_trial_add(None, trial)
        result: dict[str, Any] = {}
        for it in range(1, max_iter + 1):
            result = {"training_iteration": it, "score": score}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, trial, result)
        finals.append(result["training_iteration"])
    return finals


def test_min_mode_negates_scores() -> None:
    scheduler = ASHAScheduler(metric="score", mode="min", max_t=9, reduction_factor=3)
    assert _feed(scheduler, [-s for s in SCORES], 20) == EXPECTED_FINALS


@pytest.mark.parametrize(
    ("max_t", "rf", "milestones"),
    [
        (9, 3, [9, 3, 1]),
        (100, 4, [64, 16, 4, 1]),
        (1000, 10, [100, 10, 1]),  # Ray's float log ratio drops the rung at max_t
        (243, 3, [81, 27, 9, 3, 1]),
        (125, 5, [125, 25, 5, 1]),
    ],
)
def test_rung_milestones_follow_rays_expression(max_t: int, rf: int, milestones: list[int]) -> None:
    rungs = ASHAScheduler(max_t=max_t, reduction_factor=rf).rungs()
    assert [m for m, _ in rungs[0]] == milestones


def test_nan_scores_never_stop_a_trial() -> None:
    scheduler = ASHAScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    assert _feed(scheduler, [math.nan, math.nan, 1.0], 20) == [9, 9, 9]


def test_later_result_without_a_numeric_metric_continues() -> None:
    scheduler = ASHAScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    trial: Any = type("T", (), {"trial_id": "a"})()
    scheduler.on_trial_add(None, trial)
    for result in ({"training_iteration": 1}, {"training_iteration": 2, "score": "high"}):
        assert scheduler.on_trial_result(None, trial, result) == TrialScheduler.CONTINUE


def test_brackets_are_drawn_from_a_seeded_rng() -> None:
    def draw(seed: int) -> dict[str, int]:
        scheduler = ASHAScheduler(metric="s", mode="max", max_t=81, brackets=3, seed=seed)
        for i in range(30):
            scheduler.on_trial_add(None, type("T", (), {"trial_id": f"t{i}"})())
        return dict(scheduler.get_state()["trial_info"])

    assert draw(1) == draw(1)
    assert len(set(draw(1).values())) > 1


def test_the_bracket_rng_continues_after_a_state_round_trip() -> None:
    def scheduler() -> AsyncHyperBandScheduler:
        return ASHAScheduler(metric="s", mode="max", max_t=81, brackets=3, seed=5)

    first = scheduler()
    for i in range(10):
        first.on_trial_add(None, type("T", (), {"trial_id": f"t{i}"})())
    copy = scheduler()
    copy.set_state(json.loads(json.dumps(first.get_state())))
    for s in (first, copy):
        for i in range(10, 30):
            s.on_trial_add(None, type("T", (), {"trial_id": f"t{i}"})())
    assert copy.get_state()["trial_info"] == first.get_state()["trial_info"]


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        (
            {"grace_period": 10, "max_t": 9},
            r"grace_period \(10\) must be <= max_t \(9\)",
            ValueError,
        ),
        ({"reduction_factor": 1}, "reduction_factor must be > 1, got 1", ValueError),
        ({"reduction_factor": 0.5}, "reduction_factor must be > 1, got 0.5", ValueError),
        ({"brackets": 0}, "brackets must be >= 1, got 0", ValueError),
        ({"mode": "maximize"}, "mode must be 'min' or 'max', got 'maximize'", ValueError),
        ({"max_t": 0}, "max_t must be > 0, got 0", ValueError),
        ({"grace_period": 0}, "grace_period must be > 0, got 0", ValueError),
        ({"max_t": "9"}, "max_t must be a number, got '9'", TypeError),
        ({"brackets": 1.5}, "brackets must be an int, got 1.5", TypeError),
    ],
)
def test_bad_input_names_the_parameter(
    kwargs: dict[str, Any], match: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=match):
        AsyncHyperBandScheduler(**kwargs)


def _fit(storage: str, scheduler: TrialScheduler, **tune_kwargs: Any) -> tune.ResultGrid:
    return tune.Tuner(
        constant_score,
        param_space={"score": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local", scheduler=scheduler, **tune_kwargs),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()


def test_metric_and_mode_set_in_both_places_differently_is_an_error(storage: str) -> None:
    with pytest.raises(ConfigError, match=r"'score'.*'other'|'other'.*'score'"):
        _fit(storage, ASHAScheduler(metric="score", mode="max"), metric="other", mode="max")


def test_missing_metric_fails_before_any_trial_naming_what_to_set(storage: str) -> None:
    with pytest.raises(ConfigError, match="AsyncHyperBandScheduler has no metric and mode"):
        _fit(storage, ASHAScheduler())
    with pytest.raises(ConfigError, match="has no mode"):
        _fit(storage, ASHAScheduler(metric="score"))


def test_metric_and_mode_from_tune_config(storage: str) -> None:
    scheduler = ASHAScheduler(max_t=3)
    results = _fit(storage, scheduler, metric="score", mode="max")
    assert scheduler.metric == "score" and scheduler.mode == "max"
    assert max(r.metrics["training_iteration"] for r in results) == 3  # max_t stopped it


def test_a_first_result_without_the_schedulers_metric_fails_the_trial_by_name(
    storage: str,
) -> None:
    results = _fit(storage, ASHAScheduler(metric="accuracy", mode="max"))
    assert results.num_errors == 2
    assert all("accuracy" in str(e) for e in results.errors)


def test_state_round_trips_through_json() -> None:
    scheduler = ASHAScheduler(metric="score", mode="max", max_t=9, reduction_factor=3, seed=3)
    _feed(scheduler, [*SCORES[:5], math.nan, math.inf], 20)
    state = json.loads(json.dumps(scheduler.get_state(), allow_nan=False))
    copy = ASHAScheduler(metric="score", mode="max", max_t=9, reduction_factor=3, seed=3)
    copy.set_state(state)
    assert repr(copy.rungs()) == repr(scheduler.rungs())
    assert _feed(copy, SCORES[5:], 20) == _feed(scheduler, SCORES[5:], 20)


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import atune as tune
from atune.schedulers import ASHAScheduler
from test_asha import SCORES, constant_score

tune.Tuner(
    constant_score,
    param_space={{"score": tune.grid_search(SCORES), "sleep": 0.3}},
    tune_config=tune.TuneConfig(
        backend="local", metric="score", mode="max", max_concurrent_trials=1,
        scheduler=ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3),
    ),
    run_config=tune.RunConfig(name="asha", storage_path={storage!r}),
).fit()
"""


def _completed(journal: Path) -> int:
    if not journal.exists():
        return 0
    return journal.read_text().count('"trial_completed"')


@pytest.mark.slow
def test_driver_killed_mid_run_restore_continues_the_rungs(storage: str) -> None:
    """SIGKILL the driver after three trials ended; the restored run decides as if not killed."""
    script = DRIVER.format(here=str(Path(__file__).parent), storage=storage)
    log = Path(storage, "driver.log").open("w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    journal = Path(storage, "asha", JOURNAL_FILE)
    deadline = time.monotonic() + 90
    try:
        while _completed(journal) < 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("no kill mid-run:\n" + Path(storage, "driver.log").read_text()[-3000:])
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    # Mid-run: trial 5 (score 6), the first that a rung of the earlier trials stops, has
    # not ended; without their rung records it would run to max_t.
    assert _completed(journal) <= 4
    assert '"scheduler_state_saved"' in journal.read_text()

    results = tune.Tuner.restore(str(Path(storage, "asha")), constant_score).fit()
    assert results.num_errors == 0
    assert _finals(results) == EXPECTED_FINALS


@pytest.mark.parametrize("reduction_factor", [2, 3, 4, 5, 1.5, 7.3])
def test_rung_cutoff_is_numpys_percentile_to_the_bit(reduction_factor: float) -> None:
    """The cutoff (kept sorted per rung, computed in Python) is the float np.percentile gives.

    Random scores with ties, duplicates, zeros of both signs and infinities, for every rung
    size up to 300: decisions at a tie with the cutoff depend on the last bit.
    """
    import random

    import numpy as np

    from atune.schedulers.async_hyperband import _Bracket, _percentile

    rng = random.Random(7)
    q = _Bracket([1.0], reduction_factor, True).quantile
    pool = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, math.inf, -math.inf, 1e300, -1e-300]
    values: list[float] = []
    for _ in range(300):
        draw = rng.random()
        if draw < 0.2:
            values.append(rng.choice(pool))
        elif draw < 0.3 and values:
            values.append(rng.choice(values))
        else:
            values.append(rng.uniform(-5, 5))
        with np.errstate(invalid="ignore"):
            expected = float(np.percentile(values, q))
        got = _percentile(sorted(values), q)
        assert got is not None
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (values, q)
    assert _percentile([], q) is None


def test_rung_records_survive_set_state_with_their_sorted_scores() -> None:
    """A scheduler restored from ``get_state`` cuts off exactly as the original (NaN too)."""

    class _Trial:
        def __init__(self, trial_id: str) -> None:
            self.trial_id = trial_id

    def decide(scheduler: ASHAScheduler, trial_id: str, score: float) -> str:
        trial: Any = _Trial(trial_id)
        scheduler.on_trial_add(None, trial)
        return scheduler.on_trial_result(None, trial, {"training_iteration": 1, "m": score})

    def make() -> ASHAScheduler:
        return ASHAScheduler(metric="m", mode="max", max_t=9, grace_period=1, reduction_factor=3)

    original = make()
    for number, score in enumerate([5.0, math.nan, 2.0, 8.0, 0.0, 6.0]):
        decide(original, f"t{number}", score)
    copy = make()
    copy.set_state(json.loads(json.dumps(original.get_state())))
    # Rung 1 holds 0, 2, 5, 6, 8 (and a NaN, ignored): the cutoffs are 5.667, 5.333, 6.
    for scheduler in (original, copy):
        decisions = [decide(scheduler, f"n{n}", s) for n, s in enumerate([4.0, 7.0, 6.0])]
        assert decisions == [TrialScheduler.STOP, TrialScheduler.CONTINUE, TrialScheduler.CONTINUE]
    assert repr(copy.rungs()) == repr(original.rungs())
