"""MedianStoppingRule: Ray Tune's stop points, bad input, state."""

from __future__ import annotations

import json
from typing import Any

import pytest

import atune as tune
from atune.schedulers import MedianStoppingRule, TrialScheduler

SCORES = [5, 3, 8, 1, 6, 2, 7, 0, 4]


def constant_score(config: dict[str, Any]) -> None:
    """Reports the same score every iteration, for up to 20 iterations."""
    for _ in range(20):
        tune.report({"score": config["score"]})


def test_stop_points_on_constant_curves_one_at_a_time(storage: str) -> None:
    """grace_period=2, min_samples_required=2, runs end at iteration 6 (a stopper).

    At time t the others are the trials whose latest time is >= t; their running means
    (over grace_period <= time <= t) are their constant scores.

    * 5: no others; runs to 6.  3: one other (5) < min_samples; runs to 6.
    * 8: t=2 median(5, 3)=4, 8 >= 4; runs to 6.
    * 1: t=2 median(5, 3, 8)=5, 1 < 5: stops at 2.
    * 6: t=2 median(5, 3, 8, 1)=4; t=3 (the 1 dropped out) median(5, 3, 8)=5; runs to 6.
    * 2: t=2 median(5, 3, 8, 1, 6)=5: stops at 2.  7: runs to 6.  0: stops at 2.
    * 4: t=2 median of 5,3,8,1,6,2,7,0 = 4, a tie: continues; t=3, the trials stopped at 2
      dropped out: median(5, 3, 8, 6, 7)=6, 4 < 6: stops at 3.
    """
    results = tune.Tuner(
        constant_score,
        param_space={"score": tune.grid_search(SCORES)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            max_concurrent_trials=1,
            scheduler=MedianStoppingRule(
                time_attr="training_iteration", grace_period=2, min_samples_required=2
            ),
        ),
        run_config=tune.RunConfig(storage_path=storage, stop={"training_iteration": 6}),
    ).fit()
    assert results.num_errors == 0
    by_score = {r.config["score"]: r.metrics["training_iteration"] for r in results}
    assert [by_score[s] for s in SCORES] == [6, 6, 6, 2, 6, 2, 6, 2, 3]


def test_hard_stop_false_pauses_where_it_would_stop_and_resumes_to_the_end(
    storage: str,
) -> None:
    """The case above with ``hard_stop=False``: Ray Tune pauses instead of stopping.

    Trials 1, 2 and 0 are judged below the median at iteration 2 and 4 at iteration 3, as
    above, but paused there; once no new trial waits, FIFO resumes them, they are not judged
    again and run to the stopper's 6 from their checkpoints (their iterations continue).
    """
    results = tune.Tuner(
        _Constant,
        param_space={"score": tune.grid_search(SCORES)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            max_concurrent_trials=1,
            scheduler=MedianStoppingRule(
                time_attr="training_iteration",
                grace_period=2,
                min_samples_required=2,
                hard_stop=False,
            ),
        ),
        run_config=tune.RunConfig(storage_path=storage, stop={"training_iteration": 6}),
    ).fit()
    assert results.num_errors == 0
    paused_at = {}
    for r in results:
        iterations = list(r.metrics_dataframe["training_iteration"])
        assert iterations == list(range(1, 7))  # resumed from the checkpoint, nothing lost
        setups = r.metrics_dataframe["setups"].tolist()
        if setups[-1] > 1:  # started a second time: it was paused
            paused_at[r.config["score"]] = setups.index(2)  # its first iteration after
    assert paused_at == {1: 2, 2: 2, 0: 2, 4: 3}


class _Constant(tune.Trainable):
    """Reports its constant score; counts its set-ups (a resume is a second one)."""

    def setup(self, config: dict[str, Any]) -> None:
        self.setups = getattr(self, "setups", 0) + 1

    def step(self) -> dict[str, Any]:
        return {"score": self.config["score"], "setups": self.setups}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"setups": self.setups}

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.setups += checkpoint["setups"]


def _trial(trial_id: str) -> Any:
    return type("T", (), {"trial_id": trial_id})()


def _run(rule: MedianStoppingRule, trial_id: str, curve: list[float]) -> int:
    """Feed one trial's curve; the iteration it ended at."""
    trial = _trial(trial_id)
    rule.on_trial_add(None, trial)
    result: dict[str, Any] = {}
    for t, value in enumerate(curve, start=1):
        result = {"training_iteration": t, "loss": value}
        if rule.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            break
    rule.on_trial_complete(None, trial, result)
    return int(result["training_iteration"])


def test_min_mode_uses_the_best_so_far_against_the_median_of_running_means() -> None:
    rule = MedianStoppingRule(
        time_attr="training_iteration",
        metric="loss",
        mode="min",
        grace_period=1,
        min_samples_required=2,
    )
    assert _run(rule, "a", [4, 3, 2, 1, 0]) == 5
    assert _run(rule, "b", [4, 3, 2, 1, 0]) == 5
    # t=1: its best, 5, is worse than the median of the running means (4, 4): stops.
    assert _run(rule, "c", [5, 3, 3, 3, 3]) == 1
    # t=1: 4 ties 4; t=2: best 3 beats the means 3.5 (c dropped out: latest time 1);
    # t=3: 3 ties the means 3; t=4: 3 is worse than the means 2.5: stops at 4 of 5.
    assert _run(rule, "d", [4, 3, 3, 3, 3]) == 4


def test_completion_does_not_count_the_last_result_twice() -> None:
    rule = MedianStoppingRule(time_attr="training_iteration", metric="loss", mode="min")
    _run(rule, "a", [1.0, 2.0])
    assert rule.get_state()["history"]["a"] == [[1.0, -1.0], [2.0, -2.0]]


def test_later_result_without_a_numeric_metric_continues() -> None:
    rule = MedianStoppingRule(
        time_attr="training_iteration",
        metric="loss",
        mode="min",
        grace_period=0,
        min_samples_required=1,
    )
    _run(rule, "a", [1.0, 1.0])
    trial = _trial("b")
    for result in ({"training_iteration": 1}, {"training_iteration": 2, "loss": None}):
        assert rule.on_trial_result(None, trial, result) == TrialScheduler.CONTINUE


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"mode": "best"}, "mode must be 'min' or 'max', got 'best'", ValueError),
        ({"grace_period": -1}, "grace_period must be >= 0, got -1", ValueError),
        ({"min_samples_required": 0}, "min_samples_required must be >= 1, got 0", ValueError),
        ({"min_time_slice": -2}, "min_time_slice must be >= 0, got -2", ValueError),
        ({"hard_stop": "no"}, "hard_stop must be a bool, got 'no'", TypeError),
        ({"grace_period": "60"}, "grace_period must be a number, got '60'", TypeError),
        ({"min_samples_required": 2.0}, "min_samples_required must be an int", TypeError),
    ],
)
def test_bad_input_names_the_parameter(
    kwargs: dict[str, Any], match: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=match):
        MedianStoppingRule(**kwargs)


def test_state_round_trips_through_json() -> None:
    def rule() -> MedianStoppingRule:
        return MedianStoppingRule(
            time_attr="training_iteration",
            metric="loss",
            mode="max",
            grace_period=1,
            min_samples_required=2,
        )

    first = rule()
    for index, score in enumerate(SCORES[:5]):
        _run(first, f"t{index}", [score] * 6)
    copy = rule()
    copy.set_state(json.loads(json.dumps(first.get_state(), allow_nan=False)))
    for index, score in enumerate(SCORES[5:], start=5):
        assert _run(copy, f"t{index}", [score] * 6) == _run(first, f"t{index}", [score] * 6)
