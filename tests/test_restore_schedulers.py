"""Driver SIGKILL mid-run, then ``Tuner.restore``: ASHA + Optuna and PBT go on exactly.

In the simulator, the driver is a subprocess that SIGKILLs itself from a callback at a
fixed result: virtual time makes that point, and what the journal holds when the process
dies, the same on every run. The test process then restores the experiment and compares
it with an uninterrupted run of the same study (same seeds). What holds, exactly:

* the same trials with the same configs (no config suggested twice; the ids and configs
  the killed run journaled are kept), the same final iteration and metric per trial;
* the same final scheduler state (ASHA's rung records and counters; PBT's per-trial
  state, RNG and policy log, and so the same lineage: who exploited whom, from which
  iteration's checkpoint, with which new config) and, for Optuna, the same study;
* the same results after the kill, except that a trial running at the kill redoes the
  iterations it reported past its latest journaled checkpoint. For ASHA the results come
  in the same order too; for PBT each trial's results are the same, while their
  interleaving differs (a restore starts every running trial at once, and PBT's pauses
  and exploits had shifted trials against each other by a virtual second).

The last point is a property of the kill points chosen here, not a law: after a restore
the trials that were running start together, so a scheduler whose choice depends on which
trial reports first (PBT takes the donor's *latest* checkpoint) can choose otherwise
later in a run. What holds at any kill point is checked by the "torn" variants: the
journal is cut where a flush's snapshots begin (as a driver killed while writing a large
flush leaves it), and the scheduler and searcher, caught up from their previous
snapshots, are then in exactly the states that were cut off.

On the local backend (real processes, wall time) the test kills the driver from outside
when the journal holds enough results; the interleaving of concurrent trials then depends
on timing, so what must hold is checked against the journal instead: no config suggested
twice, no rung record lost, and Ray Tune's rung rule fed the journal's results in order
stops each trial where it stopped and ends with exactly the scheduler's rung records.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.schedulers import ASHAScheduler, PopulationBasedTraining
from atune.schedulers._pbt_policy import policy_file_name
from atune.simulator import Simulator
from atune.storage._layout import JOURNAL_FILE

pytest.importorskip("optuna")
from atune.search.optuna import OptunaSearch

HERE = Path(__file__).parent
NAME = "exp"
SEED = 0
ITERATION_S = 60.0  # every simulated iteration takes a minute (see _study_kill)

# ---------------------------------------------------------------- the studies
ASHA_MAX_T = 27


def asha_curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    """Loss curves that cross (a slow starter can end best), with deterministic noise."""
    if iteration > ASHA_MAX_T:
        return None
    x = config["x"]
    noise = random.Random(f"{x!r}:{iteration}").gauss(0, 0.02)
    return {"loss": (x - 0.3) ** 2 + (0.2 + x) * math.exp(-iteration / 6) + noise}, ITERATION_S


def asha_study(storage: str, callbacks: list[tune.Callback] | None = None) -> tune.Tuner:
    """40 trials suggested by Optuna's TPE, stopped by ASHA, 4 simulated workers."""
    return tune.Tuner(
        Simulator(asha_curve, workers=4, seed=SEED),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=40,
            search_alg=OptunaSearch(seed=5),
            scheduler=ASHAScheduler(max_t=ASHA_MAX_T, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            name=NAME,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            callbacks=callbacks,
        ),
    )


PBT_ITERATIONS = 40


def pbt_curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    """A loss whose level depends on ``lr`` (best near 0.6), with deterministic noise."""
    if iteration > PBT_ITERATIONS:
        return None
    lr = config["lr"]
    noise = random.Random(f"{lr!r}:{iteration}").gauss(0, 0.01)
    return {"loss": (lr - 0.6) ** 2 + 1 / iteration + noise}, ITERATION_S


def pbt_study(storage: str, callbacks: list[tune.Callback] | None = None) -> tune.Tuner:
    """A population of 8 on 4 simulated workers (time-sliced: PBT pauses and resumes)."""
    return tune.Tuner(
        Simulator(pbt_curve, workers=4, seed=SEED),
        param_space={"lr": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=8,
            scheduler=PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=4,
                hyperparam_mutations={"lr": tune.uniform(0, 1)},
                seed=3,
            ),
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            name=NAME,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            callbacks=callbacks,
        ),
    )


