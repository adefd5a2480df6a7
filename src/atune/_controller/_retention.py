"""Which checkpoints a trial keeps under ``CheckpointConfig(num_to_keep=...)``.

The rule, for function and class trainables and on both backends: rank by
``checkpoint_score_attribute`` in ``checkpoint_score_order`` (a missing or NaN score ranks
worst; without an attribute, newer ranks first), keep the best ``num_to_keep``, and
always keep the latest (a trial resumes from it). A checkpoint pinned by an exploit stays
until the exploiting trial loaded it. The core turns each checkpoint to drop into a
``CheckpointDeleted`` event, and the files go only after the journal holds it.
"""

from __future__ import annotations

import math
from collections.abc import Container

from atune._flatten import flatten_dict
from atune._trial import CheckpointRecord

__all__ = ["checkpoints_to_delete", "rank_checkpoints"]


def rank_checkpoints(
    records: list[CheckpointRecord], attribute: str | None, order: str
) -> list[CheckpointRecord]:
    """Checkpoints best first: by ``attribute`` (missing or NaN ranks worst), else newest first."""
    if attribute is None:
        return list(reversed(records))

    def score(record: CheckpointRecord) -> float:
        value = flatten_dict(record.metrics).get(attribute)
        if not isinstance(value, (int, float)) or value != value:
            return -math.inf
        return float(value) if order == "max" else -float(value)

    # Stable sort: among equal scores the newer checkpoint ranks first.
    return sorted(reversed(records), key=score, reverse=True)


def checkpoints_to_delete(
    records: list[CheckpointRecord],
    keep: int | None,
    attribute: str | None,
    order: str,
    pinned: Container[str] = (),
) -> list[CheckpointRecord]:
    """The checkpoints of ``records`` (oldest first) beyond ``keep``, oldest first.

    ``pinned`` holds directory names that stay whatever their rank.
    """
    if keep is None or len(records) <= keep:
        return []
    kept = {id(c) for c in rank_checkpoints(records, attribute, order)[:keep]}
    kept.add(id(records[-1]))
    return [r for r in records if id(r) not in kept and r.dir_name not in pinned]
