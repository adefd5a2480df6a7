"""Quickstart: a small real tuning run on a local Ray.

Eight trials sample a search space and run in parallel, each in its own Ray actor,
reporting a loss per step; the best config is printed at the end. Run it with
``make demo`` (or ``python examples/quickstart.py`` inside the venv).

This is a Ray Tune program: only the import differs (``import atune as tune``).
"""

import time

import atune as tune


def evaluate(step: int, width: float, height: float) -> float:
    """A toy loss: falls with more steps and more width, rises with height."""
    return (0.1 + width * step / 100) ** (-1) + height * 0.1


def train_fn(config: dict) -> None:
    for step in range(10):
        loss = evaluate(step, config["width"], config["height"])
        tune.report({"iterations": step, "mean_loss": loss})
        time.sleep(0.05)  # stands in for real work


def main() -> None:
    tuner = tune.Tuner(
        train_fn,
        param_space={
            "width": tune.uniform(0, 20),
            "height": tune.uniform(-100, 100),
            "activation": tune.choice(["relu", "tanh"]),
        },
        tune_config=tune.TuneConfig(metric="mean_loss", mode="min", num_samples=8),
        run_config=tune.RunConfig(name="quickstart"),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print(f"Ran {len(results)} trials ({results.num_errors} errors) in {results.experiment_path}")
    print(f"Best config: {best.config}")
    print(f"Best mean_loss: {best.metrics['mean_loss']:.4f}")


if __name__ == "__main__":
    main()
