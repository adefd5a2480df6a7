"""Cancellation, journal damage, planted pickles and ``Tuner.restore`` (in-process backend)."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.errors import JournalCorruptError, StorageError
from atune.storage._layout import (
    DICT_CHECKPOINT_JSON,
    DICT_CHECKPOINT_PICKLE,
    JOURNAL_FILE,
    SNAPSHOT_FILE,
    SPEC_FILE,
    checkpoint_name,
)
from atune.storage._trial_files import read_result_rows

ITERATIONS = 12


def _trainable(config: dict[str, Any]) -> None:
    """Checkpoints every iteration and resumes from the latest checkpoint."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            start = json.load(f)["i"]
    for i in range(start + 1, ITERATIONS + 1):
        time.sleep(0.01)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": i, "x": config["x"]}, f)
            tune.report(
                {"i": i, "score": config["x"] * i}, checkpoint=tune.Checkpoint.from_directory(d)
            )


class _CancelAfter(tune.Callback):
    def __init__(self, n: int, scope: anyio.CancelScope) -> None:
        self.n = n
        self.scope = scope
        self.seen = 0

    def on_trial_result(
        self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
    ) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.scope.cancel()


async def _interrupted_experiment(
    storage: str, num_samples: int = 3, param_space: dict[str, Any] | None = None
) -> Path:
    with anyio.CancelScope() as scope:
        await tune.Tuner(
            _trainable,
            param_space=param_space or {"x": tune.randint(1, 100)},
            tune_config=tune.TuneConfig(
                backend="local", num_samples=num_samples, max_concurrent_trials=2
            ),
            run_config=tune.RunConfig(
                name="exp", storage_path=storage, callbacks=[_CancelAfter(8, scope)]
            ),
        ).fit()
    assert scope.cancelled_caught
    return Path(storage) / "exp"


def _rows(result: tune.Result) -> list[int]:
    return [int(i) for i in result.metrics_dataframe["training_iteration"]]


async def test_cancel_then_restore_to_completion(storage: str) -> None:
    path = await _interrupted_experiment(storage)
    assert tune.Tuner.can_restore(path)
    results = await tune.Tuner.restore(str(path), _trainable).fit()
    assert len(results) == 3 and results.num_errors == 0
    for result in results:
        assert result.metrics["training_iteration"] == ITERATIONS
        assert _rows(result) == list(range(1, ITERATIONS + 1))  # resumed, never restarted
    # The journal holds both runs, and the restored run's results are the same trials.
    journal = (path / JOURNAL_FILE).read_text().splitlines()
    assert sum('"experiment_started"' in line for line in journal) == 2


async def test_a_torn_last_line_is_dropped_with_a_warning(storage: str) -> None:
    path = await _interrupted_experiment(storage)
    journal = path / JOURNAL_FILE
    data = journal.read_bytes()
    journal.write_bytes(data + b'{"type":"result_reported","trial_id":"x","resu')  # torn write
    with capture_logs() as logs:
        tuner = tune.Tuner.restore(str(path), _trainable)
    assert any("torn last line" in entry["event"] for entry in logs)
    results = await tuner.fit()
    assert results.num_errors == 0
    assert all(r.metrics["training_iteration"] == ITERATIONS for r in results)
    # The torn bytes were cut before the resumed run appended.
    assert b'"resu\n' not in journal.read_bytes() and b'"resu{' not in journal.read_bytes()


async def test_a_corrupt_journal_is_an_error_not_a_fresh_start(storage: str) -> None:
    path = await _interrupted_experiment(storage)
    journal = path / JOURNAL_FILE
    lines = journal.read_bytes().split(b"\n")
    lines[3] = b'{"type": "garbage'
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorruptError, match="line 4") as info:
        tune.Tuner.restore(str(path), _trainable)
    assert info.value.line == 4


def test_restore_of_a_directory_that_is_no_experiment(tmp_path: Path) -> None:
    assert not tune.Tuner.can_restore(tmp_path)
    with pytest.raises(StorageError, match="not an atune experiment"):
        tune.Tuner.restore(str(tmp_path), _trainable)


