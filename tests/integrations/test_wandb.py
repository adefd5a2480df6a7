"""Weights & Biases in offline mode: ``WandbLoggerCallback`` and ``setup_wandb``; the
offline run files are read back with W&B's own reader (``wandb leet inspect --json``)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atune as tune

pytest.importorskip("wandb", reason='the wandb extra is absent: pip install "atune[wandb]"')

import wandb

from atune.integrations.wandb import WandbLoggerCallback, setup_wandb


@pytest.fixture
def wandb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "wandb-runs"
    directory.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(directory))
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield directory
    wandb.teardown()


def _wandb_core_children() -> list[str]:
    """The ``wandb-core`` processes whose parent is this process."""
    found = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "wandb" in fields.get("Name", ""):
            found.append(status)
    return found


def _records(run_file: str) -> list[dict[str, Any]]:
    """The run's records, through W&B's own transaction-log reader."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", run_file],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _offline_runs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Run id -> records, for every offline run under ``directory``."""
    runs = {}
    for run_file in glob.glob(str(directory / "wandb" / "offline-run-*" / "run-*.wandb")):
        records = _records(run_file)
        run = next(r["run"] for r in records if r["type"] == "run")
        runs[run["run_id"]] = records
    return runs


def _history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def _train(config: dict[str, Any]) -> None:
    for i in range(3):
        tune.report({"loss": config["lr"] * (3 - i), "nested": {"acc": i / 10}, "text": "x"})


@pytest.mark.timeout(180)
def test_callback_writes_an_offline_run_per_trial(storage: str, wandb_dir: Path) -> None:
    callback = WandbLoggerCallback(project="atune-test", tags=["t"], excludes=["nested/acc"])
    results = tune.Tuner(
        _train,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, name="wb", verbose=0, callbacks=[callback]),
    ).fit()
    assert not results.errors
    # W&B's helper process was shut down with the experiment.
    assert _wandb_core_children() == []

    runs = _offline_runs(wandb_dir)
    assert set(runs) == {str(r.metrics["trial_id"]) for r in results}
    for result in results:
        records = runs[str(result.metrics["trial_id"])]
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["project"] == "atune-test"
        assert run["run_group"] == "wb"
        assert run["tags"] == ["t"]
        assert run["display_name"].endswith(str(result.metrics["trial_id"]))  # the trial name
        assert run["config"]["update"]["lr"] == result.config["lr"]
        history = _history(records)
        lr = result.config["lr"]
        assert [h["training_iteration"] for h in history] == [1, 2, 3]
        assert [h["loss"] for h in history] == pytest.approx([lr * 3, lr * 2, lr])
        assert all("nested/acc" not in h and "text" not in h and "done" not in h for h in history)
        assert any(r["type"] == "exit" and r["exit"].get("exit_code", 0) == 0 for r in records)


@pytest.mark.timeout(180)
def test_setup_wandb_starts_a_run_for_the_trial(storage: str, wandb_dir: Path) -> None:
    def train(config: dict[str, Any]) -> None:
        run = setup_wandb(config, project="inside")
        for i in range(2):
            run.log({"score": config["lr"] * i})
            tune.report({"score": config["lr"] * i})
        run.finish()

    results = tune.Tuner(
        train,
        param_space={"lr": tune.grid_search([1.0, 2.0]), "wandb": {"tags": ["in"]}},
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0),
    ).fit()
    assert not results.errors
    # The runs were finished but W&B's helper is still up (the fixture ends it): this is
    # what the callback's test checks is gone.
    assert _wandb_core_children()

    runs = _offline_runs(wandb_dir)
    assert set(runs) == {str(r.metrics["trial_id"]) for r in results}
    for result in results:
        records = runs[str(result.metrics["trial_id"])]
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["project"] == "inside" and run["run_group"] == "exp" and run["tags"] == ["in"]
        assert run["config"]["update"]["lr"] == result.config["lr"]
        assert "wandb" not in run["config"]["update"]
        assert [h["score"] for h in _history(records)] == [0, result.config["lr"]]


def test_callback_without_a_project_is_a_config_error(
    storage: str, wandb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_PROJECT_NAME", raising=False)
    with pytest.raises(tune.TuneError, match="needs a project"):
        tune.Tuner(
            _train,
            param_space={"lr": 0.1},
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(
                storage_path=storage, verbose=0, callbacks=[WandbLoggerCallback()]
            ),
        ).fit()


@pytest.mark.timeout(180)
async def test_logging_never_blocks_the_event_loop(storage: str, wandb_dir: Path) -> None:
    from blockbuster import blockbuster_ctx

    tuner = tune.Tuner(
        _train,
        param_space={"lr": 0.1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            callbacks=[WandbLoggerCallback(project="p")],
        ),
    )
    with blockbuster_ctx():  # raises on blocking calls made from the loop's thread
        results = await tuner.fit()
    assert not results.errors
    assert len(_offline_runs(wandb_dir)) == 1
