"""A trial's working directory: its trial directory on Ray (as in Ray Tune), unchanged
in-process; ``TUNE_ORIG_WORKING_DIR`` names the original one on both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import atune as tune


def where_am_i(config: dict[str, Any]) -> None:
    if config.get("write", True):
        Path("written_here.txt").write_text(config["x"])  # relative: lands in the cwd
    tune.report(
        {
            "cwd": os.getcwd(),
            "trial_dir": tune.get_context().get_trial_dir(),
            "orig": os.environ.get("TUNE_ORIG_WORKING_DIR"),
        }
    )


def _fit(storage: str, backend: str, xs: list[str]) -> list[tune.Result]:
    grid = tune.Tuner(
        where_am_i,
        param_space={"x": tune.grid_search(xs)},
        tune_config=tune.TuneConfig(backend=backend, reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    results = list(grid)
    assert not grid.errors
    return results


@pytest.mark.ray
def test_on_ray_each_trial_of_a_reused_actor_runs_in_its_own_directory(storage: str) -> None:
    results = _fit(storage, "ray", ["a", "b", "c"])
    for result in results:
        assert result.metrics["cwd"] == result.metrics["trial_dir"] == result.path
        assert Path(result.path, "written_here.txt").read_text() == result.config["x"]
        assert result.metrics["orig"] == os.getcwd()


CHDIR_OFF = """
import os, sys
sys.path.insert(0, {tests_dir!r})
import ray
import atune as tune
from test_working_dir import where_am_i

ray.init(address={address!r}, logging_level="ERROR", configure_logging=False)
os.chdir({workdir!r})
(result,) = tune.Tuner(where_am_i, param_space={{"x": "a", "write": False}},
                       run_config=tune.RunConfig(storage_path={storage!r})).fit()
assert result.error is None, result.error
print("CWD", result.metrics["cwd"])
print("ORIG", result.metrics["orig"])
"""


@pytest.mark.ray
def test_ray_chdir_to_trial_dir_0_keeps_the_workers_directory(storage: str, tmp_path: Path) -> None:
    import ray

    workdir = tmp_path / "driver_cwd"
    workdir.mkdir()
    script = CHDIR_OFF.format(
        tests_dir=str(Path(__file__).parent),
        address=ray.get_runtime_context().gcs_address,
        workdir=str(workdir),
        storage=storage,
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "RAY_CHDIR_TO_TRIAL_DIR": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(
        line.split(" ", 1) for line in proc.stdout.splitlines() if line[:4] in ("CWD ", "ORIG")
    )
    assert not out["CWD"].startswith(storage)  # not moved into the trial directory
    assert out["ORIG"] == str(workdir)


def test_in_process_trials_never_change_the_working_directory(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Set, then removed: the test's end puts back whatever the process had.
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", "unused")
    monkeypatch.delenv("TUNE_ORIG_WORKING_DIR")
    results = _fit(storage, "local", ["a", "b"])
    assert os.getcwd() == str(tmp_path)
    for result in results:
        assert result.metrics["cwd"] == str(tmp_path)
        assert result.metrics["orig"] == str(tmp_path)
    assert (tmp_path / "written_here.txt").exists()
