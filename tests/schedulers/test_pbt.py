"""PopulationBasedTraining's decisions, driven through its hooks with a recording controller.

The core side (pausing, ``exploit_trial``) is stood in for by
:class:`RecordingController`; the trials are real :class:`~atune._trial.Trial` objects.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from _controller_stand_in import RecordingController, add_checkpoint, make_trial

import atune as tune
from atune._trial import Trial
from atune.errors import MetricError
from atune.schedulers import PopulationBasedTraining, TrialScheduler
from atune.schedulers._explore import clip_to_domain, explore, fill_config
from atune.schedulers._restorable import scheduler_from_data, scheduler_to_data

CONTINUE, PAUSE, NOOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.NOOP


def _pbt(**kwargs: Any) -> PopulationBasedTraining:
    args: dict[str, Any] = {
        "time_attr": "training_iteration",
        "metric": "score",
        "mode": "max",
        "perturbation_interval": 2,
        "hyperparam_mutations": {"lr": tune.uniform(0.0, 1.0), "bs": [16, 32, 64, 128]},
        "seed": 0,
    }
    args.update(kwargs)
    return PopulationBasedTraining(**args)


def _population(
    scheduler: PopulationBasedTraining, n: int, path: str = "/tmp/exp"
) -> tuple[list[Trial], RecordingController]:
    trials = [make_trial(i, {"lr": 0.1 * (i + 1), "bs": 32}, path) for i in range(n)]
    controller = RecordingController(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    return trials, controller


def _report(
    scheduler: PopulationBasedTraining,
    controller: RecordingController,
    trial: Trial,
    it: int,
    score: float,
) -> str:
    result = {"training_iteration": it, "score": score}
    decision = scheduler.on_trial_result(controller, trial, result)
    trial.last_result = result  # the core records the result after the decision
    return decision


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"quantile_fraction": 0.6}, ValueError, ["quantile_fraction", "0.6"]),
        ({"quantile_fraction": -0.1}, ValueError, ["quantile_fraction", "-0.1"]),
        ({"quantile_fraction": "a"}, TypeError, ["quantile_fraction", "'a'"]),
        ({"perturbation_interval": 0}, ValueError, ["perturbation_interval", "0"]),
        ({"burn_in_period": -1}, ValueError, ["burn_in_period", "-1"]),
        ({"resample_probability": 1.5}, ValueError, ["resample_probability", "1.5"]),
        ({"perturbation_factors": []}, ValueError, ["perturbation_factors", "[]"]),
        ({"perturbation_factors": "ab"}, TypeError, ["perturbation_factors", "'ab'"]),
        ({"perturbation_factors": (1.2, "x")}, TypeError, ["perturbation_factors", "'x'"]),
        ({"mode": "best"}, ValueError, ["mode", "'best'"]),
        ({"hyperparam_mutations": {"lr": 0.1}}, TypeError, ["'lr'", "0.1"]),
        ({"hyperparam_mutations": {"a": {"b": "x"}}}, TypeError, ["'b'", "'x'"]),
        ({"hyperparam_mutations": {"lr": []}}, ValueError, ["'lr'", "[]"]),
        (
            {"hyperparam_mutations": {"lr": tune.sample_from(lambda _: 1)}},
            ValueError,
            ["'lr'", "sample_from"],
        ),
        ({"hyperparam_mutations": {"lr": tune.grid_search([1, 2])}}, ValueError, ["grid_search"]),
        ({"hyperparam_mutations": [1, 2]}, TypeError, ["hyperparam_mutations", "[1, 2]"]),
        ({"hyperparam_mutations": {}}, ValueError, ["hyperparam_mutations", "custom_explore_fn"]),
        ({"custom_explore_fn": 3}, TypeError, ["custom_explore_fn", "3"]),
        ({"seed": "1"}, TypeError, ["seed", "'1'"]),
    ],
)
def test_bad_input_names_the_parameter_and_value(
    kwargs: dict[str, Any], error: type[Exception], names: list[str]
) -> None:
    with pytest.raises(error) as info:
        _pbt(**kwargs)
    for name in names:
        assert name in str(info.value)


def test_custom_explore_fn_alone_is_enough() -> None:
    _pbt(hyperparam_mutations=None, custom_explore_fn=lambda c: c)


# ---------------------------------------------------------------------- on_trial_add


def test_missing_mutation_keys_are_sampled_into_the_config() -> None:
    scheduler = _pbt(
        hyperparam_mutations={
            "lr": tune.loguniform(1e-4, 1e-1),
            "bs": [16, 32],
            "f": lambda: 7,
            "opt": {"mom": tune.uniform(0.5, 0.9)},
        }
    )
    trial = make_trial(0, {"bs": 64})
    scheduler.on_trial_add(RecordingController([trial]), trial)
    assert trial.config["bs"] == 64  # present: kept
    assert 1e-4 <= trial.config["lr"] < 1e-1
    assert trial.config["f"] == 7
    assert 0.5 <= trial.config["opt"]["mom"] < 0.9


def test_filled_values_come_from_the_seed() -> None:
    def filled(seed: int) -> list[Any]:
        scheduler = _pbt(seed=seed)
        trials = [make_trial(i, {}) for i in range(5)]
        for trial in trials:
            scheduler.on_trial_add(None, trial)
        return [t.config for t in trials]

    assert filled(3) == filled(3)
    assert filled(3) != filled(4)


# ---------------------------------------------------------------------- explore


def _explore(config: dict[str, Any], mutations: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("resample_probability", 0.0)
    kw.setdefault("perturbation_factors", (1.2, 0.8))
    return explore(config, mutations, rng=kw.pop("rng", random.Random(0)), **kw)


def test_list_values_move_to_a_neighbour_clamped_at_the_ends() -> None:
    values = [1, 2, 3]
    seen = set()
    rng = random.Random(1)
    for _ in range(50):
        new, ops = _explore({"x": 1}, {"x": values}, rng=rng)
        seen.add((new["x"], ops["x"]))
    assert seen == {(1, "shift left (noop)"), (2, "shift right")}


def test_a_value_not_in_the_list_is_resampled() -> None:
    new, ops = _explore({"x": 99}, {"x": [1, 2, 3]})
    assert new["x"] in (1, 2, 3) and ops["x"] == "resample"


def test_numbers_are_multiplied_by_a_perturbation_factor() -> None:
    rng = random.Random(2)
    factors = {
        _explore({"lr": 0.5}, {"lr": tune.uniform(0, 1)}, rng=rng)[0]["lr"] / 0.5 for _ in range(40)
    }
    assert {round(f, 9) for f in factors} == {1.2, 0.8}
    new, ops = _explore({"lr": 0.5}, {"lr": tune.uniform(0, 1)}, perturbation_factors=(3.0,))
    assert new["lr"] == pytest.approx(1.5) and ops["lr"] == "* 3.0"


def test_resample_probability_one_always_resamples_from_the_domain() -> None:
    rng = random.Random(3)
    for _ in range(20):
        new, ops = _explore(
            {"lr": 5.0, "f": 0},
            {"lr": tune.uniform(0, 1), "f": lambda: 42},
            rng=rng,
            resample_probability=1.0,
        )
        assert 0 <= new["lr"] < 1 and new["f"] == 42
        assert ops == {"lr": "resample", "f": "resample"}


def test_ints_are_rounded_and_bools_stay_bools() -> None:
    new, _ = _explore(
        {"n": 10, "b": True}, {"n": lambda: 1, "b": lambda: False}, perturbation_factors=(1.26,)
    )
    assert new["n"] == 13 and isinstance(new["n"], int)
    assert new["b"] is True


def test_nested_mutations_explore_the_nested_config() -> None:
    new, ops = _explore(
        {"opt": {"lr": 1.0, "keep": 3}}, {"opt": {"lr": lambda: 0}}, perturbation_factors=(2.0,)
    )
    assert new == {"opt": {"lr": 2.0, "keep": 3}}
    assert ops == {"opt": {"lr": "* 2.0"}}


def test_without_clip_a_perturbed_value_leaves_its_domain_as_in_ray_tune() -> None:
    new, _ = _explore({"p": 0.9}, {"p": tune.uniform(0, 0.9)}, perturbation_factors=(1.2,))
    assert new["p"] == pytest.approx(1.08)


def test_clip_keeps_perturbed_values_in_their_domain() -> None:
    mutations = {
        "p": tune.uniform(0, 0.9),
        "lr": tune.loguniform(1e-4, 1e-1),
        "n": tune.randint(1, 10),
        "q": tune.quniform(0.0, 1.0, 0.25),
    }
    config = {"p": 0.9, "lr": 0.1, "n": 9, "q": 1.0}
    new, _ = _explore(config, mutations, perturbation_factors=(1.2,), clip=True)
    assert new == {"p": 0.9, "lr": 0.1, "n": 9, "q": 1.0}
    low, _ = _explore({"lr": 1e-4, "n": 1}, mutations, perturbation_factors=(0.5,), clip=True)
    assert low["lr"] == 1e-4 and low["n"] == 1


def test_clip_moves_a_categorical_domain_to_a_neighbour() -> None:
    choice = tune.choice(["sgd", "adam", "rmsprop"])
    rng = random.Random(0)
    seen = {_explore({"o": "adam"}, {"o": choice}, rng=rng, clip=True)[0]["o"] for _ in range(30)}
    assert seen == {"sgd", "rmsprop"}


def test_clip_rounds_to_the_quantization_step() -> None:
    assert clip_to_domain(tune.quniform(0.0, 1.0, 0.25), 0.6) == 0.5
    assert clip_to_domain(tune.qrandint(0, 10, 5), 12) == 10
    assert clip_to_domain(tune.randint(0, 10), 10) == 9  # upper is exclusive


def test_fill_config_recurses_into_dicts() -> None:
    config: dict[str, Any] = {}
    filled = fill_config(config, {"a": {"b": [1]}, "c": [2]}, random.Random(0))
    assert config == filled == {"a": {"b": 1}, "c": 2}


# ---------------------------------------------------------------------- exploit


def _round(
    scheduler: PopulationBasedTraining,
    controller: RecordingController,
    trials: list[Trial],
    it: int,
    scores: list[float],
) -> list[str]:
    return [_report(scheduler, controller, t, it, s) for t, s in zip(trials, scores, strict=True)]


def test_the_bottom_trial_exploits_a_top_trial_that_has_a_checkpoint() -> None:
    scheduler = _pbt(quantile_fraction=0.5, resample_probability=0.0)
    trials, controller = _population(scheduler, 4)
    add_checkpoint(trials[2], 2)
    # One at a time, each report ranks those recorded so far; each reporter is on top.
    decisions = _round(scheduler, controller, trials, 2, [1.0, 2.0, 3.0, 4.0])
    assert decisions == [CONTINUE] * 4
    assert controller.exploits() == []
    # t0 falls further: bottom two are t0, t1; top two t2 (with a checkpoint) and t3.
    assert _report(scheduler, controller, trials[0], 4, 0.5) == NOOP
    [(_, trial_id, donor_id, config, tag)] = controller.exploits()
    assert (trial_id, donor_id) == ("t0", "t2")
    # t2's config {lr: 0.3, bs: 32}, explored: lr times 1.2 or 0.8, bs a neighbour of 32.
    assert config["lr"] in (pytest.approx(0.36), pytest.approx(0.24))
    assert config["bs"] in (16, 64)
    assert tag == f"0_tag@perturbed[lr={config['lr']:.5g},bs={config['bs']}]"


def test_donors_are_only_trials_with_a_checkpoint() -> None:
    scheduler = _pbt(quantile_fraction=0.5, seed=None)
    trials, controller = _population(scheduler, 4)
    add_checkpoint(trials[3], 2)
    _round(scheduler, controller, trials, 2, [1.0, 2.0, 3.0, 4.0])
    for it in range(4, 40, 2):
        _report(scheduler, controller, trials[0], it, 0.0)
    # t0 stays at the bottom: every one of its 18 perturbation points exploits t3, never
    # t2 (no checkpoint), and none is skipped (Ray Tune draws among all of the top
    # quantile and skips the exploit when the draw has no checkpoint).
    assert len(controller.exploits()) == 18
    assert {c[2] for c in controller.exploits()} == {"t3"}
    assert "0 skipped" in scheduler.debug_string()


def test_no_donor_with_a_checkpoint_skips_the_exploit() -> None:
    scheduler = _pbt(quantile_fraction=0.5)
    trials, controller = _population(scheduler, 4)
    _round(scheduler, controller, trials, 2, [1.0, 2.0, 3.0, 4.0])
    assert _report(scheduler, controller, trials[0], 4, 0.0) == CONTINUE
    assert controller.calls == []
    assert "1 skipped" in scheduler.debug_string()


def test_exploit_takes_the_donor_checkpoints_time() -> None:
    scheduler = _pbt(quantile_fraction=0.5)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[1], 7)
    _report(scheduler, controller, trials[1], 8, 5.0)
    assert _report(scheduler, controller, trials[0], 2, 1.0) == NOOP
    # The exploiter continues from iteration 7: its next perturbation is at 9, not 4.
    assert _report(scheduler, controller, trials[0], 8, 0.0) == CONTINUE
    assert len(controller.exploits()) == 1
    assert _report(scheduler, controller, trials[0], 9, 0.0) == NOOP


def test_results_between_perturbation_points_and_in_burn_in_continue() -> None:
    scheduler = _pbt(quantile_fraction=0.5, perturbation_interval=3, burn_in_period=5)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[1], 5)
    for it in range(1, 5):  # burn-in: nothing recorded
        assert _report(scheduler, controller, trials[1], it, 9.0) == CONTINUE
        assert _report(scheduler, controller, trials[0], it, 0.0) == CONTINUE
    assert _report(scheduler, controller, trials[1], 5, 9.0) == CONTINUE  # recorded, on top
    assert _report(scheduler, controller, trials[0], 5, 0.0) == NOOP
    assert _report(scheduler, controller, trials[0], 6, 0.0) == CONTINUE


def test_a_trial_in_the_top_quantile_continues_and_min_mode_negates() -> None:
    scheduler = _pbt(mode="min", quantile_fraction=0.5)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[0], 2)
    assert _report(scheduler, controller, trials[0], 2, 1.0) == CONTINUE  # lowest loss
    assert _report(scheduler, controller, trials[1], 2, 9.0) == NOOP
    assert controller.exploits()[0][1:3] == ("t1", "t0")


def test_pause_when_another_trial_waits_for_a_slot() -> None:
    scheduler = _pbt(quantile_fraction=0.5)
    trials, controller = _population(scheduler, 3)
    trials[2].status = "PAUSED"
    assert _report(scheduler, controller, trials[0], 2, 1.0) == PAUSE
    trials[2].status = "PENDING"
    assert _report(scheduler, controller, trials[1], 2, 2.0) == PAUSE
    trials[2].status = "TERMINATED"
    assert _report(scheduler, controller, trials[0], 4, 3.0) == CONTINUE


def test_finished_and_nan_trials_are_not_ranked() -> None:
    scheduler = _pbt(quantile_fraction=0.5)
    trials, controller = _population(scheduler, 3)
    add_checkpoint(trials[2], 2)
    _report(scheduler, controller, trials[2], 2, 9.0)
    trials[2].status = "TERMINATED"
    _report(scheduler, controller, trials[1], 2, float("nan"))
    assert _report(scheduler, controller, trials[0], 2, 0.0) == CONTINUE  # ranked alone
    assert controller.exploits() == []


def test_choose_trial_to_run_prefers_the_least_trained() -> None:
    scheduler = _pbt(quantile_fraction=0.5)
    trials, controller = _population(scheduler, 3)
    for trial, it in zip(trials, (6, 2, 4), strict=True):
        _report(scheduler, controller, trial, it, 1.0)
    assert scheduler.choose_trial_to_run(controller) is None
    trials[0].status = trials[2].status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is trials[2]
    assert scheduler.choose_trial_to_run(controller) is trials[2]  # idempotent


# ---------------------------------------------------------------------- missing keys


def test_a_result_without_the_metric_or_time_attr_fails_naming_it() -> None:
    scheduler = _pbt()
    trials, controller = _population(scheduler, 1)
    with pytest.raises(MetricError, match="'score'") as info:
        scheduler.on_trial_result(controller, trials[0], {"training_iteration": 1})
    assert info.value.metric == "score" and info.value.trial_id == "t0"
    with pytest.raises(MetricError, match="time_attr 'training_iteration'"):
        scheduler.on_trial_result(controller, trials[0], {"score": 1.0})
    with pytest.raises(MetricError, match="str"):
        scheduler.on_trial_result(controller, trials[0], {"training_iteration": 1, "score": "x"})


def test_numpy_scalars_are_numbers() -> None:
    scheduler = _pbt()
    trials, controller = _population(scheduler, 1)
    result = {"training_iteration": np.int64(2), "score": np.float32(1.5)}
    assert scheduler.on_trial_result(controller, trials[0], result) == CONTINUE
    assert scheduler.get_state()["trials"]["t0"][1] == 1.5


def test_require_attrs_false_skips_such_results() -> None:
    scheduler = _pbt(require_attrs=False)
    trials, controller = _population(scheduler, 1)
    assert scheduler.on_trial_result(controller, trials[0], {"score": 1.0}) == CONTINUE


# ---------------------------------------------------------------------- synch mode


def test_synch_mode_waits_for_all_then_perturbs_together() -> None:
    scheduler = _pbt(quantile_fraction=0.25, synch=True)
    trials, controller = _population(scheduler, 4)
    add_checkpoint(trials[3], 2)
    assert _report(scheduler, controller, trials[0], 2, 1.0) == PAUSE
    trials[0].status = "PAUSED"
    assert _report(scheduler, controller, trials[3], 2, 4.0) == PAUSE
    trials[3].status = "PAUSED"
    assert _report(scheduler, controller, trials[2], 2, 3.0) == PAUSE
    trials[2].status = "PAUSED"
    assert controller.calls == []
    assert scheduler.choose_trial_to_run(controller) is None  # all wait for t1
    # The last to arrive perturbs everyone: t0 (bottom, paused) exploits t3 (top).
    assert _report(scheduler, controller, trials[1], 2, 2.0) == PAUSE
    assert [c[1:3] for c in controller.exploits()] == [("t0", "t3")]
    # The next sync point is 4: the paused trials may run again.
    assert scheduler.choose_trial_to_run(controller) in (trials[0], trials[2], trials[3])


def test_synch_mode_exploiting_the_reporting_trial_is_a_noop() -> None:
    scheduler = _pbt(quantile_fraction=0.5, synch=True)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[1], 2)
    assert _report(scheduler, controller, trials[1], 2, 4.0) == PAUSE
    trials[1].status = "PAUSED"
    assert _report(scheduler, controller, trials[0], 2, 1.0) == NOOP


# ---------------------------------------------------------------------- seeding and state


def _scenario(
    scheduler: PopulationBasedTraining,
    rounds: range,
    controller: RecordingController,
    trials: list[Trial],
) -> None:
    scores = random.Random(42)
    for it in rounds:
        for trial in trials:
            if it % 2 == 0 and not any(c.training_iteration == it for c in trial.checkpoints):
                add_checkpoint(trial, it)
            _report(scheduler, controller, trial, it, scores.random())


def test_same_seed_same_decisions() -> None:
    def run(seed: int) -> list[tuple[Any, ...]]:
        scheduler = _pbt(seed=seed, quantile_fraction=0.5, perturbation_interval=1)
        trials, controller = _population(scheduler, 6)
        _scenario(scheduler, range(1, 30), controller, trials)
        return controller.calls

    assert run(7) == run(7)
    assert len(run(7)) > 10
    assert run(7) != run(8)


def test_state_round_trip_through_json_gives_the_same_decisions() -> None:
    def fresh() -> tuple[PopulationBasedTraining, list[Trial], RecordingController]:
        scheduler = _pbt(seed=11, quantile_fraction=0.5, perturbation_interval=1)
        trials, controller = _population(scheduler, 6)
        return scheduler, trials, controller

    first, trials, controller = fresh()
    _scenario(first, range(1, 15), controller, trials)
    state = json.loads(json.dumps(first.get_state(), allow_nan=False))
    second = _pbt(seed=999, quantile_fraction=0.5, perturbation_interval=1)
    second.set_state(state)
    copies = [make_trial(i, dict(t.config)) for i, t in enumerate(trials)]
    for copy, trial in zip(copies, trials, strict=True):
        copy.checkpoints = list(trial.checkpoints)
        copy.experiment_tag = trial.experiment_tag
        copy.last_result = dict(trial.last_result)
    controller_2 = RecordingController(copies)
    controller.calls.clear()
    _scenario(first, range(15, 30), controller, trials)
    _scenario(second, range(15, 30), controller_2, copies)
    assert controller.calls and controller.calls == controller_2.calls
    assert second.get_state() == first.get_state()


def test_restorable_as_data_unless_code() -> None:
    scheduler = _pbt(clip=True, seed=3)
    data = scheduler_to_data(scheduler)
    assert data is not None
    rebuilt = scheduler_from_data(json.loads(json.dumps(data)))
    assert isinstance(rebuilt, PopulationBasedTraining)
    assert rebuilt.init_args() == scheduler.init_args()
    assert scheduler_to_data(_pbt(custom_explore_fn=lambda c: c)) is None
    assert scheduler_to_data(_pbt(hyperparam_mutations={"f": lambda: 1})) is None


def test_custom_explore_fn_is_applied_after_explore() -> None:
    def double_bs(config: dict[str, Any]) -> dict[str, Any]:
        config["extra"] = "set"
        return config

    scheduler = _pbt(quantile_fraction=0.5, custom_explore_fn=double_bs)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[1], 2)
    _report(scheduler, controller, trials[1], 2, 5.0)
    _report(scheduler, controller, trials[0], 2, 1.0)
    assert controller.exploits()[0][3]["extra"] == "set"


def test_custom_explore_fn_must_return_a_dict() -> None:
    scheduler = _pbt(quantile_fraction=0.5, custom_explore_fn=lambda c: None)
    trials, controller = _population(scheduler, 2)
    add_checkpoint(trials[1], 2)
    _report(scheduler, controller, trials[1], 2, 5.0)
    with pytest.raises(TypeError, match="custom_explore_fn"):
        _report(scheduler, controller, trials[0], 2, 1.0)
