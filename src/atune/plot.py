"""Plots of an experiment's results with matplotlib: ``pip install "atune[plot]"``.

Three views of a :class:`~atune.result.ResultGrid` (from ``fit()``,
:func:`atune.load_results` or ``Tuner.restore(...).get_results()``), in the spirit of
Optuna's ``optuna.visualization.matplotlib``:

* :func:`plot_learning_curves`: the metric of every trial against
  ``training_iteration`` (or ``time_total_s``, or any other reported column);
* :func:`plot_best_so_far`: the best value found so far against the experiment's wall
  time, with every reported value as a dot behind it;
* :func:`plot_parallel_coordinates`: one vertical axis per hyperparameter and one for the
  metric, one line per trial, coloured by the metric.

Each returns a new :class:`matplotlib.figure.Figure`: a notebook shows it when it is the
cell's value (once its figure display is on: ``%matplotlib inline``, or any import of
``matplotlib.pyplot``), ``figure.savefig("curves.png")`` writes it. Figures are created directly,
not through ``pyplot``, so no plotting window opens, pyplot's list of open figures does
not grow, and a figure is freed like any other object once it is no longer referenced.

``metric`` and ``mode`` default to the grid's (``TuneConfig.metric``/``mode``); nested
metrics are written ``"a/b"``. A grid of an experiment still running elsewhere plots the
results its journal knew of when it was read.

Importing this module without matplotlib raises :class:`ImportError` saying what to
install.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

try:
    import matplotlib
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'atune.plot needs matplotlib, which is not installed: pip install "atune[plot]"'
    ) from exc

from atune._flatten import flatten_dict
from atune.errors import ConfigError
from atune.result import Result, ResultGrid

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_best_so_far", "plot_learning_curves", "plot_parallel_coordinates"]

_LEGEND_LIMIT = 10
"""Learning curves get a legend (one entry per trial) up to this many trials."""


def plot_learning_curves(
    grid: ResultGrid,
    metric: str | None = None,
    *,
    x: str = "training_iteration",
    title: str | None = None,
) -> Figure:
    """Every trial's ``metric`` against ``x``, one line per trial.

    Each line is labelled with the trial id; the legend is shown for up to ten trials.
    Results lacking ``metric`` or ``x`` (or holding a non-number there) are left out of
    that trial's line, and trials with no such result draw no line.

    Args:
        grid: The results to plot.
        metric: The metric on the y axis; defaults to the grid's.
        x: The column on the x axis: ``"training_iteration"`` (default),
            ``"time_total_s"`` (the trial's own training time), or any reported number.
        title: The figure's title; defaults to ``"Learning curves"``.

    Returns:
        A figure with one axes, one line per trial that reported ``metric``.

    Raises:
        ValueError: No metric was given and the grid has none (a
            :class:`~atune.errors.ConfigError`).
    """
    metric = _metric(grid, metric)
    figure, axes = _new_figure()
    lines = 0
    for result in grid:
        points = [
            (float(row[x]), float(row[metric]))
            for row in _history(result)
            if _is_number(row.get(x)) and _is_number(row.get(metric))
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="." if len(points) < 50 else None, label=_trial_id(result))
            lines += 1
    axes.set_xlabel(x)
    axes.set_ylabel(metric)
    axes.set_title(title or "Learning curves")
    axes.grid(alpha=0.3)
    if 0 < lines <= _LEGEND_LIMIT:
        axes.legend(fontsize="small")
    return figure


def plot_best_so_far(
    grid: ResultGrid,
    metric: str | None = None,
    mode: str | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The best ``metric`` found so far against the experiment's wall-clock time.

    Every reported value of ``metric`` (all trials, every result) is a dot at the time it
    was reported; the line steps to each new best by ``mode``. The time axis is seconds
    since the first trial started. A result's wall time is rebuilt from its
    ``timestamp`` (whole seconds) and ``time_total_s``: within one run of a trial (until
    it is restored), it is that run's start plus ``time_total_s``; every result of the
    run narrows the start to a window of under a second (``timestamp`` is the whole
    second in which ``start + time_total_s`` fell), and the middle of that window is
    used. So a trial's results keep their order and spacing, and trials are placed to
    within half a second of each other, closer the longer they run. Results lacking
    either field are left out; NaN values are drawn but never the best.

    Args:
        grid: The results to plot.
        metric: The metric; defaults to the grid's.
        mode: ``"min"`` or ``"max"``; defaults to the grid's.
        title: The figure's title; defaults to ``"Best <metric> so far"``.

    Returns:
        A figure with one axes: the best-so-far line (its only line) over the dots.

    Raises:
        ValueError: No metric or mode was given and the grid has none, or ``mode`` is
            not ``"min"`` or ``"max"`` (a :class:`~atune.errors.ConfigError`).
    """
    metric = _metric(grid, metric)
    mode = _mode(grid, mode)
    points: list[tuple[float, float]] = []
    for result in grid:
        points.extend(_wall_times(_history(result), metric))
    points.sort(key=lambda point: point[0])
    figure, axes = _new_figure()
    if points:
        start = points[0][0]
        times = [t - start for t, _ in points]
        values = [v for _, v in points]
        axes.scatter(times, values, s=12, alpha=0.4, color="tab:gray", label="reported")
        best_times: list[float] = []
        best_values: list[float] = []
        best: float | None = None
        for t, v in zip(times, values, strict=True):
            if math.isnan(v):
                continue
            if best is None or (v > best if mode == "max" else v < best):
                best = v
            best_times.append(t)
            best_values.append(best)
        if best_times:
            axes.plot(
                best_times,
                best_values,
                drawstyle="steps-post",
                color="tab:blue",
                linewidth=2,
                label=f"best so far ({mode})",
            )
        axes.legend(fontsize="small")
    axes.set_xlabel("wall time since start (s)")
    axes.set_ylabel(metric)
    axes.set_title(title or f"Best {metric} so far")
    axes.grid(alpha=0.3)
    return figure


def plot_parallel_coordinates(
    grid: ResultGrid,
    metric: str | None = None,
    mode: str | None = None,
    *,
    params: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Configs against the metric: one vertical axis per parameter, one line per trial.

    Each trial that reported ``metric`` is a line through its value of every parameter
    and, on the last axis, its last value of ``metric``; the line's colour is that value
    (the colour bar beside the plot), the best trial by ``mode`` drawn on top. A
    parameter whose values are all numbers (booleans excepted) gets a linear axis from
    its smallest to its largest value; any other parameter (strings, booleans, ``None``,
    lists, mixed types) is categorical, with its distinct values evenly spaced in
    first-seen order. A trial without a parameter (a conditional search space) is drawn
    only across the axes it has.

    Args:
        grid: The results to plot.
        metric: The metric; defaults to the grid's.
        mode: ``"min"`` or ``"max"``; defaults to the grid's. It only decides which trial
            is drawn on top and marked best.
        params: The parameters to show, as config keys (nested as ``"a/b"``), in axis
            order; default: every key of every trial's config, in first-seen order.
        title: The figure's title; defaults to ``"Parallel coordinates of <metric>"``.

    Returns:
        A figure whose first axes holds one line per trial that reported ``metric``; its
        x tick labels name the parameters and then the metric. The second axes is the
        colour bar (absent when no trial reported ``metric``).

    Raises:
        ValueError: No metric or mode was given and the grid has none, ``mode`` is not
            ``"min"`` or ``"max"``, or a name in ``params`` is in no trial's config (a
            :class:`~atune.errors.ConfigError` naming it).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    metric = _metric(grid, metric)
    mode = _mode(grid, mode)
    trials: list[tuple[dict[str, Any], float]] = []
    seen: dict[str, None] = {}
    for result in grid:
        value = flatten_dict(result.metrics or {}, delimiter="/").get(metric)
        if not _is_number(value) or math.isnan(float(value)):
            continue
        config = flatten_dict(result.config or {}, delimiter="/")
        seen.update(dict.fromkeys(config))
        trials.append((config, float(value)))
    if params is None:
        names = list(seen)
    else:
        names = list(params)
        missing = [name for name in names if name not in seen and trials]
        if missing:
            raise ConfigError(
                f"params {missing} are in no trial's config; the configs have {list(seen)}",
                value=missing[0],
            )
    figure, axes = _new_figure(width=max(6.4, 1.6 * (len(names) + 1)))
    labels = [*names, metric]
    axes.set_xticks(range(len(labels)), labels)
    axes.set_xlim(-0.3, len(labels) - 0.7)
    axes.set_ylim(-0.08, 1.08)
    axes.set_yticks([])
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    axes.set_title(title or f"Parallel coordinates of {metric}")
    if not trials:
        return figure
    scales = [_Scale([config.get(name, _MISSING) for config, _ in trials]) for name in names]
    scales.append(_Scale([value for _, value in trials]))
    values = [value for _, value in trials]
    norm = Normalize(vmin=min(values), vmax=max(values))
    colormap = matplotlib.colormaps["viridis" if mode == "max" else "viridis_r"]
    best = (max if mode == "max" else min)(range(len(trials)), key=lambda i: values[i])
    for index, (config, value) in enumerate(trials):
        row = [config.get(name, _MISSING) for name in names] + [value]
        xs = [i for i, v in enumerate(row) if v is not _MISSING]
        ys = [scales[i].position(row[i]) for i in xs]
        axes.plot(
            xs,
            ys,
            color=colormap(norm(value)),
            linewidth=2.5 if index == best else 1.2,
            alpha=1.0 if index == best else 0.7,
            zorder=3 if index == best else 2,
            label="best" if index == best else None,
        )
    axes.vlines(range(len(labels)), 0, 1, color="black", linewidth=0.8, zorder=1)
    for i, scale in enumerate(scales):
        for position, text in scale.ticks():
            axes.text(i + 0.03, position, text, fontsize="x-small", va="center", zorder=4)
    mappable = ScalarMappable(norm=norm, cmap=colormap)
    figure.colorbar(mappable, ax=axes, label=metric, pad=0.02)
    axes.legend(loc="upper left", bbox_to_anchor=(0, -0.08), fontsize="small", frameon=False)
    return figure


# ------------------------------------------------------------------------------ helpers

_MISSING: Any = object()
"""A trial's config lacks the parameter."""


class _Scale:
    """Maps one axis's values to [0, 1]: linear for numbers, evenly spaced categories."""

    def __init__(self, values: list[Any]) -> None:
        present = [v for v in values if v is not _MISSING]
        self.numeric = bool(present) and all(_is_number(v) for v in present)
        if self.numeric:
            self.low = min(float(v) for v in present)
            self.high = max(float(v) for v in present)
            self.categories: dict[str, int] = {}
        else:
            self.categories = {}
            for v in present:
                self.categories.setdefault(_category(v), len(self.categories))

    def position(self, value: Any) -> float:
        if self.numeric:
            span = self.high - self.low
            return 0.5 if span == 0 else (float(value) - self.low) / span
        count = len(self.categories)
        index = self.categories[_category(value)]
        return 0.5 if count == 1 else index / (count - 1)

    def ticks(self) -> list[tuple[float, str]]:
        if self.numeric:
            if self.high == self.low:
                return [(0.5, f"{self.low:.4g}")]
            return [(0.0, f"{self.low:.4g}"), (1.0, f"{self.high:.4g}")]
        return [(self.position_of(name), name) for name in self.categories]

    def position_of(self, name: str) -> float:
        count = len(self.categories)
        return 0.5 if count == 1 else self.categories[name] / (count - 1)


def _category(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 20 else text[:19] + "…"


def _new_figure(width: float = 6.4) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 4.2), layout="constrained")
    return figure, figure.add_subplot()


