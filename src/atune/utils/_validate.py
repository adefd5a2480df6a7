"""``validate_save_restore``: check a class trainable's checkpoint round trip."""

from __future__ import annotations

import shutil
from typing import Any

from atune.trainable._trainable import Trainable

__all__ = ["validate_save_restore"]


def validate_save_restore(
    trainable_cls: type[Trainable], config: dict[str, Any] | None = None, num_gpus: int = 0
) -> bool:
    """Train three iterations, save, restore into a fresh instance, train two more.

    Ray Tune runs this on two Ray actors; atune runs both instances in this process (the
    round trip goes through a real checkpoint directory either way), so it needs no
    cluster and gives plain tracebacks.

    Args:
        trainable_cls: The ``Trainable`` subclass to check.
        config: Its config (default ``{}``).
        num_gpus: Accepted for compatibility; unused.

    Returns:
        True when the restored instance continues at iterations 4 and 5.

    Raises:
        AssertionError: A result lacks ``training_iteration``, or the restored instance
            does not continue where the first one stopped; the message says which.
    """
    config = dict(config or {})
    first = trainable_cls(config)
    for expected in (1, 2, 3):
        result = first.train()
        assert "training_iteration" in result, (
            f"{trainable_cls.__name__}.train() result has no training_iteration: {result!r}"
        )
        assert result["training_iteration"] == expected, (
            f"iteration {expected} reported training_iteration={result['training_iteration']}"
        )
    checkpoint = first.save()
    try:
        second = trainable_cls(config)
        second.restore(checkpoint)
        for expected in (4, 5):
            result = second.train()
            assert result.get("training_iteration") == expected, (
                f"after restoring a checkpoint taken at iteration 3, the fresh instance "
                f"reported training_iteration={result.get('training_iteration')!r}, "
                f"expected {expected}"
            )
        first.stop()
        second.stop()
    finally:
        shutil.rmtree(checkpoint.path, ignore_errors=True)
    return True
