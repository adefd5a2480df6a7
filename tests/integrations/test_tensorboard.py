"""``TBXLoggerCallback``: event files per trial, read back with TensorBoard's own reader."""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np
import pytest

import atune as tune

pytest.importorskip(
    "tensorboardX", reason='the tensorboard extra is absent: pip install "atune[tensorboard]"'
)
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard (the reader) is absent; the test extra installs it",
)

from atune.logger import TBXLoggerCallback  # noqa: E402


def _train(config: dict[str, Any]) -> None:
    for i in range(3):
        tune.report(
            {
                "loss": config["lr"] * (3 - i),
                "nested": {"acc": 0.5 + i / 10},
                "hist": [1.0, 2.0, float(i)],
                "nan": float("nan"),
                "name": "text is skipped",
            }
        )


def _read(trial_dir: str) -> Any:
    files = glob.glob(os.path.join(trial_dir, "events.out.tfevents.*"))
    assert len(files) == 1, files
    accumulator = event_accumulator.EventAccumulator(
        files[0], size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    accumulator.Reload()
    return accumulator


def test_each_trial_gets_event_files_that_tensorboard_reads_back(storage: str) -> None:
    results = tune.Tuner(
        _train,
        param_space={"lr": tune.grid_search([0.1, 0.2]), "opt": {"momentum": 0.9}},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage, name="tb", verbose=0, callbacks=[TBXLoggerCallback()]
        ),
    ).fit()

    assert not results.errors
    for result in results:
        lr = result.config["lr"]
        accumulator = _read(result.path)
        tags = accumulator.Tags()
        assert {"ray/tune/loss", "ray/tune/nested/acc"} <= set(tags["scalars"])
        assert not any(
            t.endswith(("/nan", "/name", "/training_iteration")) for t in tags["scalars"]
        )
        loss = [(e.step, e.value) for e in accumulator.Scalars("ray/tune/loss")]
        assert loss == [
            (1, pytest.approx(lr * 3)),
            (2, pytest.approx(lr * 2)),
            (3, pytest.approx(lr)),
        ]
        assert [e.step for e in accumulator.Histograms("ray/tune/hist")] == [1, 2, 3]
        # The config as HParams, written when the trial ended.
        hparams = accumulator.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in hparams
        start = hparams["_hparams_/session_start_info"]
        from tensorboard.plugins.hparams import plugin_data_pb2

        data = plugin_data_pb2.HParamsPluginData.FromString(start)
        assert data.session_start_info.hparams["lr"].number_value == pytest.approx(lr)
        assert data.session_start_info.hparams["opt/momentum"].number_value == pytest.approx(0.9)


def test_the_step_is_timesteps_total_when_reported(storage: str) -> None:
    def train(config: dict[str, Any]) -> None:
        for i in range(1, 3):
            tune.report({"reward": float(i), "timesteps_total": 100 * i, "arr": np.ones(2)})

    results = tune.Tuner(
        train,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[TBXLoggerCallback()]),
    ).fit()

    accumulator = _read(results[0].path)
    assert [(e.step, e.value) for e in accumulator.Scalars("ray/tune/reward")] == [
        (100, 1.0),
        (200, 2.0),
    ]


async def test_logging_never_blocks_the_event_loop(storage: str) -> None:
    from blockbuster import blockbuster_ctx

    tuner = tune.Tuner(
        _train,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[TBXLoggerCallback()]),
    )
    with blockbuster_ctx():  # raises on blocking calls made from the loop's thread
        results = await tuner.fit()
    assert not results.errors
    assert all(_read(r.path).Scalars("ray/tune/loss") for r in results)
