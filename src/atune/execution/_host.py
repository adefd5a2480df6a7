"""``TrainableHost``: one trainable instance behind a runner, shared by every backend.

A host owns one ``Trainable`` (a class trainable, or a function wrapped by
``wrap_function``). It is synchronous: its methods run user code in the calling thread,
and each backend is a thin adapter that decides which thread that is. The Ray actor
(:mod:`atune.execution._ray`) calls them from its one default thread; the in-process
runner (:mod:`atune.execution._local`) submits them to a daemon thread of its own and
awaits them from the event loop. Either way all user code of a trainable runs in one
thread, which libraries that care about thread identity expect. Only :meth:`drain`,
:meth:`split` and :meth:`wait_started` may be called from another thread while a call runs.

Its methods never raise for user errors: failures come back as :class:`ErrorInfo` inside
the outcome, together with any results produced before the failure, so nothing reported
is lost. One conformance suite tests both backends.

Batching: :meth:`train` may run several iterations in one call (``TrainBudget``), which
saves a round trip per result when no driver-side decision needs each result. The batch
ends early on a result that needs attention: ``done``, a checkpoint, a stop criterion that
matches (evaluated here, so a stop still lands exactly at that report), or a checkpoint
frequency boundary. A batch is bounded by bytes too (``TrainBudget.max_bytes``, from the
size of its first result). While user code blocks between reports, the face that awaits a
call hands back the results so far on a timer and the next ``train`` continues the call
(see :mod:`atune.execution._delivery`), so a process that dies loses no accepted result.

"""

from __future__ import annotations

import dataclasses
import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from atune.errors import CheckpointCorruptError
from atune.execution._delivery import Delivery
from atune.execution._protocol import (
    ErrorInfo,
    LaunchMode,
    LaunchOutcome,
    LaunchRequest,
    SaveOutcome,
    TrainBudget,
    TrainOutcome,
)
from atune.stopper import dict_criteria_met, flatten_for_criteria
from atune.storage._remote import fetch_checkpoint, localize_trial_dir, upload_checkpoint
from atune.trainable._function import TrainableReturned
from atune.trainable._session import TrialInfo
from atune.trainable._trainable import (
    Trainable,
    commit_checkpoint_dir,
    new_staging_dir,
)

__all__ = ["TrainableHost"]


