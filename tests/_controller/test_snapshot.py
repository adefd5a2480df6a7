"""The journal's snapshot: reading through it gives exactly what replaying every event gives.

Each experiment's journal is cut at many line boundaries; a snapshot is taken at the cut
and the rest of the journal appended, as a run that snapshotted and went on (or crashed)
leaves it. Trials, result grids and what restore's catch-ups tell the searcher and the
scheduler must then equal a replay of every event.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune._controller._restore import History, catch_up_scheduler, catch_up_search
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
from atune.events import Event, SchedulerStateSaved, SearcherStateSaved
from atune.schedulers import PopulationBasedTraining, TrialScheduler
from atune.search import SearchAlgorithm, Suggestion
from atune.storage._layout import JOURNAL_FILE, SNAPSHOT_FILE, snapshot_staging_name
from atune.storage._snapshot import read_snapshot, write_snapshot


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
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("add", trial.trial_id))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self.calls.append(("result", trial.trial_id, result.get("training_iteration")))
        return "CONTINUE"

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self.calls.append(("complete", trial.trial_id, result.get("training_iteration")))

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("remove", trial.trial_id))


def _last(events: list[Event], kind: type) -> int:
    return max((i for i, e in enumerate(events) if isinstance(e, kind)), default=-1)


def _catch_ups(path: Path, history: JournalHistory) -> tuple[list[Any], list[Any]]:
    """What restore's catch-ups tell a searcher and a scheduler, reading ``history``."""
    events = history.restore_events()
    seen = History.before(history.snapshot)
    search = _SearchRecorder()
    catch_up_search(search, events, _last(events, SearcherStateSaved), seen)
    core = replayed_core(path, history)
    scheduler = _SchedulerRecorder()
    core.scheduler = scheduler
    catch_up_scheduler(core, events, _last(events, SchedulerStateSaved), seen)
    return search.calls, scheduler.calls


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
    compared = caught_up = 0
    for at in cuts:
        copy = _split(experiment, at, tmp_path)
        full, partial = read_full_history(copy), read_history(copy)
        assert partial.snapshot is not None and partial.snapshot.journal_bytes == at
        assert len(partial.events) < len(full.events)
        assert export_trials(replayed_core(copy, partial)) == export_trials(
            replayed_core(copy, full)
        ), f"cut at byte {at}"
        compared += 1
        if not needs_full_history(partial, scheduler_listens=False):
            searched, scheduled = _catch_ups(copy, partial)
            assert searched == _catch_ups(copy, full)[0], f"cut at byte {at}"
            caught_up += 1
            if not needs_full_history(partial, scheduler_listens=True):
                assert scheduled == _catch_ups(copy, full)[1], f"cut at byte {at}"
    assert caught_up > compared // 2  # most cuts need no event before them


@pytest.mark.parametrize("name", ["errors", "pbt"])
def test_a_run_ends_with_a_snapshot_that_restore_needs_nothing_before(
    name: str, experiments: dict[str, Path]
) -> None:
    experiment = experiments[name]
    history = read_history(experiment)
    assert history.snapshot is not None
    assert history.events == []
    assert not needs_full_history(history, scheduler_listens=name == "pbt")
    full = read_full_history(experiment)
    search, scheduler = _catch_ups(experiment, history)
    assert search == _catch_ups(experiment, full)[0]
    if name == "pbt":  # the experiment's scheduler listens, and was saved last
        assert scheduler == _catch_ups(experiment, full)[1]


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
