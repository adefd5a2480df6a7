"""atune.plot: figures from a real (in-process) run, written as PNG files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")  # never a window, whatever the environment says

from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import atune as tune
from atune.errors import ConfigError
from atune.plot import plot_best_so_far, plot_learning_curves, plot_parallel_coordinates

ITERATIONS = 5
SAMPLES = 4


def _trainable(config: dict[str, Any]) -> None:
    for i in range(1, ITERATIONS + 1):
        time.sleep(0.02)
        penalty = 0.5 if config["optimizer"] == "sgd" else 0.0
        tune.report({"loss": config["lr"] * 10 / i + penalty + config["layers"] * 0.01})


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tune.ResultGrid:
    storage = tmp_path_factory.mktemp("plot-results")
    results = tune.Tuner(
        _trainable,
        param_space={
            "lr": tune.loguniform(1e-3, 1e-1),
            "optimizer": tune.choice(["adam", "sgd"]),
            "layers": tune.randint(1, 5),
        },
        tune_config=tune.TuneConfig(
            backend="local", metric="loss", mode="min", num_samples=SAMPLES
        ),
        run_config=tune.RunConfig(name="plots", storage_path=str(storage), verbose=0),
    ).fit()
    assert isinstance(results, tune.ResultGrid) and results.num_errors == 0
    return results


def _png(figure: Figure, path: Path) -> Path:
    figure.savefig(path)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_learning_curves_one_line_per_trial(grid: tune.ResultGrid, tmp_path: Path) -> None:
    figure = plot_learning_curves(grid)
    _png(figure, tmp_path / "curves.png")
    (axes,) = figure.axes
    assert axes.get_xlabel() == "training_iteration"
    assert axes.get_ylabel() == "loss"
    assert len(axes.lines) == SAMPLES
    labels = {line.get_label() for line in axes.lines}
    assert labels == {result.metrics["trial_id"] for result in grid}
    for line, result in zip(axes.lines, grid, strict=True):
        assert list(line.get_xdata()) == list(range(1, ITERATIONS + 1))
        assert list(line.get_ydata()) == list(result.metrics_dataframe["loss"])
    legend = axes.get_legend()
    assert legend is not None and len(legend.get_texts()) == SAMPLES


def test_learning_curves_against_training_time(grid: tune.ResultGrid, tmp_path: Path) -> None:
    figure = plot_learning_curves(grid, "loss", x="time_total_s", title="by time")
    _png(figure, tmp_path / "curves-time.png")
    (axes,) = figure.axes
    assert axes.get_xlabel() == "time_total_s" and axes.get_title() == "by time"
    for line in axes.lines:
        xs = list(line.get_xdata())
        assert len(xs) == ITERATIONS and xs == sorted(xs) and xs[0] > 0


def test_best_so_far_is_a_monotone_step_line_over_every_result(
    grid: tune.ResultGrid, tmp_path: Path
) -> None:
    figure = plot_best_so_far(grid)
    _png(figure, tmp_path / "best.png")
    (axes,) = figure.axes
    assert axes.get_xlabel() == "wall time since start (s)"
    assert axes.get_ylabel() == "loss"
    (line,) = axes.lines
    assert line.get_drawstyle() == "steps-post"
    times, best = list(line.get_xdata()), list(line.get_ydata())
    assert times == sorted(times) and times[0] == 0.0
    assert best == sorted(best, reverse=True)  # mode "min": never gets worse
    assert best[-1] == grid.get_best_result(scope="all").metrics_dataframe["loss"].min()
    (dots,) = [c for c in axes.collections if isinstance(c, PathCollection)]
    assert len(dots.get_offsets()) == SAMPLES * ITERATIONS


def test_best_so_far_with_mode_max(grid: tune.ResultGrid) -> None:
    (line,) = plot_best_so_far(grid, mode="max").axes[0].lines
    best = list(line.get_ydata())
    assert best == sorted(best)
    assert best[-1] == max(max(r.metrics_dataframe["loss"]) for r in grid)


def test_parallel_coordinates_axes_lines_and_colour_bar(
    grid: tune.ResultGrid, tmp_path: Path
) -> None:
    figure = plot_parallel_coordinates(grid)
    _png(figure, tmp_path / "parallel.png")
    axes, colour_bar = figure.axes
    names = [label.get_text() for label in axes.get_xticklabels()]
    assert names == ["lr", "optimizer", "layers", "loss"]
    assert len(axes.lines) == SAMPLES
    assert colour_bar.get_ylabel() == "loss"
    texts = {text.get_text() for text in axes.texts}
    # Categorical axis: every value the trials took is a tick; numeric axes: min and max.
    assert {str(r.config["optimizer"]) for r in grid} <= texts
    assert f"{min(r.config['layers'] for r in grid):.4g}" in texts
    # Every line runs through all four axes, within the plot's [0, 1] range.
    for line in axes.lines:
        assert list(line.get_xdata()) == [0, 1, 2, 3]
        assert all(0.0 <= y <= 1.0 for y in line.get_ydata())
    # The best trial (lowest loss) is labelled and drawn thickest.
    (best,) = [line for line in axes.lines if line.get_label() == "best"]
    assert best.get_linewidth() == max(line.get_linewidth() for line in axes.lines)
    assert best.get_ydata()[-1] == 0.0  # lowest loss sits at the bottom of the metric axis


def test_parallel_coordinates_of_chosen_params(grid: tune.ResultGrid) -> None:
    axes = plot_parallel_coordinates(grid, params=["optimizer", "lr"]).axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["optimizer", "lr", "loss"]
    with pytest.raises(ConfigError, match="'momentum'"):
        plot_parallel_coordinates(grid, params=["momentum"])


def test_a_grid_loaded_from_its_path_plots_the_same(grid: tune.ResultGrid) -> None:
    loaded = tune.load_results(grid.experiment_path)
    assert (loaded.metric, loaded.mode) == ("loss", "min")
    fresh = plot_learning_curves(loaded).axes[0].lines
    original = plot_learning_curves(grid).axes[0].lines
    assert [list(line.get_ydata()) for line in fresh] == [
        list(line.get_ydata()) for line in original
    ]


def test_missing_metric_or_mode_is_a_clear_error(grid: tune.ResultGrid) -> None:
    bare = tune.ResultGrid(list(grid), experiment_path=grid.experiment_path)
    with pytest.raises(ConfigError, match="no metric given"):
        plot_learning_curves(bare)
    with pytest.raises(ConfigError, match="no mode given"):
        plot_best_so_far(bare, "loss")
    with pytest.raises(ConfigError, match="'best'"):
        plot_parallel_coordinates(grid, mode="best")


def test_a_metric_nobody_reported_gives_an_empty_figure(grid: tune.ResultGrid) -> None:
    assert len(plot_learning_curves(grid, "accuracy").axes[0].lines) == 0
    assert len(plot_best_so_far(grid, "accuracy").axes[0].lines) == 0
    assert len(plot_parallel_coordinates(grid, "accuracy").axes) == 1  # no colour bar


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_plots_leave_pyplot_alone(grid: tune.ResultGrid, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    result = _run_python(
        "import sys, atune\n"
        "from atune.plot import plot_best_so_far\n"
        f"plot_best_so_far(atune.load_results({grid.experiment_path!r})).savefig({str(out)!r})\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["no", "pyplot"]
    assert out.stat().st_size > 0


def test_without_matplotlib_the_import_error_says_what_to_install() -> None:
    result = _run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "import atune.plot\n"
    )
    assert result.returncode != 0
    assert (
        'ImportError: atune.plot needs matplotlib, which is not installed: pip install "atune[plot]"'
        in result.stderr
    )
