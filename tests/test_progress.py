"""Progress output at verbosity 0, 1 and 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune.storage._layout import ERROR_FILE


def _fn(config: dict[str, Any]) -> None:
    if config["x"] == 3:
        raise ValueError("three")
    tune.report({"loss": config["x"] * 1.5})


def _fit(storage: str, verbose: int | None) -> None:
    tune.Tuner(
        _fn,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=verbose),
    ).fit()


def test_verbose_0_prints_nothing(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(storage, 0)
    assert capsys.readouterr().out == ""


def test_default_prints_a_summary_and_a_table(
    storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(storage, None)
    out = capsys.readouterr().out
    assert "3 trials: 1 ERROR, 2 TERMINATED" in out
    assert "best loss=1.5" in out
    assert "Trials" in out and "TERMINATED" in out
    assert "completed" not in out  # per-trial lines only at verbose=2
    # A failed trial is visible by default: its exception and where the details are.
    (line,) = [line for line in out.splitlines() if "errored" in line]
    assert "builtins.ValueError: three" in line
    error_file = line.split("Error file: ")[1].strip()
    assert error_file.endswith(ERROR_FILE) and "ValueError: three" in Path(error_file).read_text()


def test_verbose_2_adds_a_line_per_trial(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(storage, 2)
    out = capsys.readouterr().out
    assert out.count("completed (returned)") == 2
    assert "errored: builtins.ValueError: three" in out


def _always_fails(config: dict[str, Any]) -> None:
    raise KeyError("[bracketed] message")


def test_a_trial_stopped_while_failing_is_shown_as_failed(
    storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tune.Tuner(
        _always_fails,
        tune_config=tune.TuneConfig(backend="local", time_budget_s=1.5),
        run_config=tune.RunConfig(
            storage_path=storage, failure_config=tune.FailureConfig(max_failures=-1)
        ),
    ).fit()
    out = capsys.readouterr().out
    assert "ended (time_budget) while failing: builtins.KeyError: '[bracketed] message'" in out
    assert "Retrying" not in out  # retries only at verbose=2
