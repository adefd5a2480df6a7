"""Nothing in ``await tuner.fit()`` blocks the event loop (checked by blockbuster).

blockbuster patches blocking functions (file I/O, ``time.sleep``, ``os.stat``, ...) to
raise when called from the event loop's thread while the loop runs; calls made from
worker threads are allowed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

import atune as tune


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as bb:
        yield bb


def _trainable(config: dict[str, Any]) -> None:
    for i in range(6):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"i": i}, f)
            tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))
    if config["x"] == 2:
        raise ValueError("fails after its reports")


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
async def test_fit_never_blocks_the_loop(
    storage: str, backend: str, request: pytest.FixtureRequest
) -> None:
    tuner = tune.Tuner(
        _trainable,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(backend=backend),  # type: ignore[arg-type]
        run_config=tune.RunConfig(
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    request.getfixturevalue("blockbuster")  # armed only around fit(), after construction
    results = await tuner.fit()
    assert results.num_errors == 1 and results.num_terminated == 2


def _curve(config: dict[str, Any], iteration: int) -> tuple[dict[str, Any], float] | None:
    return ({"loss": config["x"] / iteration}, 30.0) if iteration <= 12 else None


async def test_a_simulated_fit_never_blocks_the_loop(
    storage: str, request: pytest.FixtureRequest
) -> None:
    """The simulator's checkpoint writes and reads go to worker threads too."""
    from atune.schedulers import ASHAScheduler
    from atune.simulator import Simulator

    tuner = tune.Tuner(
        Simulator(_curve, workers=2),
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", scheduler=ASHAScheduler(max_t=12, reduction_factor=2)
        ),
        run_config=tune.RunConfig(
            storage_path=storage, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=4)
        ),
    )
    request.getfixturevalue("blockbuster")  # armed only around fit(), after construction
    results = await tuner.fit()
    assert results.num_errors == 0 and len(results) == 4
