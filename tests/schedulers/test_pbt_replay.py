"""PBT's policy log (``log_config``) and PopulationBasedTrainingReplay reading it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _controller_stand_in import RecordingController, add_checkpoint, make_trial

from atune.schedulers import PopulationBasedTraining, PopulationBasedTrainingReplay, TrialScheduler
from atune.schedulers._pbt_policy import load_policy
from atune.schedulers._restorable import scheduler_from_data, scheduler_to_data


def _report(
    scheduler: Any, controller: RecordingController, trial: Any, it: int, score: float
) -> str:
    result = {"training_iteration": it, "score": score}
    decision = scheduler.on_trial_result(controller, trial, result)
    trial.last_result = result
    return decision


def _pbt_run(path: str) -> tuple[PopulationBasedTraining, RecordingController]:
    """Three trials, perturbation every 2 iterations, the trailing one reporting last.

    At iteration 2 t1 trails and exploits t2; at 4 t1 leads and t0 trails and exploits
    t1, so t0's lineage is t2 -> t1 -> t0.
    """
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        perturbation_interval=2,
        quantile_fraction=0.34,
        resample_probability=0.0,
        hyperparam_mutations={"lr": [0.001, 0.01, 0.1, 1.0]},
        seed=0,
    )
    trials = [make_trial(i, {"lr": 0.01}, path) for i in range(3)]
    controller = RecordingController(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    add_checkpoint(trials[2], 2)
    for index, score in ((0, 2.0), (2, 3.0), (1, 1.0)):
        _report(scheduler, controller, trials[index], 2, score)
    assert [c[1:3] for c in controller.exploits()] == [("t1", "t2")]
    add_checkpoint(trials[1], 3)
    for index, score in ((1, 9.0), (2, 5.0), (0, 0.0)):
        _report(scheduler, controller, trials[index], 4, score)
    assert [c[1:3] for c in controller.exploits()] == [("t1", "t2"), ("t0", "t1")]
    return scheduler, controller


def test_policy_lines_follow_ray_tunes_format(tmp_path: Path) -> None:
    scheduler, controller = _pbt_run(str(tmp_path))
    first, second = controller.exploits()
    global_lines = [json.loads(line) for line in scheduler.get_state()["global_lines"]]
    # [trial tag, donor tag, trial iteration, donor checkpoint iteration, donor config, new]
    assert global_lines == [
        ["1_tag", "2_tag", 2, 2, {"lr": 0.01}, first[3]],
        ["0_tag", "1_tag", 4, 3, first[3], second[3]],
    ]
    # t0's policy is t1's (its donor's lineage) plus its own line.
    assert scheduler.policy("t0") == [
        *scheduler.policy("t1"),
        scheduler.get_state()["global_lines"][1],
    ]


def test_write_files_writes_global_and_per_trial_logs(tmp_path: Path) -> None:
    scheduler, _ = _pbt_run(str(tmp_path))
    scheduler.write_files()
    assert len((tmp_path / "pbt_global.txt").read_text().splitlines()) == 2
    assert len((tmp_path / "pbt_policy_t0.txt").read_text().splitlines()) == 2
    assert len((tmp_path / "pbt_policy_t1.txt").read_text().splitlines()) == 1
    scheduler.write_files()  # idempotent
    assert len((tmp_path / "pbt_global.txt").read_text().splitlines()) == 2


def test_files_to_write_copies_the_changes_for_a_worker_thread(tmp_path: Path) -> None:
    scheduler, _ = _pbt_run(str(tmp_path))
    job = scheduler.files_to_write()
    assert job is not None
    assert scheduler.files_to_write() is None  # nothing changed since
    job()
    assert len((tmp_path / "pbt_policy_t0.txt").read_text().splitlines()) == 2
    restored = PopulationBasedTraining(
        metric="score", mode="max", hyperparam_mutations={"lr": [1, 2]}, seed=0
    )
    restored.set_state(json.loads(json.dumps(scheduler.get_state())))
    assert restored.files_to_write() is None  # no trial seen yet: no path


def test_log_config_false_writes_nothing(tmp_path: Path) -> None:
    scheduler = PopulationBasedTraining(
        metric="score", mode="max", hyperparam_mutations={"lr": [1, 2]}, log_config=False
    )
    scheduler.write_files(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_load_policy_follows_the_lineage(tmp_path: Path) -> None:
    scheduler, controller = _pbt_run(str(tmp_path))
    scheduler.write_files()
    first, second = controller.exploits()
    initial, schedule = load_policy(str(tmp_path / "pbt_policy_t0.txt"))
    assert initial == {"lr": 0.01}
    assert schedule == [(2, first[3]), (3, second[3])]


def test_load_policy_ignores_lines_that_do_not_chain(tmp_path: Path) -> None:
    path = tmp_path / "pbt_policy_x.txt"
    rows = [
        ["a", "b", 5, 5, {"lr": 1}, {"lr": 2}],  # overwritten: does not chain to "c"
        ["x", "c", 7, 6, {"lr": 3}, {"lr": 4}],
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_policy(str(path)) == ({"lr": 3}, [(6, {"lr": 4})])


@pytest.mark.parametrize("text", ["not json\n", "[1, 2]\n"])
def test_a_bad_policy_file_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pbt_policy_bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"pbt_policy_bad\.txt.*line 1"):
        PopulationBasedTrainingReplay(str(path))


def test_a_missing_policy_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        PopulationBasedTrainingReplay(str(tmp_path / "nope.txt"))
    with pytest.raises(TypeError, match="policy_file"):
        PopulationBasedTrainingReplay(3)  # type: ignore[arg-type]


def test_replay_changes_the_config_at_the_logged_iterations(tmp_path: Path) -> None:
    scheduler, controller = _pbt_run(str(tmp_path))
    scheduler.write_files()
    first, second = controller.exploits()
    replay = PopulationBasedTrainingReplay(str(tmp_path / "pbt_policy_t0.txt"))
    trial = make_trial(0, {"lr": 123.0})
    ctl = RecordingController([trial])
    replay.on_trial_add(ctl, trial)
    assert trial.config == {"lr": 0.01}  # the policy's initial config
    decisions = []
    for it in range(1, 7):
        decisions.append(_report(replay, ctl, trial, it, 0.0))
        add_checkpoint(trial, it)  # a checkpoint every iteration, committed after the result
    # A change at iteration i happens once the checkpoint of iteration i exists: it is
    # committed after the result of i, so at the result of i + 1.
    assert decisions == ["CONTINUE", "CONTINUE", "NOOP", "NOOP", "CONTINUE", "CONTINUE"]
    calls = ctl.exploits()
    assert [(c[1], c[2], c[3]) for c in calls] == [("t0", "t0", first[3]), ("t0", "t0", second[3])]
    assert calls[0][4].startswith("replay_pbt_policy_t0.txt@perturbed[")
    with pytest.raises(ValueError, match="num_samples=1"):
        replay.on_trial_add(ctl, make_trial(1))


def test_replay_state_round_trip_and_restorable(tmp_path: Path) -> None:
    scheduler, _ = _pbt_run(str(tmp_path))
    scheduler.write_files()
    replay = PopulationBasedTrainingReplay(str(tmp_path / "pbt_policy_t0.txt"))
    trial = make_trial(0, {})
    ctl = RecordingController([trial])
    replay.on_trial_add(ctl, trial)
    add_checkpoint(trial, 2)
    assert _report(replay, ctl, trial, 3, 0.0) == TrialScheduler.NOOP
    data = scheduler_to_data(replay)
    assert data is not None
    copy = scheduler_from_data(json.loads(json.dumps(data)))
    copy.set_state(json.loads(json.dumps(replay.get_state())))
    assert copy.get_state() == replay.get_state()
    add_checkpoint(trial, 3)
    assert _report(copy, ctl, trial, 4, 0.0) == TrialScheduler.NOOP
