"""``num_to_keep``'s rule on its own: rank, keep the best, always keep the latest and pins."""

from __future__ import annotations

import math

from atune._controller._retention import checkpoints_to_delete, rank_checkpoints
from atune._trial import CheckpointRecord


def _records(*scores: float | None) -> list[CheckpointRecord]:
    return [
        CheckpointRecord(
            dir_name=f"checkpoint_{i:06d}",
            training_iteration=i + 1,
            metrics={} if score is None else {"m": {"acc": score}},
        )
        for i, score in enumerate(scores)
    ]


def _names(records: list[CheckpointRecord]) -> list[str]:
    return [r.dir_name[-1] for r in records]


def test_without_an_attribute_the_newest_are_kept() -> None:
    records = _records(1, 2, 3, 4, 5)
    assert _names(checkpoints_to_delete(records, 2, None, "max")) == ["0", "1", "2"]


def test_by_score_the_best_are_kept_and_the_latest_always() -> None:
    records = _records(0.9, 0.1, 0.8, 0.2)  # the latest (0.2) is among the worst
    deleted = checkpoints_to_delete(records, 2, "m/acc", "max")
    assert _names(deleted) == ["1"]  # 0.9 and 0.8 are the best two; 0.2 is the latest
    assert _names(checkpoints_to_delete(records, 1, "m/acc", "min")) == ["0", "2"]


def test_a_missing_or_nan_score_ranks_worst() -> None:
    records = _records(None, math.nan, 0.5, 0.4)
    assert _names(rank_checkpoints(records, "m/acc", "max"))[:2] == ["2", "3"]
    assert _names(checkpoints_to_delete(records, 2, "m/acc", "max")) == ["0", "1"]


def test_pinned_checkpoints_stay_and_nothing_goes_under_the_limit() -> None:
    records = _records(1, 2, 3, 4)
    assert _names(checkpoints_to_delete(records, 1, None, "max", {"checkpoint_000000"})) == [
        "1",
        "2",
    ]
    assert checkpoints_to_delete(records, 4, None, "max") == []
    assert checkpoints_to_delete(records, None, None, "max") == []