STUDIES: dict[str, Callable[..., tune.Tuner]] = {"asha": asha_study, "pbt": pbt_study}
SIMULATORS: dict[str, Callable[[], Simulator]] = {
    "asha": lambda: Simulator(asha_curve, workers=4, seed=SEED),
    "pbt": lambda: Simulator(pbt_curve, workers=4, seed=SEED),
}


class KillAt(tune.Callback):
    """SIGKILLs its own process at the ``count``-th result (or the next one that is not at a
    journal flush: flushes happen every ten virtual minutes)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self.seen += 1
        if self.seen >= self.count and result["timestamp"] % 600:
            os.kill(os.getpid(), signal.SIGKILL)


DRIVER = """
import sys
sys.path.insert(0, {here!r})
from test_restore_schedulers import STUDIES, KillAt

STUDIES[{study!r}]({storage!r}, callbacks=[KillAt({count})]).fit()
raise SystemExit("the study ended before the kill")
"""


# ---------------------------------------------------------------- journal helpers
def events(experiment: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (experiment / JOURNAL_FILE).read_text().splitlines()]


def of_type(journal: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in journal if e["type"] == kind]


def last_state(journal: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return of_type(journal, kind)[-1]["state"]


def results(journal: list[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """Every result in journal order: (trial id, training_iteration, loss)."""
    return [
        (e["trial_id"], e["result"]["training_iteration"], e["result"]["loss"])
        for e in of_type(journal, "result_reported")
    ]


def configs(journal: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The config each trial was created with, by trial id (ids checked unique)."""
    created = of_type(journal, "trial_created")
    ids = [e["trial_id"] for e in created]
    assert len(ids) == len(set(ids)), "a trial was created twice"
    return {e["trial_id"]: e["config"] for e in created}


def _study_kill(study: str, storage: str, count: int) -> Path:
    """Run ``study`` in a driver subprocess that SIGKILLs itself at result ``count``."""
    script = DRIVER.format(here=str(HERE), study=study, storage=storage, count=count)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return Path(storage, NAME)


def tear_last_flush(experiment: Path) -> None:
    """Cut the journal where its last scheduler snapshot begins, as a torn write leaves it.

    A flush appends its lines in order (the searcher's and scheduler's snapshots first,
    then what the loop journaled meanwhile) and large flushes go in pieces, so a driver
    killed while writing one leaves a prefix of its lines; the flush's result rows are
    appended to ``result.json`` only once the journal is durable, so they are cut too.
    Restore then catches the searcher and the scheduler up from their previous snapshots.
    """
    path = experiment / JOURNAL_FILE
    lines = path.read_text().splitlines(keepends=True)
    cut = max(i for i, line in enumerate(lines) if '"scheduler_state_saved"' in line)
    kept = [json.loads(line) for line in lines[:cut]]
    path.write_text("".join(lines[:cut]))
    for trial_dir in experiment.iterdir():
        rows = trial_dir / "result.json"
        if rows.is_file():
            trial_id = json.loads(rows.read_text().splitlines()[0])["trial_id"]
            count = sum(
                1 for e in kept if e["type"] == "result_reported" and e["trial_id"] == trial_id
            )
            rows.write_text("".join(rows.read_text().splitlines(keepends=True)[:count]))


