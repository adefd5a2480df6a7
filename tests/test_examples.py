"""The seed page's examples, ported by changing only the import, give Ray Tune's numbers."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def objective(x: float, a: float, b: float) -> float:
    return a * (x**0.5) + b


@pytest.fixture(autouse=True)
def _storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATUNE_STORAGE_PATH", str(tmp_path))


def _run(name: str) -> object:
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return namespace["results"]


@pytest.mark.ray
def test_function_api_with_intermediate_reports() -> None:
    results = _run("function_api_intermediate.py")
    (result,) = list(results)  # type: ignore[call-overload]
    assert result.error is None
    assert result.metrics["training_iteration"] == 20
    assert result.metrics["score"] == objective(19, 2, 4)
    assert len(result.metrics_dataframe) == 20


@pytest.mark.ray
def test_function_api_with_final_report() -> None:
    results = _run("function_api_final.py")
    (result,) = list(results)  # type: ignore[call-overload]
    assert result.metrics["training_iteration"] == 1
    assert result.metrics["score"] == objective(19, 2, 4)


@pytest.mark.ray
def test_function_api_returning_metrics() -> None:
    results = _run("function_api_return.py")
    (result,) = list(results)  # type: ignore[call-overload]
    assert result.metrics["training_iteration"] == 1
    assert result.metrics["score"] == objective(19, 2, 4)
    assert result.metrics["done"] is True


@pytest.mark.ray
def test_class_api_with_stop_after_20_iterations() -> None:
    results = _run("class_api.py")
    (result,) = list(results)  # type: ignore[call-overload]
    assert result.error is None
    assert result.metrics["training_iteration"] == 20
    assert result.metrics["score"] == objective(19, 2, 4)
    assert result.checkpoint is None  # checkpoint_at_end=False


@pytest.mark.ray
@pytest.mark.slow
def test_quickstart_finds_a_best_config(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    assert "main" in namespace
    out = capsys.readouterr().out
    assert "Ran 8 trials (0 errors)" in out
    assert "Best config: {" in out


@pytest.mark.slow
def test_the_demo_runs_its_trials_on_a_fresh_ray_and_warns_about_nothing(tmp_path: Path) -> None:
    """``make demo``'s script in a fresh process: every trial ends, and nothing but the
    progress output is printed (a deprecated Ray call once logged a warning per call)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ATUNE_STORAGE_PATH": str(tmp_path), "RAY_ADDRESS": ""}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "8 TERMINATED" in proc.stdout and "Best config" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert warnings == []


def test_simulate_asha_compares_schedulers_in_virtual_time(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    namespace = runpy.run_path(str(EXAMPLES / "simulate_asha.py"), run_name="simulate_asha")
    png = tmp_path / "simulate_asha.png"
    results = namespace["main"](num_samples=10, workers=4, out=png, storage=str(tmp_path / "first"))
    assert list(results) == list(namespace["SCHEDULERS"])
    assert png.read_bytes().startswith(b"\x89PNG")
    epochs = {
        name: sum(r.metrics["training_iteration"] for r in grid)
        for name, (grid, _) in results.items()
    }
    assert epochs["random search (FIFO)"] == 10 * namespace["MAX_T"]
    assert epochs["ASHA"] < epochs["random search (FIFO)"]
    for grid, trace in results.values():
        assert grid.num_errors == 0
        hours = [h for h, _ in trace.points]
        best = [b for _, b in trace.points]
        assert hours == sorted(hours) and best == sorted(best, reverse=True)
    again = namespace["compare"](num_samples=10, workers=4, storage=str(tmp_path / "again"))
    assert again["ASHA"][1].points == results["ASHA"][1].points  # deterministic
