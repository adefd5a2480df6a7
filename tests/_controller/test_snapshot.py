"""The journal's snapshot: reading through it gives exactly what replaying every event gives.

Each experiment's journal is cut at many line boundaries; a snapshot is taken at the cut
and the rest of the journal appended, as a run that snapshotted and went on (or crashed)
leaves it. Trials, result grids and what restore's catch-ups tell the searcher and the
scheduler must then equal a replay of every event.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._restore import RestorePlan, replay, reread_journal
from atune._controller._snapshot import (
    JournalHistory,
    compact,
    export_trials,
    needs_full_history,
    read_full_history,
    read_history,
    replayed_core,
)
from atune._load import stored_result_grid
from atune.config import CheckpointConfig, TuneConfig
from atune.errors import ConfigError
from atune.events import SchedulerStateSaved
from atune.execution.placement_groups import PlacementGroupFactory
from atune.schedulers import FIFOScheduler, PopulationBasedTraining, TrialScheduler
from atune.search import SearchAlgorithm, Suggestion
from atune.storage._layout import JOURNAL_FILE, SNAPSHOT_FILE, snapshot_staging_name
from atune.storage._snapshot import read_snapshot, write_snapshot


@pytest.fixture(autouse=True, scope="module")
def _snapshot_every_run() -> Iterator[None]:
    """These experiments are small: snapshot them anyway (the default skips journals
    under 16 MiB, whose replay is cheap)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATUNE_SNAPSHOT_MIN_BYTES", "0")
        yield


# ----------------------------------------------------------------------- experiments
def _flaky(config: dict[str, Any]) -> None:
    """x=1 fails once (then resumes), x=2 always fails, x=3 stops early on a ``done``."""
    start = resume_point()
    for i in range(start + 1, 7):
        if config["x"] == 1 and i == 3 and start == 0:
            raise RuntimeError("first attempt fails")
        if config["x"] == 2 and i == 2:
            raise ValueError("always fails")
        report_with_checkpoint(i, {"score": config["x"] * i, "done": config["x"] == 3 and i == 4})


class _Learner(tune.Trainable):
    def step(self) -> dict[str, Any]:
        return {"score": float(self.config["q"])}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"iteration": self.iteration}, f)

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        pass

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        return True


def _errors_experiment(storage: str) -> Path:
    tune.Tuner(
        _flaky,
        param_space={"x": tune.grid_search([0, 1, 2, 3])},
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="errors",
            storage_path=storage,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    ).fit()
    return Path(storage, "errors")


def _pbt_experiment(storage: str) -> Path:
    results = tune.Tuner(
        _Learner,
        param_space={"q": tune.grid_search([1.0, 2.0, 3.0, 4.0])},
        tune_config=tune.TuneConfig(
            backend="local",
            metric="score",
            mode="max",
            scheduler=PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=2,
                hyperparam_mutations={"q": [1.0, 2.0, 3.0, 4.0]},
            ),
            reuse_actors=True,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(
            name="pbt",
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 8},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        ),
    ).fit()
    assert results.num_errors == 0
    return Path(storage, "pbt")


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    storage = str(tmp_path_factory.mktemp("snapshot-experiments"))
    return {"errors": _errors_experiment(storage), "pbt": _pbt_experiment(storage)}


# ------------------------------------------------------------------------- recorders
class _SearchRecorder(SearchAlgorithm):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set_search_properties(self, *args: Any) -> bool:
        return True

    def next_trial(self, trial_id: str) -> Suggestion | None:
        self.calls.append(("next", trial_id))
        return None

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.calls.append(("complete", trial_id, result and result.get("score"), error))

    @property
    def total_samples(self) -> int | None:
        return None

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        self.calls.append(("set_state",))