class TrainableHost:
    """Synchronous control of one trainable instance (see the module docstring).

    Args:
        trainable_cls: A ``Trainable`` subclass (functions are wrapped beforehand).
        on_launch: Called with the trial's info in the user thread at the start of every
            start or reset, before user code runs.
        on_started: Called in the user thread with ``(trial_id, reused)`` once a launch got
            past its set-up (see :meth:`wait_started`); the in-process runner wakes its
            event-loop waiters with it.
    """

    def __init__(
        self,
        trainable_cls: type[Trainable],
        *,
        on_launch: Callable[[TrialInfo], None] | None = None,
        on_started: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._cls = trainable_cls
        self._on_launch = on_launch
        self._on_started = on_started
        self.delivery = Delivery()
        self._trainable: Trainable | None = None
        # The current trial's last batch ended on a result that ends it for the driver too
        # (``done``, a stop criterion) and that asks for no checkpoint. A queued launch may
        # take the instance only then, or once the trial's function has returned.
        self._ended = False
        # The trial whose launch got past ``setup``/``reset`` and restore, and whether it
        # reused the instance; read by :meth:`wait_started` from another thread.
        self._started: tuple[str, bool] | None = None
        self._started_changed = threading.Condition()

    # ------------------------------------------------------------------ lifecycle
    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Set up the trainable for ``request``'s trial, restore, then train.

        ``LaunchMode.NEW`` constructs the trainable (``setup``); ``REUSE`` switches the
        instance to the new trial (``reset_config``; ``declined`` when it returns False, an
        exception comes back as ``error``; the caller then starts a fresh runner either
        way); ``QUEUED`` resets only if the current trial has ended here, and otherwise
        answers ``busy`` without touching anything. With a budget, the first ``train``
        runs in the same call, which saves a round trip per trial.
        """
        mode, info, checkpoint_path = request.mode, request.info, request.checkpoint
        # A split call's remainder belongs to the trial before: it collects it first.
        if mode is LaunchMode.QUEUED and (not self.current_ended() or self.delivery.undelivered):
            return LaunchOutcome(busy=True)
        self.delivery.forget()  # drain() reports only the results of the call in progress
        self._ended = False
        self._set_started(None)
        try:
            if info.storage is not None:  # remote storage: work in this node's scratch
                info = dataclasses.replace(
                    info, trial_dir=localize_trial_dir(info.storage, info.trial_dir)
                )
                if checkpoint_path is not None:
                    checkpoint_path = fetch_checkpoint(info.storage, checkpoint_path)
            if info.trial_dir:
                os.makedirs(info.trial_dir, exist_ok=True)
            if self._on_launch is not None:
                self._on_launch(info)
            if not mode.reuses:
                self._trainable = self._cls(request.config, trial_info=info)
            else:
                assert self._trainable is not None, "a reuse before any start"
                if not self._trainable.reset(request.config, info):
                    return LaunchOutcome(declined=True)
        except BaseException as exc:
            return LaunchOutcome(error=ErrorInfo.from_exception(exc))
        if checkpoint_path is not None:
            assert self._trainable is not None
            try:
                self._trainable.restore(checkpoint_path)
            except BaseException as exc:
                corrupt = isinstance(exc, CheckpointCorruptError) or not os.path.isdir(
                    checkpoint_path
                )
                return LaunchOutcome(
                    error=ErrorInfo.from_exception(exc),
                    restore_failed=True,
                    checkpoint_corrupt=corrupt,
                )
        self._set_started((info.trial_id, mode.reuses))
        budget = request.budget
        return LaunchOutcome(trained=None if budget is None else self.train(budget))

    def _set_started(self, started: tuple[str, bool] | None) -> None:
        with self._started_changed:
            self._started = started
            self._started_changed.notify_all()
        if started is not None and self._on_started is not None:
            self._on_started(*started)

    def started_as(self, trial_id: str) -> bool | None:
        """Whether ``trial_id``'s launch reused the instance, once it got past its set-up
        (None before that, or when another trial holds the instance); any thread."""
        started = self._started
        return started[1] if started is not None and started[0] == trial_id else None

    def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        """Wait up to ``timeout`` s for ``trial_id``'s launch to get past its set-up.

        Any thread may call it while the launch call runs. Returns whether the launch
        reused the instance once the trainable is constructed (or reset) and restored,
        None if it is not (yet): the launch is queued behind another trial, still in
        ``setup``, or failed there.
        """
        with self._started_changed:
            self._started_changed.wait_for(lambda: self.started_as(trial_id) is not None, timeout)
            return self.started_as(trial_id)

    def current_ended(self) -> bool:
        """Whether the current trial has ended here (a queued launch may take over)."""
        trainable = self._trainable
        return trainable is not None and (trainable.finished or self._ended)

    @property
    def current_trial(self) -> str:
        """The trial whose launch last got past its set-up ("" before any)."""
        started = self._started
        return started[0] if started is not None else ""

    def stop(self) -> ErrorInfo | None:
        """Stop the trainable (``cleanup``)."""
        self.delivery.forget()
        trainable, self._trainable = self._trainable, None
        if trainable is None:
            return None
        try:
            trainable.stop()
        except BaseException as exc:
            return ErrorInfo.from_exception(exc)
        return None

    def drain(self) -> list[dict[str, Any]]:
        """The results of the ``train`` call in progress so far (any thread may call it).

        Used before abandoning a runner whose call does not return (a ``step()`` that
        hangs past the time budget), so that results it already produced are not lost.
        """
        return self.delivery.drain()

    def interrupt(self) -> None:
        """Ask the trainable to stop at its next report boundary (any thread; a deadline)."""
        if self._trainable is not None:
            self._trainable.interrupt()

    # ------------------------------------------------------------------- training
    def split(self, trial_id: str) -> list[dict[str, Any]]:
        """The results so far of ``trial_id``'s running train call, which then ends at its
        next result (any thread may call it; see :mod:`atune.execution._delivery`)."""
        return self.delivery.split_now(trial_id)

    def train(self, budget: TrainBudget) -> TrainOutcome:
        """Run iterations within ``budget``; see the module docstring."""
        trainable = self._trainable
        assert trainable is not None, "train() before start()"
        delivery = self.delivery
        delivery.begin(self.current_trial)  # seen by drain() and a face's timer
        deadline = time.monotonic() + budget.max_seconds
        self._ended = False
        criteria = budget.stop_criteria or {}
        freq = budget.checkpoint_frequency
        max_results = budget.max_results
        measure = budget.max_bytes > 0 and max_results > 1
        while True:
            try:
                result = trainable.train()
            except TrainableReturned:
                return delivery.finish(returned=True)
            except BaseException as exc:
                return delivery.finish(error=ErrorInfo.from_exception(exc))
            cut = delivery.add(result)
            if measure:  # once per call: bound the count by the first result's size
                measure = False
                max_results = _bounded_count(result, budget)
            try:
                stop = dict_criteria_met(criteria, flatten_for_criteria(criteria, result))
            except TypeError as exc:  # a reported value the criterion cannot compare with
                return delivery.finish(error=ErrorInfo.from_exception(exc))
            ends = bool(stop or result.get("done"))
            saves = bool(
                result.get("should_checkpoint")
                or (freq and result.get("training_iteration", 0) % freq == 0)
            )
            self._ended = ends and not saves
            full = cut or delivery.count() >= max_results or time.monotonic() >= deadline
            if ends or saves or full:
                return delivery.finish()

    def save(self, index: int) -> SaveOutcome:
        """Save checkpoint number ``index`` into the trial dir, committed atomically."""
        trainable = self._trainable
        assert trainable is not None, "save() before start()"
        try:
            trial_dir = trainable.logdir
            staged = new_staging_dir(trial_dir, index)
            trainable.save(staged)
            committed = commit_checkpoint_dir(staged, trial_dir, index)
            upload_checkpoint(trainable._info.storage, committed)
            name = os.path.basename(committed)
        except BaseException as exc:
            return SaveOutcome(error=ErrorInfo.from_exception(exc))
        last = trainable._last_result or {}
        return SaveOutcome(
            dir_name=name, training_iteration=trainable.iteration, metrics=dict(last)
        )


def _bounded_count(result: dict[str, Any], budget: TrainBudget) -> int:
    """``max_results``, lowered so that results the size of ``result`` fit ``max_bytes``."""
    try:
        size = len(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # the local backend never pickles results: no bound then
        return budget.max_results
    return max(1, min(budget.max_results, budget.max_bytes // max(size, 1)))