def _metric(grid: ResultGrid, metric: str | None) -> str:
    metric = metric or grid.metric
    if not metric:
        raise ConfigError(
            "no metric given: pass metric= or set metric in the TuneConfig of the Tuner"
        )
    return metric


def _mode(grid: ResultGrid, mode: str | None) -> str:
    mode = mode or grid.mode
    if not mode:
        raise ConfigError("no mode given: pass mode= or set mode in the TuneConfig of the Tuner")
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", value=mode)
    return mode


def _history(result: Result) -> list[dict[str, Any]]:
    """Every result the trial reported, flattened with ``/``; NaN cells left out."""
    frame = result.metrics_dataframe
    if frame is None:
        return []
    return [
        {str(key): value for key, value in record.items() if not _is_nan(value)}
        for record in frame.to_dict("records")
    ]


def _wall_times(rows: list[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    """``(wall time, value)`` of each row reporting ``metric``; see plot_best_so_far."""
    usable = [
        row
        for row in rows
        if _is_number(row.get("timestamp")) and _is_number(row.get("time_total_s"))
    ]
    # One run of the trial ends where it was restored: iterations_since_restore starts
    # over at 1 or time_total_s goes back.
    runs: list[list[dict[str, Any]]] = []
    for row in usable:
        restarted = row.get("iterations_since_restore") == 1 or (
            runs and float(row["time_total_s"]) < float(runs[-1][-1]["time_total_s"])
        )
        if not runs or restarted:
            runs.append([])
        runs[-1].append(row)
    points = []
    for run in runs:
        # timestamp = floor(start + time_total_s) for every row: each row bounds the start
        # to a one-second window; take the middle of what all rows of the run allow.
        low = max(float(row["timestamp"]) - float(row["time_total_s"]) for row in run)
        high = min(float(row["timestamp"]) + 1 - float(row["time_total_s"]) for row in run)
        start = (low + high) / 2 if high > low else low
        for row in run:
            value = row.get(metric)
            if _is_number(value):
                points.append((start + float(row["time_total_s"]), float(value)))
    return points


def _trial_id(result: Result) -> str:
    trial_id = (result.metrics or {}).get("trial_id")
    return trial_id if isinstance(trial_id, str) else Path(result.path).name


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