class _SchedulerRecorder(TrialScheduler):
    """Records each hook with the trial as the core shows it then (status, result count)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def _record(self, hook: str, trial: Any, result: dict[str, Any] | None = None) -> None:
        iteration = None if result is None else result.get("training_iteration")
        self.calls.append((hook, trial.trial_id, trial.status, trial.num_results, iteration))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._record("add", trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self._record("result", trial, result)
        return "CONTINUE"

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._record("error", trial)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._record("complete", trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._record("remove", trial)


def _policy(path: Path) -> CorePolicy:
    return CorePolicy(
        experiment_path=str(path),
        trainable_name="",
        is_function=False,
        resources_for=lambda config: PlacementGroupFactory([{"CPU": 1.0}]),
        max_live_trials=2,
    )


def _plan(path: Path, history: JournalHistory) -> RestorePlan:
    return RestorePlan(path, "x", history.restore_events(), snapshot=history.snapshot)


def _catch_ups(
    path: Path, plan: RestorePlan, *, listening: bool = True
) -> tuple[list[Any], list[Any], list[Any]]:
    """What restore's replay tells a searcher and (``listening``) a scheduler, and the
    trials it leaves."""
    search = _SearchRecorder()
    scheduler = _SchedulerRecorder() if listening else FIFOScheduler()
    core = ControllerCore(_policy(path), search, scheduler=scheduler)
    replay(core, plan)
    heard = scheduler.calls if isinstance(scheduler, _SchedulerRecorder) else []
    return search.calls, heard, export_trials(core)


def _line_ends(data: bytes) -> list[int]:
    return [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]


def _split(experiment: Path, at: int, into: Path) -> Path:
    """A copy of ``experiment`` whose snapshot covers the journal's first ``at`` bytes."""
    copy = into / f"{experiment.name}-{at}"
    shutil.copytree(experiment, copy)
    journal = copy / JOURNAL_FILE
    data = journal.read_bytes()
    (copy / SNAPSHOT_FILE).unlink(missing_ok=True)
    journal.write_bytes(data[:at])
    compact(copy)
    journal.write_bytes(data)
    return copy


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", ["errors", "pbt"])
def test_the_snapshot_plus_the_tail_equals_replaying_every_event(
    name: str, experiments: dict[str, Path], tmp_path: Path
) -> None:
    experiment = experiments[name]
    data = (experiment / JOURNAL_FILE).read_bytes()
    ends = _line_ends(data)
    cuts = sorted({*ends[:: max(1, len(ends) // 25)], ends[0], ends[-1]})
    kinds = {json.loads(line)["type"] for line in data.splitlines()}
    if name == "errors":
        assert {"trial_errored", "checkpoint_deleted"} <= kinds
    else:
        assert {"trial_paused", "trial_resumed", "trial_exploited"} <= kinds
    compared = kept = 0
    for at in cuts:
        copy = _split(experiment, at, tmp_path)
        full, partial = read_full_history(copy), read_history(copy)
        assert partial.snapshot is not None and partial.snapshot.journal_bytes == at
        assert len(partial.events) < len(full.events)
        assert export_trials(replayed_core(copy, partial)) == export_trials(
            replayed_core(copy, full)
        ), f"cut at byte {at}"
        compared += 1
        # Restore's replay: the snapshot where it suffices, else every event (fallback).
        for listening in (False, True):
            plan = reread_journal(RestorePlan(copy, "x", []), scheduler_listens=listening)
            if plan.snapshot is not None:
                assert not needs_full_history(partial, scheduler_listens=listening)
                kept += listening
            else:
                assert needs_full_history(partial, scheduler_listens=listening)
                assert plan.events == full.events
            assert _catch_ups(copy, plan, listening=listening) == _catch_ups(
                copy, _plan(copy, full), listening=listening
            ), f"cut at byte {at}, listening={listening}"
    assert compared == len(cuts)
    if name == "pbt":  # its scheduler's state is saved at each flush: often enough
        assert kept > 0


def test_a_listening_scheduler_without_a_saved_state_is_told_the_whole_journal(
    experiments: dict[str, Path], tmp_path: Path
) -> None:
    """The snapshot cannot stand in for the events a stateless listening scheduler must
    hear: restore reads every event, and the scheduler hears them as from a full replay
    (which the snapshot alone would not give)."""
    experiment = experiments["errors"]  # FIFO: no scheduler state in the journal
    data = (experiment / JOURNAL_FILE).read_bytes()
    copy = _split(experiment, _line_ends(data)[len(_line_ends(data)) // 2], tmp_path)
    history = read_history(copy)
    assert history.snapshot is not None and history.snapshot.scheduler is None
    assert not needs_full_history(history, scheduler_listens=False)
    assert reread_journal(RestorePlan(copy, "x", []), scheduler_listens=False).snapshot
    plan = reread_journal(RestorePlan(copy, "x", []), scheduler_listens=True)
    assert plan.snapshot is None
    full = _catch_ups(copy, _plan(copy, read_full_history(copy)))
    assert _catch_ups(copy, plan) == full
    heard = full[1]
    assert ("add", heard[0][1], "PENDING", 0, None) == heard[0]  # from the first event on
    # Through the snapshot alone, the scheduler would miss the first half of the run.
    assert _catch_ups(copy, _plan(copy, history))[1] != heard


@pytest.mark.parametrize("name", ["errors", "pbt"])
def test_a_run_ends_with_a_snapshot_that_restore_needs_nothing_before(
    name: str, experiments: dict[str, Path]
) -> None:
    experiment = experiments[name]
    history = read_history(experiment)
    assert history.snapshot is not None
    assert history.events == []
    assert not needs_full_history(history, scheduler_listens=name == "pbt")
    full = _plan(experiment, read_full_history(experiment))
    listening = name == "pbt"  # the experiment's scheduler listens, and was saved last
    plan = reread_journal(RestorePlan(experiment, "x", []), scheduler_listens=listening)
    assert plan.snapshot is not None
    assert _catch_ups(experiment, plan, listening=listening) == _catch_ups(
        experiment, full, listening=listening
    )


@pytest.mark.parametrize("name", ["errors", "pbt"])
def test_results_and_restore_read_through_the_snapshot_equal_a_full_replay(
    name: str, experiments: dict[str, Path], tmp_path: Path
) -> None:
    experiment = experiments[name]
    data = (experiment / JOURNAL_FILE).read_bytes()
    copy = _split(experiment, _line_ends(data)[len(_line_ends(data)) // 2], tmp_path)

    def grid(history: JournalHistory) -> tune.ResultGrid:
        return stored_result_grid(
            copy,
            history.events,
            snapshot=history.snapshot,
            trainable_name="",
            tune_config=TuneConfig(),
            checkpoint_config=CheckpointConfig(),
        )

    def summary(results: tune.ResultGrid) -> list[Any]:
        return [
            (
                r.metrics,
                r.path,
                r.checkpoint and r.checkpoint.path,
                [(c.path, m) for c, m in r.best_checkpoints],
                r.error and (type(r.error).__name__, str(r.error)),
                len(r.metrics_dataframe) if r.metrics_dataframe is not None else None,
            )
            for r in results
        ]

    through = grid(read_history(copy))
    replayed = grid(read_full_history(copy))
    assert summary(through) == summary(replayed)
    assert through._statuses == replayed._statuses  # type: ignore[attr-defined]
    assert summary(tune.load_results(copy)) == summary(replayed)
    if name == "errors":
        assert "ERROR" in through._statuses  # type: ignore[attr-defined]


def test_a_stale_or_damaged_snapshot_is_ignored_with_a_warning(
    experiments: dict[str, Path], tmp_path: Path
) -> None:
    experiment = tmp_path / "copy"
    shutil.copytree(experiments["errors"], experiment)
    journal, snapshot = experiment / JOURNAL_FILE, experiment / SNAPSHOT_FILE
    data, good = journal.read_bytes(), snapshot.read_bytes()
    expected = export_trials(replayed_core(experiment, read_full_history(experiment)))
    other = (experiments["pbt"] / JOURNAL_FILE).read_bytes()
    damages = {
        "shorter": lambda: journal.write_bytes(data[: len(data) // 2]),
        "another journal": lambda: journal.write_bytes(other + other),
        "edited before the offset": lambda: journal.write_bytes(
            data.replace(b'"score":0', b'"score":9', 1)
        ),
        "truncated snapshot": lambda: snapshot.write_bytes(good[: len(good) // 2]),
        "garbage": lambda: snapshot.write_bytes(b"\x00garbage"),
        "another version": lambda: snapshot.write_bytes(
            good.replace(b'"version":1', b'"version":999', 1)
        ),
    }
    for what, damage in damages.items():
        journal.write_bytes(data)
        snapshot.write_bytes(good)
        damage()
        with capture_logs() as logs:
            history = read_history(experiment)
        assert history.snapshot is None, what
        assert any("ignoring the journal's snapshot" in e["event"] for e in logs), what
        if what in ("truncated snapshot", "garbage", "another version"):
            assert export_trials(replayed_core(experiment, history)) == expected, what


def test_a_crash_while_writing_the_snapshot_leaves_a_readable_experiment(
    experiments: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = tmp_path / "copy"
    shutil.copytree(experiments["errors"], experiment)
    old = (experiment / SNAPSHOT_FILE).read_bytes()
    expected = summary_of(experiment)
    # A crash after part of the staging file was written: the old snapshot stays in use.
    torn = experiment / snapshot_staging_name()
    torn.write_bytes(old[: len(old) // 3])
    assert read_snapshot(experiment) is not None
    assert summary_of(experiment) == expected
    # A write that fails before its rename changes nothing either.
    snapshot = read_snapshot(experiment)
    assert snapshot is not None

    def fail(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_snapshot(experiment, snapshot)
    monkeypatch.undo()
    assert (experiment / SNAPSHOT_FILE).read_bytes() == old
    assert summary_of(experiment) == expected
    # The next write removes the staging files of interrupted ones.
    write_snapshot(experiment, snapshot)
    assert not [p for p in experiment.iterdir() if p.name.startswith(f".{SNAPSHOT_FILE}")]
    # A fresh restore of the experiment finishes with nothing to run.
    results = tune.Tuner.restore(str(experiment), _flaky).fit()
    assert [(r.metrics.get("score"), r.error is not None) for r in results] == expected


def summary_of(experiment: Path) -> list[Any]:
    return [(r.metrics.get("score"), r.error is not None) for r in tune.load_results(experiment)]


def test_restore_writes_rows_missing_from_before_the_snapshot(
    experiments: dict[str, Path], tmp_path: Path
) -> None:
    """Rows only the journal holds, for a trial still running at the snapshot, are written
    back from the whole journal."""
    experiment = experiments["errors"]
    data = (experiment / JOURNAL_FILE).read_bytes()
    ends = _line_ends(data)
    copy = _split(experiment, ends[len(ends) // 2], tmp_path)
    history = read_history(copy)
    assert history.snapshot is not None
    running = [t for t in history.snapshot.trials if t.status not in ("TERMINATED", "ERROR")]
    target = next(t for t in running if t.num_results)
    result_file = copy / target.dirname / "result.json"
    rows = result_file.read_text().splitlines(keepends=True)
    result_file.write_text("")
    tune.Tuner.restore(str(copy), _flaky).fit()
    assert result_file.read_text() == "".join(rows)


def test_a_restore_with_nothing_to_run_keeps_the_snapshot_and_reads_its_tail(
    experiments: dict[str, Path], tmp_path: Path
) -> None:
    experiment = tmp_path / "copy"
    shutil.copytree(experiments["errors"], experiment)
    before = (experiment / SNAPSHOT_FILE).read_bytes()
    expected = summary_of(experiment)
    for _ in range(2):
        results = tune.Tuner.restore(str(experiment), _flaky).fit()
        assert [(r.metrics.get("score"), r.error is not None) for r in results] == expected
    assert (experiment / SNAPSHOT_FILE).read_bytes() == before  # a short tail: not rewritten
    history = read_history(experiment)
    assert history.events  # the two restores' events, replayed on top
    assert summary_of(experiment) == expected


# ------------------------------------ ASHA + Optuna and PBT: caught up in step, through it
def _study(name: str, storage: Path, **tune_config: Any) -> tune.Tuner:
    """The simulated ASHA + Optuna or PBT study of ``tests/test_restore_schedulers.py``."""
    from test_restore_schedulers import STUDIES

    tuner = STUDIES[name](str(storage))
    tuner._tune_config = dataclasses.replace(tuner._tune_config, **tune_config)
    return tuner


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("optuna")
    from test_restore_schedulers import NAME

    done = {}
    for name in ("asha", "pbt"):
        storage = tmp_path_factory.mktemp(f"study-{name}")
        _study(name, storage).fit()
        done[name] = storage / NAME
    return done


def _replayed_study(name: str, plan: RestorePlan) -> dict[str, Any]:
    """Restore's replay of ``plan`` into the study's own (fresh) searcher and scheduler:
    what each scheduler hook saw (the trial as the core showed it then), the states
    they end in, and the trials."""
    from atune._controller._restore import _SCHEDULER_HOOKS
    from atune._fit import _scheduler, _search_algorithm
    from test_restore_schedulers import SEED

    tuner = _study(name, plan.experiment_path.parent / "configs")  # not run: its objects
    config = tuner._tune_config
    search = _search_algorithm(config, SEED)
    search.set_search_properties(config.metric, config.mode, tuner._param_space, config.num_samples)
    scheduler = _scheduler(config)
    heard: list[tuple[Any, ...]] = []

    def recording(hook: str, method: Any) -> Any:
        def hook_call(controller: Any, trial: Any, *result: Any) -> Any:
            checkpoints = [c.dir_name for c in trial.checkpoints]
            heard.append((hook, trial.trial_id, trial.status, trial.num_results, checkpoints))
            return method(controller, trial, *result)

        return hook_call

    for hook in _SCHEDULER_HOOKS:
        setattr(scheduler, hook, recording(hook, getattr(scheduler, hook)))
    policy = dataclasses.replace(_policy(plan.experiment_path), max_live_trials=4)
    core = ControllerCore(policy, search, scheduler=scheduler)
    replay(core, plan)
    return {
        "heard": heard,
        "scheduler": json.loads(json.dumps(scheduler.get_state())),
        "search": json.loads(json.dumps(search.get_state())),
        "trials": export_trials(core),
        "paused": list(core._paused),
    }


def _flush_cuts(data: bytes) -> list[tuple[int, int]]:
    """``(snapshot offset, journal end)`` pairs around the journal's flushes.

    The offset is right after a flush's saved scheduler state (the snapshot then holds a
    current one) or in the middle of a flush; the journal ends where the next flush's
    saved states begin (a driver killed there: no state after the snapshot's) or at its
    real end.
    """
    states = (b'"searcher_state_saved"', b'"scheduler_state_saved"')
    ends = _line_ends(data)
    starts = [0, *ends[:-1]]
    lines = data.splitlines(keepends=True)
    saved = [i for i, line in enumerate(lines) if b'"scheduler_state_saved"' in line]
    cuts = []
    for i in saved[:-1]:
        following = next(j for j in range(i + 1, len(lines)) if any(k in lines[j] for k in states))
        for at in (ends[i], ends[(i + following) // 2]):
            for end in (starts[following], len(data)):
                if at < end:
                    cuts.append((at, end))
    return cuts


@pytest.mark.slow
@pytest.mark.parametrize("name", ["asha", "pbt"])
def test_schedulers_are_caught_up_in_step_through_the_snapshot(
    name: str, studies: dict[str, Path], tmp_path: Path
) -> None:
    """A snapshot followed by a tail with no newer saved state: the scheduler is restored
    from the snapshot's state and told the tail's events in step with the core, which
    starts from the snapshot's trials. Every hook sees the trials as a replay of every
    event shows them, and the scheduler, searcher and trials end the same; where the
    snapshot's states are not current, restore reads every event."""
    experiment = studies[name]
    data = (experiment / JOURNAL_FILE).read_bytes()
    uid = json.loads((experiment / "experiment.json").read_text())["uid"]
    cuts = _flush_cuts(data)
    assert len(cuts) >= 8
    through = 0
    for at, end in cuts:
        copy = tmp_path / f"{at}-{end}" / experiment.name
        copy.mkdir(parents=True)
        (copy / JOURNAL_FILE).write_bytes(data[:at])
        compact(copy)
        (copy / JOURNAL_FILE).write_bytes(data[:end])
        plan = reread_journal(RestorePlan(copy, uid, []), scheduler_listens=True)
        full = _plan(copy, read_full_history(copy))
        through += plan.snapshot is not None
        got, want = (
            _replayed_study(name, plan),
            _replayed_study(name, dataclasses.replace(full, uid=uid)),
        )
        if end < len(data):  # no saved state after the snapshot's: the tail is told
            assert want["heard"], f"cut {at}-{end}: nothing caught up"
        assert got == want, f"cut {at}-{end}"
    assert through >= len(cuts) // 4  # the snapshot was used, not only the fallback


def _restored_journals(experiment: Path, tmp_path: Path, name: str) -> list[bytes]:
    """The journal after ``Tuner.restore(...).fit()`` of a copy of ``experiment``, through
    its snapshot and then with the snapshot removed (every event replayed)."""
    from test_restore_schedulers import SIMULATORS

    journals = []
    for through_snapshot in (True, False):
        run = tmp_path / "run"  # the same path both times: the journals can be equal
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(experiment.parent, run)
        if not through_snapshot:
            (run / experiment.name / SNAPSHOT_FILE).unlink()
        tune.Tuner.restore(str(run / experiment.name), SIMULATORS[name]()).fit()
        journals.append((run / experiment.name / JOURNAL_FILE).read_bytes())
    return journals


def _continued(journal: bytes, before: bytes) -> list[dict[str, Any]]:
    assert journal.startswith(before)
    return [json.loads(line) for line in journal[len(before) :].splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["asha", "pbt"])
def test_a_restore_through_an_older_snapshot_continues_exactly_after_a_driver_sigkill(
    name: str, tmp_path: Path
) -> None:
    """A snapshot from before the last flushes, then a driver SIGKILL mid-flush (the
    journal ends before the last flush's saved states): the restore through the snapshot
    and its tail (the scheduler caught up in step from the snapshot's state) writes the
    very journal a restore replaying every event writes, byte for byte."""
    pytest.importorskip("optuna")
    from test_restore_schedulers import _study_kill, tear_last_flush

    experiment = _study_kill(name, str(tmp_path / "killed"), count=120 if name == "asha" else 210)
    tear_last_flush(experiment)
    data = (experiment / JOURNAL_FILE).read_bytes()
    lines = data.splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if b'"scheduler_state_saved"' in line)
    at = sum(map(len, lines[: last + 1]))  # right after the previous flush's states
    (experiment / JOURNAL_FILE).write_bytes(data[:at])
    compact(experiment)
    (experiment / JOURNAL_FILE).write_bytes(data)
    history = read_history(experiment)
    assert history.snapshot is not None and history.events
    assert not any(isinstance(e, SchedulerStateSaved) for e in history.events)
    assert not needs_full_history(history, scheduler_listens=True)
    through, replayed = _restored_journals(experiment, tmp_path, name)
    continued = _continued(through, data)
    assert sum(e["type"] == "result_reported" for e in continued) > 10
    assert through == replayed


# Virtual seconds after which the ASHA study stops early (about a third of its run).
BUDGET_S = 1800.0


@pytest.mark.slow
def test_a_restore_after_an_early_end_continues_through_the_snapshot_exactly(
    tmp_path: Path,
) -> None:
    """A run that ends early (its time budget) writes a snapshot its restore needs nothing
    before (the last flush saved the searcher's and scheduler's states again); restoring
    through it writes the very journal that a restore replaying every event writes."""
    pytest.importorskip("optuna")
    from test_restore_schedulers import NAME

    stopped = tmp_path / "stopped"
    _study("asha", stopped, time_budget_s=BUDGET_S).fit()
    before = (stopped / NAME / JOURNAL_FILE).read_bytes()
    history = read_history(stopped / NAME)
    assert history.snapshot is not None and history.events == []
    assert not needs_full_history(history, scheduler_listens=True)
    through, replayed = _restored_journals(stopped / NAME, tmp_path, "asha")
    assert sum(e["type"] == "result_reported" for e in _continued(through, before)) > 10
    assert through == replayed


def test_a_small_run_writes_no_snapshot_by_default(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its journal replays in milliseconds: writing a snapshot would only lengthen fit().
    monkeypatch.delenv("ATUNE_SNAPSHOT_MIN_BYTES")
    grid = tune.Tuner(
        _flaky,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, name="small", verbose=0),
    ).fit()
    assert not (Path(grid.experiment_path) / SNAPSHOT_FILE).exists()
    monkeypatch.setenv("ATUNE_SNAPSHOT_MIN_BYTES", "100")
    grid = tune.Tuner.restore(grid.experiment_path, _flaky).fit()
    assert (Path(grid.experiment_path) / SNAPSHOT_FILE).exists()


def test_a_bad_snapshot_threshold_fails_before_any_trial(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATUNE_SNAPSHOT_MIN_BYTES", "lots")
    tuner = tune.Tuner(
        _flaky,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, name="bad", verbose=0),
    )
    with pytest.raises(ConfigError, match=r"ATUNE_SNAPSHOT_MIN_BYTES.*'lots'"):
        tuner.fit()
    assert not list(Path(storage, "bad").glob("*/result.json"))