class _Planted:
    """Unpickling this creates a marker file: it must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


async def test_restore_never_executes_planted_pickles(storage: str, tmp_path: Path) -> None:
    path = await _interrupted_experiment(storage)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Planted(str(marker)))
    planted = [path / "tuner.pkl", path / "experiment_state-2026.pkl", path / "searcher-state.pkl"]
    for trial_dir in (p for p in path.iterdir() if p.is_dir()):
        planted += [trial_dir / "params.pkl", trial_dir / "error.pkl"]
        for checkpoint in trial_dir.glob("checkpoint_*"):
            planted.append(checkpoint / DICT_CHECKPOINT_PICKLE)
    for file in planted:
        file.write_bytes(payload)
    results = await tune.Tuner.restore(str(path), _trainable).fit()
    assert results.num_errors == 0
    assert not marker.exists()


class _DictCheckpointer(tune.Trainable):
    """Returns a dict that JSON cannot hold: atune pickles it, signed."""

    def setup(self, config: dict[str, Any]) -> None:
        self.state = {"blob": b"\x00\x01", "n": 0}

    def step(self) -> dict[str, Any]:
        self.state["n"] += 1
        return {"n": self.state["n"]}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:  # type: ignore[override]
        return dict(self.state)

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.state = dict(checkpoint)


def test_signed_dict_checkpoints_load_and_tampered_ones_are_refused(tmp_path: Path) -> None:
    trainable = _DictCheckpointer({})
    trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    fresh = _DictCheckpointer({})
    fresh.restore(checkpoint)
    assert fresh.state == {"blob": b"\x00\x01", "n": 1}
    (tmp_path / "ckpt" / DICT_CHECKPOINT_PICKLE).write_bytes(
        pickle.dumps(_Planted(str(tmp_path / "m")))
    )
    with pytest.raises(StorageError, match="refusing to unpickle"):
        _DictCheckpointer({}).restore(checkpoint)
    assert not (tmp_path / "m").exists()


async def test_new_experiment_under_an_existing_name_never_mixes(storage: str) -> None:
    path = await _interrupted_experiment(storage)
    before = sorted(p.name for p in path.iterdir())
    results = await tune.Tuner(
        _trainable,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="exp", storage_path=storage),
    ).fit()
    assert Path(results.experiment_path) != path
    assert sorted(p.name for p in path.iterdir()) == before


SCRIPT = """
import signal
import sys
# Ctrl-C raises KeyboardInterrupt even where the test runner was started with SIGINT
# ignored (a background job of a non-interactive shell), which children inherit.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests_dir!r})
import atune as tune
from test_restore import _slow_trainable

