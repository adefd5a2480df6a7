"""HyperBandScheduler: Ray Tune's brackets and halvings, pausing, bad input, state, restore."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune.schedulers import HyperBandScheduler, TrialScheduler
from atune.storage._layout import JOURNAL_FILE

sys.path.insert(0, str(Path(__file__).parent.parent))
from _checkpointing import report_with_checkpoint, resume_point

# The grid Ray Tune 2.60 was observed on (metric = x, mode max, max_t=9, eta=3).
XS = [0.3, 0.1, 0.2, 0.5, 0.9, 0.4, 0.8, 0.6]
# See test_final_iterations_match_ray_tune for the derivation.
EXPECTED_FINALS = [9, 9, 9, 3, 9, 3, 9, 3]


def resumable(config: dict[str, Any]) -> None:
    """Reports ``score = x`` with a checkpoint every iteration; resumes where it was."""
    for i in range(resume_point(), 20):
        time.sleep(config.get("sleep", 0))
        report_with_checkpoint(i + 1, {"score": config["x"]})


class Steps(tune.Trainable):
    """A class trainable: ``score = x``; counts its restores in its checkpoints."""

    def setup(self, config: dict[str, Any]) -> None:
        self.x = config["x"]
        self.restores = 0

    def step(self) -> dict[str, Any]:
        return {"score": self.x, "restores": self.restores}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"restores": self.restores}

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restores = checkpoint["restores"] + 1


def _fit(trainable: Any, storage: str, **tune_kwargs: Any) -> tune.ResultGrid:
    return tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search(XS)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
            **tune_kwargs,
        ),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()


def _finals(results: tune.ResultGrid) -> list[int]:
    by_x = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    return [by_x[x] for x in XS]


@pytest.mark.parametrize("max_concurrent_trials", [1, 2])
def test_final_iterations_match_ray_tune(storage: str, max_concurrent_trials: int) -> None:
    """Eight trials, max_t=9, reduction_factor=3, score = x (max).

    ``s_max_1 = int(round(log(9) / log(3))) + 1 = 3``; brackets fill in the order s = 0,
    1, 2 with ``n0(s) = ceil(3 / (s + 1) * 3**s)`` trials and milestone ``r0(s) = int(9 *
    3**-s)``:

    * s=0: (n0, r0) = (3, 9), no halving: x = 0.3, 0.1, 0.2 each run to 9; the first two
      to get there pause until the third does, which finishes the bracket: it stops, and
      so do the paused two. Finals 9, 9, 9.
    * s=1: (5, 3): x = 0.5, 0.9, 0.4, 0.8, 0.6 each pause at 3 until the fifth gets
      there; halving keeps ``ceil(5 / 3) = 2`` (x = 0.9, 0.8), milestone ``min(3 * 3, 9)
      = 9``; the other three stop at 3. 0.9 and 0.8 resume from their checkpoints and run
      to 9 (the bracket has no halving left: finished). Finals 9, 3, 9 for 0.9/0.4/0.8 ...

    which gives [9, 9, 9, 3, 9, 3, 9, 3] in grid order, what Ray Tune 2.60 gives. With
    ``max_concurrent_trials=2`` (below the bracket of 5) Ray Tune hangs ("paused trials,
    but no more pending trials"): atune's paused trials hold no slot, so the same finals.
    """
    results = _fit(resumable, storage, max_concurrent_trials=max_concurrent_trials)
    assert results.num_errors == 0
    assert _finals(results) == EXPECTED_FINALS
    for result in results:
        # Resumed from the checkpoint of its pause: every iteration once, in order.
        history = result.metrics_dataframe["training_iteration"].tolist()
        assert history == list(range(1, result.metrics["training_iteration"] + 1))
        # time_total_s went on from the checkpoint too (it never went back).
        times = result.metrics_dataframe["time_total_s"].tolist()
        assert times == sorted(times)
    # The resumed trials' checkpoints kept their numbering (no index reused).
    experiment = Path(next(iter(results)).path).parent
    journal = (experiment / JOURNAL_FILE).read_text().splitlines()
    saved = [json.loads(line) for line in journal if '"checkpoint_saved"' in line]
    for trial_id in {s["trial_id"] for s in saved}:
        names = [s["dir_name"] for s in saved if s["trial_id"] == trial_id]
        assert names == sorted(set(names))


def test_a_class_trainable_is_saved_at_each_pause_and_restored(storage: str) -> None:
    results = _fit(Steps, storage, max_concurrent_trials=3)
    assert results.num_errors == 0
    assert _finals(results) == EXPECTED_FINALS
    by_x = {r.config["x"]: r for r in results}
    # 0.9 paused at 3 and resumed (one restore); training_iteration went on from 3.
    history = by_x[0.9].metrics_dataframe
    assert history["training_iteration"].tolist() == list(range(1, 10))
    assert history["restores"].tolist() == [0, 0, 0] + [1] * 6
    # The trials that stopped at 3 never resumed.
    assert by_x[0.5].metrics["restores"] == 0


def test_statuses_show_paused_trials(storage: str) -> None:
    seen: set[str] = set()

    class Watch(tune.Callback):
        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Any) -> None:
            seen.update(t.status for t in trials)

    results = tune.Tuner(
        resumable,
        param_space={"x": tune.grid_search(XS)},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            max_concurrent_trials=1,
            scheduler=HyperBandScheduler(max_t=9),
        ),
        run_config=tune.RunConfig(storage_path=storage, callbacks=[Watch()]),
    ).fit()
    assert results.num_errors == 0
    assert "PAUSED" in seen


def test_a_function_trainable_without_checkpoints_restarts_and_warns_once(
    storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    def no_checkpoints(config: dict[str, Any]) -> None:
        for _ in range(20):
            tune.report({"score": config["x"]})

    results = _fit(no_checkpoints, storage, max_concurrent_trials=1)
    assert results.num_errors == 0
    warnings = [r.getMessage() for r in caplog.records if "paused trial" in r.getMessage()]
    assert len(warnings) == 1  # several pauses, one warning
    assert "HyperBandScheduler paused trial" in warnings[0]
    assert "will restart from scratch" in warnings[0]
    # Without checkpoints the resumed trials started over: 0.9 ran 3 + 9 iterations.
    by_x = {r.config["x"]: r for r in results}
    assert by_x[0.9].metrics_dataframe["training_iteration"].tolist() == [1, 2, 3, *range(1, 10)]


# -------------------------------------------------------------- brackets, input, state
def _layout(scheduler: HyperBandScheduler, trials: int) -> list[tuple[int, int]]:
    ctl = _Controller()
    for i in range(trials):
        scheduler.on_trial_add(ctl, ctl.add(f"t{i}"))
    return [(b["n"], b["cumul_r"]) for band in scheduler.brackets() for b in band if b]


def test_brackets_fill_smallest_halving_first_as_ray_tune() -> None:
    assert _layout(HyperBandScheduler(metric="s", mode="max", max_t=9), 17) == [
        (3, 9),
        (5, 3),
        (9, 1),
    ]
    # A new band starts once one is full.
    assert _layout(HyperBandScheduler(metric="s", mode="max", max_t=9), 18)[-1] == (3, 9)
    # Ray's defaults: max_t=81, eta=3 -> five brackets.
    assert _layout(HyperBandScheduler(metric="s", mode="max"), 143) == [
        (5, 81),
        (8, 27),
        (15, 9),
        (34, 3),
        (81, 1),
    ]


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"max_t": 0}, "max_t must be > 0, got 0", ValueError),
        ({"max_t": -3}, "max_t must be > 0, got -3", ValueError),
        ({"reduction_factor": 1}, "reduction_factor must be > 1, got 1", ValueError),
        ({"mode": "maximize"}, "mode must be 'min' or 'max', got 'maximize'", ValueError),
        ({"max_t": "9"}, "max_t must be a number, got '9'", TypeError),
        ({"time_attr": 3}, "time_attr must be a str, got 3", TypeError),
    ],
)
def test_bad_input_names_the_parameter(
    kwargs: dict[str, Any], match: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=match):
        HyperBandScheduler(**kwargs)


def test_missing_metric_fails_before_any_trial(storage: str) -> None:
    with pytest.raises(tune.TuneError, match="HyperBandScheduler has no metric and mode"):
        tune.Tuner(
            resumable,
            param_space={"x": 1},
            tune_config=tune.TuneConfig(backend="local", scheduler=HyperBandScheduler()),
            run_config=tune.RunConfig(storage_path=storage),
        ).fit()


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = "RUNNING"


class _Controller:
    """Just enough of ``tune_controller`` for the scheduler alone: statuses, stops.

    As the core, it carries out a ``stop_trial`` after the hook returned (``settle``): a
    paused trial then ends and the scheduler hears ``on_trial_remove``.
    """

    def __init__(self) -> None:
        self.trials: dict[str, _Trial] = {}
        self.stopped: list[str] = []
        self._todo: list[str] = []

    def settle(self, scheduler: TrialScheduler) -> None:
        while self._todo:
            trial = self.trials[self._todo.pop(0)]
            if trial.status == "PAUSED":
                trial.status = "TERMINATED"
                scheduler.on_trial_remove(self, trial)

    def add(self, trial_id: str) -> Any:
        self.trials[trial_id] = _Trial(trial_id)
        return self.trials[trial_id]

    def get_live_trials(self) -> list[Any]:
        return [t for t in self.trials.values() if t.status not in ("TERMINATED",)]

    def stop_trial(self, trial: Any) -> None:
        self.stopped.append(trial.trial_id)
        self._todo.append(trial.trial_id)


def _decide(scheduler: HyperBandScheduler, ctl: _Controller, trial_id: str, it: int) -> str:
    trial = ctl.trials[trial_id]
    decision = scheduler.on_trial_result(
        ctl, trial, {"training_iteration": it, "s": int(trial_id[1:])}
    )
    if decision == TrialScheduler.PAUSE:
        trial.status = "PAUSED"
    elif decision == TrialScheduler.STOP:
        trial.status = "TERMINATED"
        scheduler.on_trial_complete(ctl, trial, {})
    ctl.settle(scheduler)
    return decision


def test_state_round_trips_through_json_mid_bracket() -> None:
    def build() -> tuple[HyperBandScheduler, _Controller]:
        scheduler = HyperBandScheduler(metric="s", mode="max", max_t=9)
        ctl = _Controller()
        for i in range(8):
            scheduler.on_trial_add(ctl, ctl.add(f"t{i}"))
        return scheduler, ctl

    scheduler, ctl = build()
    # Bracket (5, 3): t3..t6 reach 3 and pause; t7 has not reported.
    for trial_id in ("t3", "t4", "t5", "t6"):
        for it in (1, 2):
            assert _decide(scheduler, ctl, trial_id, it) == TrialScheduler.CONTINUE
        assert _decide(scheduler, ctl, trial_id, 3) == TrialScheduler.PAUSE
    state = json.loads(json.dumps(scheduler.get_state(), allow_nan=False))
    copy, copy_ctl = build()
    copy.set_state(state)
    for trial_id in ("t3", "t4", "t5", "t6"):
        copy_ctl.trials[trial_id].status = "PAUSED"
    assert copy.get_state() == scheduler.get_state()
    # t7 reaches 3: the halving keeps t7 (best: CONTINUE) and t6; t3, t4, t5 stop.
    for s, c in ((scheduler, ctl), (copy, copy_ctl)):
        assert [_decide(s, c, "t7", it) for it in (1, 2, 3)][-1] == TrialScheduler.CONTINUE
        assert c.stopped == ["t3", "t4", "t5"]
        assert s.choose_trial_to_run(c) is c.trials["t6"]


def test_a_trial_leaving_a_processed_bracket_lets_the_paused_ones_go_on() -> None:
    """Ray Tune stops re-processing a bracket after its first halving; atune does not."""
    scheduler = HyperBandScheduler(metric="s", mode="max", max_t=9)
    ctl = _Controller()
    for i in range(8):
        scheduler.on_trial_add(ctl, ctl.add(f"t{i}"))
    for trial_id in ("t3", "t4", "t5", "t6"):
        assert _decide(scheduler, ctl, trial_id, 3) == TrialScheduler.PAUSE
    assert _decide(scheduler, ctl, "t7", 3) == TrialScheduler.CONTINUE  # halved: t7, t6
    assert _decide(scheduler, ctl, "t7", 9) == TrialScheduler.PAUSE  # waits for t6
    # t6 fails for good: the bracket is done with t7 alone, which is stopped.
    ctl.trials["t6"].status = "ERROR"
    scheduler.on_trial_error(ctl, ctl.trials["t6"])
    assert ctl.stopped == ["t3", "t4", "t5", "t7"]


# ------------------------------------------------------------------------- restore
DRIVER = """
import sys
sys.path.insert(0, {here!r})
import atune as tune
from atune.schedulers import HyperBandScheduler
from test_hyperband import XS, resumable

tune.Tuner(
    resumable,
    param_space={{"x": tune.grid_search(XS), "sleep": 0.2}},
    tune_config=tune.TuneConfig(
        backend="local", metric="score", mode="max", max_concurrent_trials=1,
        scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
    ),
    run_config=tune.RunConfig(name="hb", storage_path={storage!r}),
).fit()
"""


@pytest.mark.slow
def test_driver_killed_with_paused_trials_restore_continues_the_brackets(storage: str) -> None:
    """SIGKILL the driver while bracket (5, 3) has paused trials; the restored run resumes
    them and ends as an uninterrupted run would."""
    script = DRIVER.format(here=str(Path(__file__).parent), storage=storage)
    log = Path(storage, "driver.log").open("w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )
    journal = Path(storage, "hb", JOURNAL_FILE)
    deadline = time.monotonic() + 120
    try:
        while not journal.exists() or journal.read_text().count('"trial_paused"') < 4:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("no kill mid-run:\n" + Path(storage, "driver.log").read_text()[-3000:])
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    text = journal.read_text()
    assert '"scheduler_state_saved"' in text
    results = tune.Tuner.restore(str(Path(storage, "hb")), resumable).fit()
    assert results.num_errors == 0
    assert _finals(results) == EXPECTED_FINALS
