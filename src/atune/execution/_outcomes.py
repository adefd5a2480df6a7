"""The data a runner's calls exchange: budgets in, outcomes out (no behaviour).

Shared by the host (``_host.py``), the timed delivery of batches (``_delivery.py``), both
backends and the controller's core, which imports data only from the execution layer.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import msgspec

from atune.trainable._function import format_exception

__all__ = ["ErrorInfo", "LaunchOutcome", "SaveOutcome", "TrainBudget", "TrainOutcome"]


class TrainBudget(msgspec.Struct, frozen=True, kw_only=True):
    """How much one ``train()`` call may do before returning.

    Attributes:
        max_results: Return after this many results.
        max_seconds: Return after this long, even if fewer results were produced.
        stop_criteria: Flattened ``{key: threshold}``; a result with any
            ``result[key] >= threshold`` ends the batch (Ray Tune's dict stopper).
        checkpoint_frequency: End the batch when ``training_iteration`` is a multiple.
        max_bytes: Bound the batch's size too (0: no bound). The size of a call's first
            result is measured once (pickled) and the count bounded from it, so small
            results pay nothing per result; a result that does not pickle sets no bound.
    """

    max_results: int = 1
    max_seconds: float = 0.0
    stop_criteria: dict[str, Any] | None = None
    checkpoint_frequency: int = 0
    max_bytes: int = 0


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A user exception, carried across processes.

    Attributes:
        type_name: ``module.QualName`` of the exception type.
        message: ``str(exc)``.
        traceback: The formatted traceback.
        payload: The pickled exception when it pickles, so the driver can rebuild the
            original type (never written to disk).
    """

    type_name: str
    message: str
    traceback: str
    payload: bytes | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture ``exc`` with its traceback."""
        # In a Ray worker use Ray's cloudpickle: a user class that Ray shipped by value then
        # maps back to the very same class in the driver (its class registry is shared).
        ray = sys.modules.get("ray")
        dumps = ray.cloudpickle.dumps if ray is not None else pickle.dumps
        try:
            payload: bytes | None = dumps(exc)
            pickle.loads(payload)  # type: ignore[arg-type]
        except Exception:
            payload = None
        exc_type = type(exc)
        return cls(
            type_name=f"{exc_type.__module__}.{exc_type.__qualname__}",
            message=str(exc),
            traceback=format_exception(exc),
            payload=payload,
        )


class TrainOutcome(msgspec.Struct, kw_only=True):
    """What one ``train()`` call produced: results first, then how it ended."""

    results: list[dict[str, Any]]
    returned: bool = False
    error: ErrorInfo | None = None


class LaunchOutcome(msgspec.Struct, kw_only=True):
    """How starting (or reusing) a runner for a trial went.

    Attributes:
        error: Constructing, resetting or restoring raised (user code).
        declined: ``reset_config`` returned False (reuse only).
        busy: a queued launch found the current trial still going; nothing was touched.
        trained: The first ``train`` outcome, when a budget was given.
        restore_failed: ``error`` was raised restoring the checkpoint (the trainable
            itself was constructed or reset).
        checkpoint_corrupt: ... because the checkpoint is damaged (gone, or atune's own
            files in it unreadable: :class:`~atune.errors.CheckpointCorruptError`), not
            because the user's ``load_checkpoint`` raised.
    """

    error: ErrorInfo | None = None
    declined: bool = False
    busy: bool = False
    trained: TrainOutcome | None = None
    restore_failed: bool = False
    checkpoint_corrupt: bool = False


class SaveOutcome(msgspec.Struct, kw_only=True):
    """A committed checkpoint (``dir_name``) or the error that prevented it."""

    dir_name: str | None = None
    training_iteration: int = 0
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    error: ErrorInfo | None = None
