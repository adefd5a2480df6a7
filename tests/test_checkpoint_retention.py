"""``CheckpointConfig(num_to_keep=...)`` applies to every checkpoint path, on both backends.

Function trainables commit a checkpoint with ``report(..., checkpoint=...)``; class
trainables through ``save()``. Either way only ``num_to_keep`` checkpoints stay on disk
and in ``Result.best_checkpoints`` (ranked by ``checkpoint_score_attribute`` when set), and
the latest is always kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint

# The score of each of the six reports: the best two are the 2nd and 4th reports.
SCORES = [1.0, 9.0, 2.0, 8.0, 3.0, 0.5]


def six_checkpoints(config: dict[str, Any]) -> None:
    for i, score in enumerate(SCORES, start=1):
        report_with_checkpoint(i, {"score": score})


class SixSaves(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.i = 0

    def step(self) -> dict[str, Any]:
        self.i += 1
        return {"score": SCORES[self.i - 1], "done": self.i == len(SCORES)}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"i": self.i}

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        assert isinstance(checkpoint, dict)
        self.i = checkpoint["i"]


def _fit(trainable: Any, storage: str, backend: str, **checkpointing: Any) -> tune.Result:
    grid = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(backend=backend),
        run_config=tune.RunConfig(
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, **checkpointing),
        ),
    ).fit()
    (result,) = list(grid)
    assert result.error is None
    return result


def _on_disk(result: tune.Result) -> list[str]:
    return sorted(p.name for p in Path(result.path).iterdir() if p.name.startswith("checkpoint_"))


def _kept_iterations(result: tune.Result) -> list[int]:
    assert result.best_checkpoints is not None
    return sorted(int(metrics["training_iteration"]) for _, metrics in result.best_checkpoints)


def _state(checkpoint_dir: str) -> int:
    with open(os.path.join(checkpoint_dir, "state.json")) as f:
        return int(json.load(f)["i"])


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_function_checkpoints_beyond_num_to_keep_are_deleted(storage: str, backend: str) -> None:
    result = _fit(six_checkpoints, storage, backend)
    assert _on_disk(result) == ["checkpoint_000004", "checkpoint_000005"]
    assert _kept_iterations(result) == [5, 6]
    assert result.checkpoint is not None
    assert _state(result.checkpoint.path) == 6  # the latest is kept


def test_function_checkpoints_kept_by_score_and_the_latest_too(storage: str) -> None:
    result = _fit(
        six_checkpoints,
        storage,
        "local",
        checkpoint_score_attribute="score",
        checkpoint_score_order="max",
    )
    # The two best (iterations 2 and 4) plus the latest (6), which is never deleted.
    assert _kept_iterations(result) == [2, 4, 6]
    assert _on_disk(result) == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000005"]


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_class_checkpoints_beyond_num_to_keep_are_deleted(storage: str, backend: str) -> None:
    result = _fit(SixSaves, storage, backend, checkpoint_frequency=1)
    assert len(_on_disk(result)) == 2
    assert _kept_iterations(result) == [5, 6]


def test_the_journal_records_each_deletion(storage: str) -> None:
    result = _fit(six_checkpoints, storage, "local")
    journal = Path(result.path).parent / "events.jsonl"
    deleted = [
        json.loads(line)["dir_name"]
        for line in journal.read_text().splitlines()
        if '"checkpoint_deleted"' in line
    ]
    assert sorted(deleted) == [f"checkpoint_{i:06d}" for i in range(4)]
