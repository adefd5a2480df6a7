"""Compare schedulers in virtual time on a tabulated benchmark, and plot best-so-far.

A table of learning curves (generated here, deterministically: 384 configurations of a
synthetic network, 81 epochs each, 20 to 80 seconds an epoch) stands in for training. The
same random search runs under each scheduler in ``SCHEDULERS``, through the real atune
core, driver and schedulers, on a simulated cluster of ``workers`` slots; the curves answer
every trial, and a virtual clock jumps over the waits. Hours of simulated tuning take
seconds, and a rerun gives the same numbers.

The plot (``simulate_asha.png``, needs the ``plot`` extra: ``pip install "atune[plot]"``)
shows the best validation loss found so far against simulated hours. Add a scheduler
with one line in ``SCHEDULERS``. PBT mutates a trial's config as it exploits: its
mutations here are lists of the table's own values (a list mutation moves to a
neighbouring value or resamples one), so every config it explores has a curve in the
table.

Run it with ``python examples/simulate_asha.py``.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atune as tune
from atune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from atune.simulator import LearningCurves, Simulator

MAX_T = 81  # epochs in the table
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)  # the table's values of each key
WIDTHS = (32, 64, 128, 256)
DROPOUTS = (0.0, 0.1, 0.3, 0.5)
BATCHES = (32, 128, 512)

#: Name -> a new scheduler for one study (one line each; a scheduler is used once).
SCHEDULERS: dict[str, Callable[[], TrialScheduler]] = {
    "random search (FIFO)": FIFOScheduler,
    "ASHA": lambda: ASHAScheduler(max_t=MAX_T, grace_period=3, reduction_factor=3),
    "MedianStoppingRule": lambda: MedianStoppingRule(
        time_attr="training_iteration", grace_period=5, min_samples_required=4
    ),
    "HyperBand": lambda: HyperBandScheduler(max_t=MAX_T, reduction_factor=3),
    "PBT": lambda: PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=9,
        hyperparam_mutations={"lr": list(LRS), "dropout": list(DROPOUTS)},
        seed=0,
    ),
}


def benchmark_table(seed: int = 0) -> LearningCurves:
    """A synthetic but plausible table: lr x width x dropout x batch size, 81 epochs.

    Validation loss falls along a power law towards a floor set by the config (too small
    or too large a learning rate, too little capacity, too much dropout hurt), large
    learning rates converge fast but then diverge slowly (curves cross, which is what
    makes early stopping a gamble), and wider networks take longer per epoch.
    """
    rng = random.Random(seed)
    rows = []
    for lr in LRS:
        for width in WIDTHS:
            for dropout in DROPOUTS:
                for batch in BATCHES:
                    floor = (
                        0.08
                        + 0.06 * (math.log10(lr) + 2.5) ** 2
                        + 4.0 / width
                        + 0.25 * (dropout - 0.15) ** 2
                        + 0.02 * math.log2(batch / 32)
                        + rng.uniform(0, 0.04)
                    )
                    speed = 0.15 * (lr / 1e-3) ** 0.5 * (128 / batch) ** 0.3
                    drift = 0.004 * max(0.0, math.log10(lr / 1e-2))
                    seconds = 20.0 * (width / 64) ** 0.5 * (128 / batch) ** 0.25
                    for epoch in range(1, MAX_T + 1):
                        loss = floor + 2.3 * (1 + speed * epoch) ** -1.2 + drift * epoch
                        rows.append(
                            {
                                "lr": lr,
                                "width": width,
                                "dropout": dropout,
                                "batch": batch,
                                "training_iteration": epoch,
                                "time_this_iter_s": round(seconds, 3),
                                "val_loss": round(loss + rng.gauss(0, 0.01), 5),
                            }
                        )
    return LearningCurves.from_rows(rows, config_keys=["lr", "width", "dropout", "batch"])


class BestSoFar(tune.Callback):
    """Records ``(simulated hours, best val_loss so far)`` at every result."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.points: list[tuple[float, float]] = []

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        best = min(result["val_loss"], self.points[-1][1]) if self.points else result["val_loss"]
        self.points.append(((result["timestamp"] - self.epoch) / 3600, best))


def compare(
    num_samples: int = 100, workers: int = 8, storage: str | None = None
) -> dict[str, tuple[tune.ResultGrid, BestSoFar]]:
    """Run the same search under every scheduler; their results and best-so-far traces."""
    curves = benchmark_table()
    storage = storage or tempfile.mkdtemp(prefix="simulate-asha-")
    out = {}
    for name, scheduler in SCHEDULERS.items():
        simulator = Simulator(curves, workers=workers, seed=0)
        trace = BestSoFar(simulator.epoch)
        grid = tune.Tuner(
            simulator,
            param_space=curves.param_space(),
            tune_config=tune.TuneConfig(
                metric="val_loss", mode="min", num_samples=num_samples, scheduler=scheduler()
            ),
            run_config=tune.RunConfig(
                storage_path=storage, name=_slug(name), callbacks=[trace], verbose=0
            ),
        ).fit()
        out[name] = (grid, trace)
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def plot(results: dict[str, tuple[tune.ResultGrid, BestSoFar]], path: str | Path) -> None:
    """Best val_loss so far against simulated hours, one line per scheduler, to a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    for name, (_, trace) in results.items():
        hours = [h for h, _ in trace.points]
        best = [b for _, b in trace.points]
        ax.step(hours, best, where="post", label=name)
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("best val_loss so far")
    ax.set_ylim(top=min(0.6, ax.get_ylim()[1]))
    ax.set_title("Random search under each scheduler (simulated)")
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(
    num_samples: int = 100,
    workers: int = 8,
    out: str | Path = "simulate_asha.png",
    storage: str | None = None,
) -> Any:
    """Compare, print a summary, save the plot; returns the per-scheduler results."""
    results = compare(num_samples=num_samples, workers=workers, storage=storage)
    for name, (grid, trace) in results.items():
        epochs = sum(r.metrics["training_iteration"] for r in grid)
        hours, best = trace.points[-1]
        print(
            f"{name:>22}: best val_loss {best:.4f} in {hours:5.1f} simulated hours, "
            f"{epochs} epochs trained"
        )
    plot(results, out)
    print(f"plot: {out}")
    return results


if __name__ == "__main__":
    results = main()
