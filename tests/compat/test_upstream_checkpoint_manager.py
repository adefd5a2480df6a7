"""Ray Tune's ``tests/test_checkpoint_manager.py``: which checkpoints a trial keeps.

Upstream drives the internal ``CheckpointManager``; here a class trainable reports the
score ``i`` and checkpoints every iteration under ``CheckpointConfig``.
"""

from __future__ import annotations

import random
from typing import Any

import atune as tune


class _Scored(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.scores = config["scores"]

    def step(self) -> dict[str, Any]:
        score = self.scores[self.iteration]
        result: dict[str, Any] = {"done": self.iteration + 1 == len(self.scores)}
        if score is not None:
            result["i"] = score
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"i": self.scores[self.iteration - 1]}


def _fit(storage: str, scores: list[Any], keep: int) -> Any:
    [result] = tune.Tuner(
        _Scored,
        param_space={"scores": scores},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=keep,
                checkpoint_score_attribute="i",
                checkpoint_frequency=1,
                checkpoint_at_end=False,
            ),
        ),
    ).fit()
    return result


def _scores(result: Any) -> list[Any]:
    return [metrics.get("i") for _, metrics in result.best_checkpoints]


def test_increasing_scores_keep_the_last_ones(storage: str) -> None:
    result = _fit(storage, [0, 1, 2], keep=2)
    assert sorted(_scores(result)) == [1, 2]


def test_decreasing_scores_keep_the_best_and_the_latest(storage: str) -> None:
    result = _fit(storage, [3, 2, 1, 0], keep=2)
    kept = _scores(result)
    assert 3 in kept and 2 in kept
    assert result.checkpoint is not None  # the newest stays resumable


def test_best_checkpoints_are_the_top_scores(storage: str) -> None:
    scores = list(range(16))
    random.Random(0).shuffle(scores)
    result = _fit(storage, scores, keep=4)
    assert sorted(s for s in _scores(result) if s is not None)[-4:] == [12, 13, 14, 15]


def test_checkpoint_without_the_score_attribute_is_still_the_newest(storage: str) -> None:
    result = _fit(storage, [None], keep=1)
    assert result.checkpoint is not None
    assert len(result.best_checkpoints) == 1