tune.Tuner(
    _slow_trainable,
    param_space={{"x": tune.grid_search([1, 2])}},
    tune_config=tune.TuneConfig(backend="local"),
    run_config=tune.RunConfig(name="ctrl_c", storage_path={storage!r}),
).fit()
"""


def _slow_trainable(config: dict[str, Any]) -> None:
    """Like ``_trainable`` but slow enough to be interrupted mid-run."""
    for i in range(resume_point() + 1, ITERATIONS + 1):
        time.sleep(0.1)
        report_with_checkpoint(i, {"i": i})


def test_ctrl_c_in_a_script_leaves_a_restorable_experiment(storage: str) -> None:
    import signal
    import subprocess
    import sys

    script = SCRIPT.format(tests_dir=str(Path(__file__).parent), storage=storage)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    journal = Path(storage, "ctrl_c", JOURNAL_FILE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count('"result_reported"') >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in output
    assert "Tuner.restore(" in output  # the message says how to resume
    results = tune.Tuner.restore(str(Path(storage, "ctrl_c")), _slow_trainable).fit()
    assert results.num_errors == 0
    for result in results:
        assert _rows(result) == list(range(1, ITERATIONS + 1))


# ------------------------------------------------------------ finished experiments
def _counting_trainable(config: dict[str, Any]) -> None:
    """Reports three results; appends a line to ``config["runs"]`` every time it starts."""
    with open(config["runs"], "a") as f:
        f.write("run\n")
    for i in range(1, 4):
        tune.report({"score": config["x"] * i})


def _finished_experiment(storage: str, backend: str, runs: Path) -> tune.ResultGrid:
    return tune.Tuner(
        _counting_trainable,
        param_space={"x": tune.grid_search([1, 2]), "runs": str(runs)},
        tune_config=tune.TuneConfig(backend=backend, metric="score", mode="max"),
        run_config=tune.RunConfig(name="done", storage_path=storage, verbose=0),
    ).fit()


@pytest.mark.timeout(90)  # the defect was a hang: restoring a finished experiment never returned
@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_restoring_a_finished_experiment_returns_its_results_and_runs_nothing(
    storage: str, tmp_path: Path, backend: str
) -> None:
    runs = tmp_path / "runs.txt"
    first = _finished_experiment(storage, backend, runs)
    assert runs.read_text().count("run") == 2
    restored = tune.Tuner.restore(str(Path(storage, "done")), _counting_trainable).fit()
    assert runs.read_text().count("run") == 2  # nothing ran again
    assert [r.metrics["score"] for r in restored] == [r.metrics["score"] for r in first] == [3, 6]
    assert restored.num_terminated == 2 and restored.num_errors == 0
    assert restored.get_best_result().config["x"] == 2  # type: ignore[index]


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``path`` with its bytes and modification time."""
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_get_results_of_a_restored_tuner_returns_the_stored_grid_without_running(
    storage: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    first = _finished_experiment(storage, "local", runs)
    path = Path(storage, "done")
    before = _snapshot(path)
    results = tune.Tuner.restore(str(path), _counting_trainable).get_results()
    assert _snapshot(path) == before  # restoring and reading wrote nothing
    assert runs.read_text().count("run") == 2
    assert len(results) == 2 and results.num_terminated == 2
    assert [r.metrics["score"] for r in results] == [r.metrics["score"] for r in first]
    assert [r.config for r in results] == [r.config for r in first]
    assert results.get_best_result().metrics["score"] == 6  # metric/mode came along
    assert list(results[1].metrics_dataframe["score"]) == [2, 4, 6]


def test_load_results_needs_no_trainable_and_writes_nothing(storage: str, tmp_path: Path) -> None:
    _finished_experiment(storage, "local", tmp_path / "runs.txt")
    path = Path(storage, "done")
    journal = path / JOURNAL_FILE
    journal.write_bytes(journal.read_bytes() + b'{"type":"result_reported","tri')  # torn
    before = _snapshot(path)
    with capture_logs() as logs:
        loaded = tune.load_results(path)
        again = tune.ResultGrid.from_path(str(path))
    assert _snapshot(path) == before  # the torn tail was not cut, nothing was written
    assert not [entry for entry in logs if entry["log_level"] == "warning"]
    for grid in (loaded, again):
        assert [r.metrics["score"] for r in grid] == [3, 6]
        assert grid.num_terminated == 2 and grid.num_errors == 0
        assert grid.get_best_result().config["x"] == 2  # type: ignore[index]
        assert Path(grid.experiment_path) == path.resolve()


def test_load_results_of_something_that_is_no_experiment(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not an atune experiment"):
        tune.load_results(tmp_path)


LIVE_SCRIPT = """
import sys
sys.path.insert(0, {tests_dir!r})
import atune as tune
from test_restore import _gated_trainable

tune.Tuner(
    _gated_trainable,
    param_space={{"x": tune.grid_search([1, 2]), "gate": {gate!r}}},
    tune_config=tune.TuneConfig(backend="local"),
    # A function stopper sees every result: each one is delivered (and flushed) at once.
    run_config=tune.RunConfig(
        name="live", storage_path={storage!r}, verbose=0, stop=lambda trial_id, result: False
    ),
).fit()
"""


def _gated_trainable(config: dict[str, Any]) -> None:
    """Reports 3 results, waits until the file ``config["gate"]`` exists, reports 3 more."""
    for i in range(1, 7):
        tune.report({"i": i})
        while i == 3 and not os.path.exists(config["gate"]):
            time.sleep(0.01)


def _journaled_results(journal: Path) -> int:
    return journal.read_text().count('"result_reported"') if journal.exists() else 0


def test_load_results_reads_an_experiment_another_process_is_running(
    storage: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    gate = tmp_path / "gate"
    script = LIVE_SCRIPT.format(
        tests_dir=str(Path(__file__).parent), storage=storage, gate=str(gate)
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    path = Path(storage, "live")
    journal = path / JOURNAL_FILE
    try:
        deadline = time.monotonic() + 60
        while _journaled_results(journal) < 6:  # both trials wait at the gate
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        snapshot = tune.load_results(path)
        gate.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert snapshot._statuses == ["RUNNING", "RUNNING"]
    assert snapshot.num_terminated == 0 and snapshot.num_errors == 0
    for result in snapshot:
        assert result.metrics["i"] == 3
        # Read after the trials went on: the rows written since the snapshot are left out.
        assert list(result.metrics_dataframe["i"]) == [1, 2, 3]
    final = tune.load_results(path)
    assert final.num_terminated == 2
    for result in final:
        assert list(result.metrics_dataframe["i"]) == [1, 2, 3, 4, 5, 6]


def test_restore_refuses_a_trainable_of_another_name_or_kind(storage: str, tmp_path: Path) -> None:
    _finished_experiment(storage, "local", tmp_path / "runs.txt")
    path = str(Path(storage, "done"))

    def other_function(config: dict[str, Any]) -> None:
        pass

    same_name_class = type("_counting_trainable", (tune.Trainable,), {})
    with pytest.raises(ValueError, match=r"'_counting_trainable'.*'other_function'"):
        tune.Tuner.restore(path, other_function)
    with pytest.raises(ValueError, match=r"function trainable '_counting_trainable'.*class"):
        tune.Tuner.restore(path, same_name_class)
    with pytest.raises(ValueError):
        tune.Tuner.restore(path, "abcd")  # type: ignore[arg-type]
    # Changed code under the same name is allowed (as in Ray Tune).
    tune.Tuner.restore(path, tune.with_parameters(_counting_trainable))


# ------------------------------------------------------------- code in the search space
async def test_restore_without_param_space_when_the_space_holds_code(storage: str) -> None:
    space = {"x": tune.randint(1, 100), "y": tune.sample_from(lambda spec: spec.config.x + 1)}
    path = await _interrupted_experiment(storage, num_samples=4, param_space=space)
    results = await tune.Tuner.restore(str(path), _trainable).fit()  # no param_space
    assert len(results) == 4 and results.num_errors == 0
    for result in results:
        assert result.config["y"] == result.config["x"] + 1  # type: ignore[index]
        assert result.metrics["training_iteration"] == ITERATIONS


async def test_restore_refuses_a_tampered_code_leaf_and_never_runs_it(
    storage: str, tmp_path: Path
) -> None:
    import base64

    space = {"x": tune.randint(1, 100), "y": tune.sample_from(lambda spec: 1)}
    path = await _interrupted_experiment(storage, param_space=space)
    marker = tmp_path / "pwned"
    spec_file = path / SPEC_FILE
    spec = json.loads(spec_file.read_text())
    stored = spec["param_space"]["y"]
    assert stored["__atune_value__"] == "pickle"
    stored["data"] = base64.b64encode(pickle.dumps(_Planted(str(marker)))).decode()
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(StorageError, match=r"refusing to unpickle .*'y'"):
        tune.Tuner.restore(str(path), _trainable)
    assert not marker.exists()
    # Passing the space again supplies the value; nothing stored is unpickled.
    results = await tune.Tuner.restore(str(path), _trainable, param_space=space).fit()
    assert results.num_errors == 0 and not marker.exists()


# ------------------------------------------------------------ damaged checkpoints
class _Counter(tune.Trainable):
    """Counts to 6 with a JSON dict checkpoint each step; fails at 4 while ``fail`` exists."""

    def setup(self, config: dict[str, Any]) -> None:
        self.n = 0

    def step(self) -> dict[str, Any]:
        self.n += 1
        if self.n == 4 and os.path.exists(self.config["fail"]):
            raise RuntimeError("failing at 4")
        return {"n": self.n, "done": self.n >= 6}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:  # type: ignore[override]
        return {"n": self.n}

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.n = checkpoint["n"]


def _failed_counters(storage: str, tmp_path: Path) -> Path:
    fail = tmp_path / "fail"
    fail.touch()
    results = tune.Tuner(
        _Counter,
        param_space={"x": tune.grid_search([1, 2]), "fail": str(fail)},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="counters",
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()
    assert results.num_errors == 2
    fail.unlink()
    return Path(storage, "counters")


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:5])


def test_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(
    storage: str, tmp_path: Path
) -> None:
    path = _failed_counters(storage, tmp_path)
    first, second = sorted(p for p in path.iterdir() if p.is_dir())
    damaged = first / checkpoint_name(2)
    _truncate(damaged / DICT_CHECKPOINT_JSON)
    with capture_logs() as logs:
        results = tune.Tuner.restore(str(path), _Counter, resume_errored=True).fit()
    warnings = [e for e in logs if e["log_level"] == "warning" and "damaged" in e["event"]]
    assert [w["damaged"] for w in warnings] == [str(damaged)]
    assert checkpoint_name(1) in warnings[0]["event"]
    assert results.num_errors == 0 and results.num_terminated == 2
    by_dir = {Path(r.path).name: r for r in results}
    # Resumed from checkpoint_000001 (n=2): the restored run reported 3, 4, 5, 6.
    assert list(by_dir[first.name].metrics_dataframe["n"]) == [1, 2, 3, 3, 4, 5, 6]
    assert list(by_dir[second.name].metrics_dataframe["n"]) == [1, 2, 3, 4, 5, 6]
    kept = [c.path for c, _ in by_dir[first.name].best_checkpoints]  # type: ignore[union-attr]
    assert str(damaged) not in kept
    # The journal says so: a second restore does not try the damaged checkpoint again.
    assert tune.load_results(path)[0].checkpoint.path != str(damaged)  # type: ignore[union-attr]


def test_a_trial_without_an_intact_checkpoint_fails_naming_the_path(
    storage: str, tmp_path: Path
) -> None:
    from atune.errors import CheckpointCorruptError

    path = _failed_counters(storage, tmp_path)
    first = sorted(p for p in path.iterdir() if p.is_dir())[0]
    for checkpoint in first.glob("checkpoint_*"):
        _truncate(checkpoint / DICT_CHECKPOINT_JSON)
    results = tune.Tuner.restore(str(path), _Counter, resume_errored=True).fit()
    assert results.num_errors == 1 and results.num_terminated == 1  # the other trial went on
    error = next(r.error for r in results if r.error is not None)
    assert isinstance(error, CheckpointCorruptError)
    assert error.path == str(first / checkpoint_name(0) / DICT_CHECKPOINT_JSON)
    assert error.path in str(error)


class _FlakyRestore(tune.Trainable):
    """Fails at step 3 on its first run; its first two restores raise (counted in a file)."""

    def setup(self, config: dict[str, Any]) -> None:
        self.n = 0
        self.restored = False

    def step(self) -> dict[str, Any]:
        self.n += 1
        if self.n == 3 and not self.restored:
            raise RuntimeError("first run fails at 3")
        return {"n": self.n}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:  # type: ignore[override]
        return {"n": self.n}

    def load_checkpoint(self, checkpoint: Any) -> None:
        counter = Path(self.config["restores"])
        attempts = int(counter.read_text() or 0) if counter.exists() else 0
        counter.write_text(str(attempts + 1))
        if attempts < 2:
            raise RuntimeError(f"restore attempt {attempts + 1} fails")
        self.n = checkpoint["n"]
        self.restored = True


@pytest.mark.parametrize(("retries", "errors"), [("0", 1), ("2", 0)])
def test_restore_retry_num_retries_failed_restores_uncounted(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: str, errors: int
) -> None:
    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", retries)
    [result] = tune.Tuner(
        _FlakyRestore,
        param_space={"restores": str(tmp_path / "restores")},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 5},
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()
    assert (result.error is not None) == bool(errors)
    assert result.metrics["n"] == (2 if errors else 5)


def test_restore_retry_num_must_be_a_count(storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from atune.errors import ConfigError

    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", "two")
    with pytest.raises(ConfigError, match=r"TUNE_RESTORE_RETRY_NUM.*'two'"):
        tune.Tuner(
            _counting_trainable,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()


def test_restore_writes_the_rows_only_the_journal_holds(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver killed after a flush's journal lines were durable but before its result rows
    were written: restoring the experiment writes those rows from the journal."""
    monkeypatch.setenv("ATUNE_SNAPSHOT_MIN_BYTES", "0")  # the test removes the snapshot
    from atune.storage._layout import PROGRESS_FILE, RESULT_FILE

    grid = tune.Tuner(
        _trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(name="torn_rows", storage_path=storage, verbose=0),
    ).fit()
    trial_dir = Path(grid[0].path)
    for name in (RESULT_FILE, PROGRESS_FILE):  # as if the last flush's rows never came
        lines = (trial_dir / name).read_text().splitlines(keepends=True)
        (trial_dir / name).write_text("".join(lines[:5]))
    # A killed driver writes no end-of-run snapshot of the journal either.
    (Path(storage, "torn_rows") / SNAPSHOT_FILE).unlink()
    results = tune.Tuner.restore(str(Path(storage, "torn_rows")), _trainable).fit()
    for result in results:
        assert _rows(result) == list(range(1, ITERATIONS + 1))
        assert [r["training_iteration"] for r in read_result_rows(Path(result.path)) or []] == list(
            range(1, ITERATIONS + 1)
        )
