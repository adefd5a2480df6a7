"""The ``atune`` command line, run for real (``python -m atune``) on experiments of real runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from _checkpointing import report_with_checkpoint, resume_point
from atune.storage._layout import ERROR_FILE, JOURNAL_FILE, parse_error_records

ITERATIONS = 6
TESTS_DIR = str(Path(__file__).parent)


def _trainable(config: dict[str, Any]) -> None:
    """Checkpoints every iteration and resumes from the latest checkpoint."""
    for i in range(resume_point() + 1, ITERATIONS + 1):
        time.sleep(0.02)
        report_with_checkpoint(i, {"loss": config["x"] / i})


def _slow_trainable(config: dict[str, Any]) -> None:
    for i in range(1, 200):
        time.sleep(0.05)
        tune.report({"loss": config["x"] / i})


def _failing_trainable(config: dict[str, Any]) -> None:
    tune.report({"loss": 1.0})
    raise ValueError(f"x={config['x']} fails")


def atune_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m atune ARGS`` in a fresh process, this test directory importable."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(
        [TESTS_DIR, *filter(None, [environment.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "atune", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )


def _finished(storage: str, name: str = "done") -> tune.ResultGrid:
    results = tune.Tuner(
        _trainable,
        param_space={"x": tune.grid_search([3, 1, 2])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    ).fit()
    assert isinstance(results, tune.ResultGrid)
    return results


class _CancelAfter(tune.Callback):
    def __init__(self, n: int, scope: anyio.CancelScope) -> None:
        self.n, self.scope, self.seen = n, scope, 0

    def on_trial_result(self, *args: Any, **info: Any) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.scope.cancel()


async def _interrupted(storage: str) -> Path:
    with anyio.CancelScope() as scope:
        await tune.Tuner(
            _trainable,
            param_space={"x": tune.grid_search([1, 2, 3])},
            tune_config=tune.TuneConfig(
                backend="local", metric="loss", mode="min", max_concurrent_trials=2
            ),
            run_config=tune.RunConfig(
                name="cut", storage_path=storage, verbose=0, callbacks=[_CancelAfter(5, scope)]
            ),
        ).fit()
    assert scope.cancelled_caught
    return Path(storage, "cut")


# ------------------------------------------------------------------------------ ls


def test_ls_lists_experiments_with_trials_by_status_start_and_best(storage: str) -> None:
    grid = _finished(storage, "first")
    _finished(storage, "second")
    Path(storage, "not-an-experiment").mkdir()
    out = atune_cli("ls", storage)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"experiments under {Path(storage).resolve()}:"
    assert lines[1].split() == ["NAME", "TRIALS", "STARTED", "BEST"]
    best = grid.get_best_result().metrics["loss"]
    for name, line in zip(["first", "second"], lines[2:], strict=True):
        assert re.fullmatch(
            rf"{name}\s+3 TERMINATED\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\s+"
            rf"loss={best:.6g} \(min\)",
            line,
        ), line
    assert "not-an-experiment" not in out.stdout


def test_ls_defaults_to_the_storage_path_runconfig_uses(storage: str) -> None:
    _finished(storage)
    out = atune_cli("ls", env={"ATUNE_STORAGE_PATH": storage})
    assert out.returncode == 0, out.stderr
    assert re.search(r"^done\s+3 TERMINATED", out.stdout, re.MULTILINE)


def test_ls_of_an_empty_and_of_a_missing_storage(tmp_path: Path) -> None:
    out = atune_cli("ls", str(tmp_path))
    assert (out.returncode, out.stdout.strip()) == (0, f"no experiments under {tmp_path}")
    out = atune_cli("ls", str(tmp_path / "missing"))
    assert out.returncode == 2
    assert "is not a directory" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------ show


def test_show_prints_every_trial_and_the_best_result(storage: str) -> None:
    grid = _finished(storage)
    out = atune_cli("show", grid.experiment_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "metric: loss (min)" in text and "trials: 3 (3 TERMINATED)" in text
    header = next(line for line in text.splitlines() if line.startswith("TRIAL"))
    assert header.split() == ["TRIAL", "STATUS", "ITER", "loss", "x"]
    for result in grid:
        row = next(
            line for line in text.splitlines() if line.startswith(result.metrics["trial_id"])
        )
        assert row.split() == [
            result.metrics["trial_id"],
            "TERMINATED",
            str(ITERATIONS),
            f"{result.metrics['loss']:.6g}",
            str(result.config["x"]),
        ]
    best = grid.get_best_result()
    assert f"best result (loss, min): trial {best.metrics['trial_id']}" in text
    assert f"config: {best.config}" in text
    # --metric/--mode rank by another column
    out = atune_cli("show", grid.experiment_path, "--mode", "max")
    worst = grid.get_best_result(mode="max")
    assert f"best result (loss, max): trial {worst.metrics['trial_id']}" in out.stdout


def test_show_of_a_path_that_is_not_an_experiment(tmp_path: Path) -> None:
    out = atune_cli("show", str(tmp_path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert "is not an atune experiment directory" in out.stderr
    assert "Traceback" not in out.stderr


async def test_show_while_the_experiment_is_running(storage: str) -> None:
    tuner = tune.Tuner(
        _slow_trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(name="live", storage_path=storage, verbose=0),
    )
    journal = Path(storage, "live", JOURNAL_FILE)
    async with anyio.create_task_group() as tg:
        tg.start_soon(tuner.fit)
        with anyio.fail_after(60):
            while not (
                await anyio.to_thread.run_sync(journal.exists)
                and (await anyio.Path(journal).read_text()).count('"result_reported"') >= 2
            ):
                await anyio.sleep(0.05)
        out = await anyio.run_process(
            [sys.executable, "-m", "atune", "show", str(journal.parent)], check=False
        )
        tg.cancel_scope.cancel()
    assert out.returncode == 0, out.stderr.decode()
    assert "trials: 2 (2 RUNNING)" in out.stdout.decode()
    assert "best result (loss, min): trial" in out.stdout.decode()


# ------------------------------------------------------------------------------ resume


async def test_resume_finishes_an_interrupted_experiment(storage: str) -> None:
    path = await _interrupted(storage)
    before = atune_cli("show", str(path))
    assert before.returncode == 0, before.stderr
    (summary,) = [line for line in before.stdout.splitlines() if line.startswith("trials: 3")]
    assert "3 TERMINATED" not in summary  # it really was cut short
    out = await anyio.to_thread.run_sync(
        lambda: atune_cli("resume", str(path), "--trainable", "test_cli:_trainable")
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trials: 3 (3 TERMINATED)" in out.stdout
    grid = tune.load_results(path)
    assert grid.statuses == ["TERMINATED"] * 3
    for result in grid:
        iterations = [int(i) for i in result.metrics_dataframe["training_iteration"]]
        assert iterations == list(range(1, ITERATIONS + 1))  # resumed, not restarted
    journal = (path / JOURNAL_FILE).read_text().splitlines()
    assert sum(json.loads(line)["type"] == "experiment_started" for line in journal) == 2


def test_resume_exits_1_when_a_trial_ends_in_error(storage: str) -> None:
    results = tune.Tuner(
        _failing_trainable,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(name="bad", storage_path=storage, verbose=0),
    ).fit()
    assert isinstance(results, tune.ResultGrid) and results.num_errors == 2
    out = atune_cli(
        "resume", results.experiment_path, "--trainable", "test_cli:_failing_trainable",
        "--restart-errored",
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "trials: 2 (2 ERROR)" in out.stdout
    assert "2 trial(s) ended in error" in out.stderr
    for result in results:  # each errored trial really ran again
        records = parse_error_records(Path(result.path, ERROR_FILE).read_text())
        assert len(records) == 2 and records[-1].error_type.endswith("ValueError")


@pytest.mark.parametrize(
    ("trainable", "message"),
    [
        ("no_colon", "--trainable must be MODULE:NAME"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("test_cli:no_such_function", "has no attribute 'no_such_function'"),
        ("test_cli:ITERATIONS", "is not a function or Trainable class"),
    ],
)
def test_resume_with_a_trainable_that_cannot_be_used(
    storage: str, trainable: str, message: str
) -> None:
    grid = _finished(storage)
    out = atune_cli("resume", grid.experiment_path, "--trainable", trainable)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_resume_of_a_path_that_is_not_an_experiment(tmp_path: Path) -> None:
    out = atune_cli("resume", str(tmp_path), "--trainable", "test_cli:_trainable")
    assert out.returncode == 2 and "is not an atune experiment directory" in out.stderr


# ------------------------------------------------------------------------------ the program


def test_bad_usage_exits_2() -> None:
    assert atune_cli().returncode == 2
    assert atune_cli("frobnicate").returncode == 2
    assert atune_cli("resume", "somewhere").returncode == 2  # --trainable is required


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from atune._cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0\n"
        "heavy = ('ray', 'pandas', 'msgspec', 'atune.tuner', 'atune.result', 'structlog')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "ls" in out.stdout and "resume" in out.stdout
    assert out.stdout.splitlines()[-1] == "[]"


def test_the_atune_console_script() -> None:
    script = Path(sys.executable).with_name("atune")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (atune not pip-installed)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "List, show and resume atune experiments." in out.stdout