def restore_capturing_state(
    experiment: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> tuple[tune.ResultGrid, dict[str, Any]]:
    """``Tuner.restore(...).fit()``, and the scheduler's and searcher's states right after
    the journal was replayed (before anything new happened)."""
    import atune._fit

    states: dict[str, Any] = {}
    original = atune._fit.replay

    def replay(core: Any, plan: Any) -> None:
        original(core, plan)
        states["scheduler_state_saved"] = json.loads(json.dumps(core.scheduler.get_state()))
        states["searcher_state_saved"] = json.loads(json.dumps(core.search.get_state()))

    monkeypatch.setattr(atune._fit, "replay", replay)
    grid = tune.Tuner.restore(str(experiment), simulator).fit()
    return grid, states


def torn_off(experiment: Path) -> dict[str, Any]:
    """The snapshots :func:`tear_last_flush` cut off: the states at the cut."""
    lines = (experiment / JOURNAL_FILE).read_text().splitlines()
    cut = max(i for i, line in enumerate(lines) if '"scheduler_state_saved"' in line)
    snapshots = [json.loads(line) for line in lines[cut - 1 : cut + 1]]
    return {e["type"]: e["state"] for e in snapshots if e["type"].endswith("_state_saved")}


# ------------------------------------------------------------------- ASHA + Optuna
@pytest.mark.slow
@pytest.mark.parametrize("torn", [False, True], ids=["whole", "torn"])
def test_asha_and_optuna_continue_exactly_after_a_driver_sigkill(
    tmp_path: Path, torn: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = _study_kill("asha", str(tmp_path / "killed"), count=120)
    at_cut = torn_off(experiment)
    if torn:
        tear_last_flush(experiment)
    killed = events(experiment)
    killed_configs = configs(killed)
    assert 0 < len(of_type(killed, "trial_completed")) < 40  # mid-run
    assert of_type(killed, "scheduler_state_saved") and of_type(killed, "searcher_state_saved")

    restored_grid, replayed = restore_capturing_state(experiment, SIMULATORS["asha"](), monkeypatch)
    restored = events(experiment)
    if torn:  # caught up from the snapshots before: exactly the states that were cut off
        assert replayed == at_cut
    plain_grid = asha_study(str(tmp_path / "plain")).fit()
    plain = events(tmp_path / "plain" / NAME)

    assert restored_grid.num_errors == 0 and len(restored_grid) == 40
    # The journal is appended to: the killed run's events are its beginning.
    assert restored[: len(killed)] == killed
    # No config suggested twice; every killed trial kept its config; the same 40 configs,
    # under the same trial ids, as the uninterrupted run.
    final_configs = configs(restored)
    assert len({c["x"] for c in final_configs.values()}) == 40
    assert {k: final_configs[k] for k in killed_configs} == killed_configs
    assert final_configs == configs(plain)
    for trial_id in final_configs:  # every trial trained each iteration once, in order
        iterations = [it for t, it, _ in results(plain) if t == trial_id]
        assert iterations == list(range(1, len(iterations) + 1))
    # The rung records (and every other bit of ASHA's state) and Optuna's study end equal.
    assert last_state(restored, "scheduler_state_saved") == last_state(
        plain, "scheduler_state_saved"
    )
    assert last_state(restored, "searcher_state_saved") == last_state(plain, "searcher_state_saved")
    # Each trial ends where it did uninterrupted, with the same loss.
    assert _finals(restored_grid) == _finals(plain_grid)
    _check_continuation(killed, restored, plain, in_order=True)


def _check_continuation(
    killed: list[dict[str, Any]],
    restored: list[dict[str, Any]],
    plain: list[dict[str, Any]],
    *,
    in_order: bool,
) -> None:
    """After the kill, the restored run reports what the uninterrupted run did, in the same
    order, plus what the kill undid: a trial still running at the kill resumes from its
    latest journaled checkpoint (or, exploited since, from its donor's), so the iterations
    it had reported past that checkpoint are reported again (with the same values: the
    simulated curves are deterministic). ``in_order``: across trials too; else each trial's
    results alone (a restore starts every running trial at once: with PBT, whose pauses
    and exploits shift trials by a virtual second, the interleaving then differs)."""
    ended = {e["trial_id"] for e in of_type(killed, "trial_completed")}
    since: dict[str, list[tuple[str, int, float]]] = {}  # results past the restore point
    for e in killed:
        trial_id = e.get("trial_id")
        if e["type"] in ("checkpoint_saved", "trial_exploited"):
            since[trial_id] = []
        elif e["type"] == "result_reported":
            result = e["result"]
            since.setdefault(trial_id, []).append(
                (trial_id, result["training_iteration"], result["loss"])
            )
    redone = [r for trial_id, own in since.items() if trial_id not in ended for r in own]
    after = _after(results(restored), results(killed))
    for result in redone:
        after.remove(result)  # its first appearance: the iteration done again
    expected = _after(results(plain), results(killed))
    if in_order:
        assert after == expected
    for trial_id in configs(plain):
        assert [r for r in after if r[0] == trial_id] == [r for r in expected if r[0] == trial_id]


def _finals(grid: tune.ResultGrid) -> dict[str, tuple[int, float]]:
    return {
        r.metrics["trial_id"]: (r.metrics["training_iteration"], r.metrics["loss"]) for r in grid
    }


def _after(
    everything: list[tuple[str, int, float]], prefix: list[tuple[str, int, float]]
) -> list[tuple[str, int, float]]:
    """The results of ``everything`` that ``prefix`` (a journal's beginning) does not hold."""
    assert everything[: len(prefix)] == prefix
    return everything[len(prefix) :]


# ------------------------------------------------------------------------------ PBT
def lineage(journal: list[dict[str, Any]]) -> list[tuple[str, str, int, int, float]]:
    """Every exploit in journal order: (trial, donor, the iteration of the donor's
    checkpoint, the trial's last iteration before the exploit, its new lr).

    The checkpoint is named by its iteration: after a restore, a trial that redid
    iterations has taken more checkpoints, so the same iteration's directory has another
    index than in an uninterrupted run.
    """
    last: dict[str, int] = {}
    saved: dict[tuple[str, str], int] = {}
    out = []
    for e in journal:
        if e["type"] == "result_reported":
            last[e["trial_id"]] = e["result"]["training_iteration"]
        elif e["type"] == "checkpoint_saved":
            saved[e["trial_id"], e["dir_name"]] = e["training_iteration"]
        elif e["type"] == "trial_exploited":
            donor = e["donor_id"]
            exploit = (e["trial_id"], donor, saved[donor, e["dir_name"]], last[e["trial_id"]])
            out.append((*exploit, e["config"]["lr"]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("torn", [False, True], ids=["whole", "torn"])
def test_pbt_lineage_continues_exactly_after_a_driver_sigkill(
    tmp_path: Path, torn: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = _study_kill("pbt", str(tmp_path / "killed"), count=210)
    at_cut = torn_off(experiment)
    if torn:
        tear_last_flush(experiment)
    killed = events(experiment)
    assert len(lineage(killed)) > 0  # exploits happened before the kill ...
    assert not of_type(killed, "trial_completed")  # ... and the population was mid-run

    restored_grid, replayed = restore_capturing_state(experiment, SIMULATORS["pbt"](), monkeypatch)
    restored = events(experiment)
    if torn:  # caught up from the snapshot before: exactly the state that was cut off
        assert replayed["scheduler_state_saved"] == at_cut["scheduler_state_saved"]
    plain_grid = pbt_study(str(tmp_path / "plain")).fit()
    plain = events(tmp_path / "plain" / NAME)

    assert restored_grid.num_errors == 0 and len(restored_grid) == 8
    assert restored[: len(killed)] == killed
    assert configs(restored) == configs(plain)
    # The lineage: who exploited whom, from which checkpoint, when, with which new config;
    # no exploit lost or repeated.
    assert lineage(restored) == lineage(plain)
    assert len(lineage(restored)) > len(lineage(killed))  # the restored run exploited on
    # The scheduler's state (policy log, per-trial state, RNG) and its policy files.
    final_state = last_state(restored, "scheduler_state_saved")
    assert final_state == last_state(plain, "scheduler_state_saved")
    for name in ["pbt_global.txt", *map(policy_file_name, final_state["policies"])]:
        assert (experiment / name).read_text() == (tmp_path / "plain" / NAME / name).read_text()
    assert _finals(restored_grid) == _finals(plain_grid)
    _check_continuation(killed, restored, plain, in_order=False)


# ----------------------------------------------------------- the local backend
LOCAL_STEPS = 9


def local_trainable(config: dict[str, Any]) -> None:
    """A function trainable that checkpoints every iteration and resumes where it was."""
    for i in range(resume_point() + 1, LOCAL_STEPS + 1):
        time.sleep(0.05)
        report_with_checkpoint(i, {"loss": (config["x"] - 0.3) ** 2 + (0.2 + config["x"]) / i})


LOCAL_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.schedulers import ASHAScheduler
from atune.search.optuna import OptunaSearch
from test_restore_schedulers import local_trainable

tune.Tuner(
    local_trainable,
    param_space={{"x": tune.uniform(0, 1)}},
    tune_config=tune.TuneConfig(
        backend="local", metric="loss", mode="min", num_samples={n},
        max_concurrent_trials=2, search_alg=OptunaSearch(seed=5),
        scheduler=ASHAScheduler(max_t={max_t}, grace_period=1, reduction_factor=3),
    ),
    run_config=tune.RunConfig(name={name!r}, storage_path={storage!r}, verbose=0),
).fit()
"""


def rung_rule(
    journal: list[dict[str, Any]], milestones: list[float], rf: float, max_t: float
) -> list[dict[str, float]]:
    """Ray Tune's rung rule (one bracket, ``mode="min"``) fed the journal's results in order.

    Checks that each result ended its trial exactly when the rule stops it there, and
    returns the scores recorded at each rung (highest milestone first), as ASHA's state
    holds them.
    """
    recorded: dict[float, dict[str, float]] = {m: {} for m in milestones}
    last: dict[str, dict[str, Any]] = {}

    def record(trial_id: str, t: float, score: float) -> bool:
        for milestone in sorted(milestones, reverse=True):
            if t < milestone or trial_id in recorded[milestone]:
                continue
            others = list(recorded[milestone].values())
            cutoff = float(np.percentile(others, (1 - 1 / rf) * 100)) if others else None
            recorded[milestone][trial_id] = score
            return cutoff is not None and score < cutoff
        return False

    for e in journal:
        if e["type"] == "result_reported":
            result = last[e["trial_id"]] = e["result"]
            t, score = result["training_iteration"], -result["loss"]
            stops = t >= max_t or record(e["trial_id"], t, score)
            assert stops == result["done"], (e["trial_id"], t)
        elif e["type"] == "trial_completed" and e["trial_id"] in last:
            result = last[e["trial_id"]]
            record(e["trial_id"], result["training_iteration"], -result["loss"])
    return [recorded[m] for m in sorted(milestones, reverse=True)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_local_backend_asha_and_optuna_driver_sigkill(storage: str) -> None:
    n, max_t = 12, LOCAL_STEPS
    script = LOCAL_DRIVER.format(here=str(HERE), storage=storage, n=n, max_t=max_t, name=NAME)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = Path(storage, NAME, JOURNAL_FILE)
    try:
        while not journal.exists() or journal.read_text().count('"trial_completed"') < 4:
            if proc.poll() is not None:
                pytest.fail("the driver ended before it was killed: " + proc.stderr.read().decode())  # type: ignore[union-attr]
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    killed = events(Path(storage, NAME))
    assert len(of_type(killed, "trial_completed")) < n  # mid-run
    killed_configs = configs(killed)
    killed_rungs = last_state(killed, "scheduler_state_saved")["rungs"][0]

    grid = tune.Tuner.restore(str(Path(storage, NAME)), local_trainable).fit()
    final = events(Path(storage, NAME))
    assert grid.num_errors == 0 and len(grid) == n
    final_configs = configs(final)  # every trial created once
    assert len(final_configs) == n
    assert len({c["x"] for c in final_configs.values()}) == n  # no config suggested twice
    assert {k: final_configs[k] for k in killed_configs} == killed_configs
    # No rung record lost: the killed run's records are all still there, unchanged ...
    final_rungs = [
        {k: float(v) for k, v in rung.items()}
        for rung in last_state(final, "scheduler_state_saved")["rungs"][0]
    ]
    for before, after in zip(killed_rungs, final_rungs, strict=True):
        assert {k: after.get(k) for k in before} == {k: float(v) for k, v in before.items()}
    # ... and Ray Tune's rule fed every result the journal holds, in its order, stops each
    # trial where it stopped and ends with exactly these records (none lost or doubled).
    assert final_rungs == rung_rule(final, [1.0, 3.0, 9.0], 3, max_t)
    # Trials resumed from their checkpoints: no iteration reported twice in result.json.
    for result in grid:
        iterations = [int(i) for i in result.metrics_dataframe["training_iteration"]]
        assert iterations == list(range(1, len(iterations) + 1)), result.path
    assert np.isfinite([r.metrics["loss"] for r in grid]).all()
