"""The execution seam: the ``Runner`` protocol and the data its calls exchange.

Everything the controller says to a runner and hears back is defined here, as data: a
:class:`LaunchRequest` (with an explicit :class:`LaunchMode`) and a :class:`TrainBudget`
go in; a :class:`LaunchOutcome`, :class:`TrainOutcome` or :class:`SaveOutcome` (with an
:class:`ErrorInfo` for a user failure) come back. The runtime that answers (the trainable
host's worker thread, greenlets, Ray actors) sits behind :class:`Runner`; this module
imports none of it, so the controller's pure core (which imports data only from the
execution layer) loads no thread, greenlet or Ray machinery. A test talks to the same
seam with a scripted runner.
"""

from __future__ import annotations

import enum
import pickle
import sys
import traceback as _traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from atune.execution.placement_groups import PlacementGroupFactory

if TYPE_CHECKING:
    from atune.trainable._session import TrialInfo

__all__ = [
    "ErrorInfo",
    "LaunchMode",
    "LaunchOutcome",
    "LaunchRequest",
    "Runner",
    "SaveOutcome",
    "TrainBudget",
    "TrainOutcome",
    "format_exception",
]


def format_exception(exc: BaseException) -> str:
    """The full formatted traceback of ``exc``."""
    return "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))


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


class LaunchMode(enum.Enum):
    """How a launch gets its trainable instance.

    Attributes:
        NEW: Construct the trainable (``setup``) in a runner that serves no trial yet.
        REUSE: Switch the runner's instance to the new trial (``reset_config``), an idle
            runner taken from the reuse cache (actor reuse). ``declined`` when
            ``reset_config`` returns False.
        QUEUED: As ``REUSE``, but sent while the runner still serves another trial
            (pipelining): the runner takes it only once that trial has ended there (its
            function returned, or a result ended it); otherwise it answers ``busy`` and
            touches nothing.
    """

    NEW = "new"
    REUSE = "reuse"
    QUEUED = "queued"

    @property
    def reuses(self) -> bool:
        """Whether the launch resets an existing instance instead of constructing one."""
        return self is not LaunchMode.NEW


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One launch of a trial on a runner: what to run and how to get the instance.

    Attributes:
        mode: New instance, reused instance, or queued behind a running trial.
        config: The trial's hyperparameters.
        info: The trial's identity and directories, as the trainable sees them.
        checkpoint: A checkpoint directory to restore after set-up (None: none).
        budget: Train in the same call within this budget (None: only set up).
    """

    mode: LaunchMode
    config: dict[str, Any]
    info: TrialInfo
    checkpoint: str | None = None
    budget: TrainBudget | None = None

    def queued_as(self, mode: LaunchMode) -> LaunchRequest:
        """The same launch in another mode (a queued launch retried as a plain reuse)."""
        return LaunchRequest(mode, self.config, self.info, self.checkpoint, self.budget)


class Runner(Protocol):
    """One trial's runner: the controller's side of the execution seam.

    A runner's methods return user failures as :class:`ErrorInfo` values inside their
    outcomes; they raise only when the runner itself is lost
    (:class:`~atune.errors.WorkerDiedError`).

    A runner runs ``launch``, ``train``, ``save`` and ``stop`` one at a time, in the order
    they were submitted, and a call is submitted by the time its coroutine first suspends
    (``drain`` and ``wait_started`` answer beside a running call). Pipelining relies on
    this to queue a launch right behind a trial's call
    (:mod:`atune._controller._pipelining`).
    """

    resources: PlacementGroupFactory

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Set up the trainable as ``request.mode`` says, restore, train within the budget."""
        ...

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        """Run iterations within ``budget``."""
        ...

    async def save(self, index: int) -> SaveOutcome:
        """Commit checkpoint number ``index``."""
        ...

    async def stop(self) -> ErrorInfo | None:
        """Clean up and release the runner."""
        ...

    async def drain(self) -> list[dict[str, Any]]:
        """Results of the ``train`` call in progress so far (it may never return)."""
        ...

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        """While a launch call runs: whether it reused the runner once ``trial_id`` got
        past its set-up (waiting up to ``timeout`` s for that), None if it has not."""
        ...

    async def kill(self) -> None:
        """Tear the runner down at once, without cleanup."""
        ...
