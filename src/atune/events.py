"""The typed events of an experiment: one vocabulary for the controller, the journal and users.

Every fact the controller learns or decides is one of the frozen, keyword-only, tagged
``msgspec`` structs below. The same structs are written, one JSON object per line, to the
experiment's journal (``events.jsonl``), so an experiment's history can be read back with
:func:`decode_event` and replayed.

Every event carries ``ts``: wall-clock seconds (``time.time()``) stamped by the driver when
the fact was observed. The controller's decisions never read a clock; events it derives
from another event copy that event's ``ts``.

Example::

    from atune.events import ResultReported, decode_event, encode_event

    line = encode_event(ResultReported(ts=0.0, trial_id="a", result={"loss": 1.0}))
    assert decode_event(line) == ResultReported(ts=0.0, trial_id="a", result={"loss": 1.0})

Adding a field to an event is a user-visible change and goes into the changelog; new fields
always have a default so older journals stay readable.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ActorFreed",
    "CallbackStateSaved",
    "CheckpointDamaged",
    "CheckpointDeleted",
    "CheckpointSaved",
    "Event",
    "ExperimentFinished",
    "ExperimentStarted",
    "ResultReported",
    "SchedulerStateSaved",
    "SearcherStateSaved",
    "StreamEvent",
    "SubscriberLagged",
    "TrialCompleted",
    "TrialCreated",
    "TrialErrored",
    "TrialExploited",
    "TrialPaused",
    "TrialResumed",
    "TrialStarted",
    "decode_event",
    "decode_stream_event",
    "encode_event",
]


class _EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ts: float
    """Wall-clock time (``time.time()``) at which the fact was observed."""


class ExperimentStarted(_EventBase, tag="experiment_started", frozen=True, kw_only=True):
    """``fit()`` began (or resumed) an experiment.

    Attributes:
        name: The experiment's name (``RunConfig.name``).
        path: The experiment directory.
        resumed: True when this run continues an earlier one restored from its journal.
    """

    name: str
    path: str
    resumed: bool = False


class TrialCreated(_EventBase, tag="trial_created", frozen=True, kw_only=True):
    """The searcher produced a new trial; it is PENDING until its runner starts.

    Attributes:
        trial_id: Unique id, ``<5 hex>_<5 digits>`` like Ray Tune's.
        trial_name: ``<trainable name>_<trial_id>`` unless a ``trial_name_creator`` says otherwise.
        dirname: The trial directory's name under the experiment directory.
        config: The resolved hyperparameters.
        experiment_tag: ``"<index>_<key>=<value>,..."`` over the sampled values.
        resources: The resource bundles the trial asks for (first bundle: the trial itself).
        strategy: Placement strategy of the bundles.
    """

    trial_id: str
    trial_name: str
    dirname: str
    config: dict[str, Any]
    experiment_tag: str
    resources: list[dict[str, float]]
    strategy: str = "PACK"


class TrialStarted(_EventBase, tag="trial_started", frozen=True, kw_only=True):
    """A runner is ready to train the trial (a fresh actor, or a reused one).

    Attributes:
        attempt: 0 on the first start, then one more per retry after a failure.
        reused: True when an existing actor was reset for this trial instead of started.
        restored_from: Checkpoint directory name the trial resumed from, if any.
    """

    trial_id: str
    attempt: int = 0
    reused: bool = False
    restored_from: str | None = None


class ResultReported(_EventBase, tag="result_reported", frozen=True, kw_only=True):
    """The trial reported one result (one ``report()`` call or one ``step()``).

    ``result`` is the result as logged to ``result.json``: the user's metrics plus the
    auto-filled ones (``training_iteration``, ``time_total_s``, ``config``, ...).
    """

    trial_id: str
    result: dict[str, Any]


class CheckpointSaved(_EventBase, tag="checkpoint_saved", frozen=True, kw_only=True):
    """A checkpoint of the trial was committed to storage (complete and renamed into place).

    Attributes:
        dir_name: The checkpoint directory's name inside the trial directory.
        training_iteration: The iteration the checkpoint belongs to.
        metrics: The result that accompanied the checkpoint (used for retention by score).
    """

    trial_id: str
    dir_name: str
    training_iteration: int
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)


class CheckpointDeleted(_EventBase, tag="checkpoint_deleted", frozen=True, kw_only=True):
    """A checkpoint fell out of ``CheckpointConfig.num_to_keep`` and is deleted.

    The directory is removed only after this event (and the newer checkpoint's
    ``CheckpointSaved``) is durably in the journal, so a crash never leaves the journal
    pointing at a deleted checkpoint.
    """

    trial_id: str
    dir_name: str


class CheckpointDamaged(_EventBase, tag="checkpoint_damaged", frozen=True, kw_only=True):
    """A committed checkpoint could not be read back, so the trial no longer uses it.

    Restoring from it failed because it is gone or atune's own files in it are damaged
    (:class:`~atune.errors.CheckpointCorruptError`). The trial falls back to its newest
    checkpoint still kept, or fails when it has none. The directory is left as it is.

    Attributes:
        dir_name: The damaged checkpoint's directory name inside the trial directory.
        message: What was wrong with it.
    """

    trial_id: str
    dir_name: str
    message: str = ""


class SearcherStateSaved(_EventBase, tag="searcher_state_saved", frozen=True, kw_only=True):
    """A snapshot of the search algorithm's state (JSON data), for ``Tuner.restore``.

    Written at most once per journal flush, after the events it accounts for.
    """

    state: dict[str, Any]


class SchedulerStateSaved(_EventBase, tag="scheduler_state_saved", frozen=True, kw_only=True):
    """A snapshot of the trial scheduler's state (JSON data), for ``Tuner.restore``.

    Written at most once per journal flush, when the state changed, after the events it
    accounts for. Only schedulers whose ``get_state()`` returns data write it.
    """

    state: dict[str, Any]


class CallbackStateSaved(_EventBase, tag="callback_state_saved", frozen=True, kw_only=True):
    """A snapshot of what the user's callbacks returned from ``get_state()``, for restore.

    Written at most once per journal flush, when a state changed. ``Tuner.restore(...,
    callbacks=...)`` hands each state back with ``set_state``.

    Attributes:
        states: One entry per callback whose ``get_state()`` returned a value:
            ``{"index": <position in RunConfig.callbacks>, "type": "<module>.<class>",
            "state": <the JSON data it returned>}``.
    """

    states: list[dict[str, Any]]


class TrialCompleted(_EventBase, tag="trial_completed", frozen=True, kw_only=True):
    """The trial ended without error (status TERMINATED).

    Attributes:
        reason: Why it ended: ``"returned"`` (the function returned), ``"done"`` (a result
            had ``done=True``), ``"stopper"`` (a stop criterion matched), ``"scheduler"``
            (the scheduler stopped it), ``"stop_all"`` (an experiment-wide stopper),
            ``"time_budget"`` (``TuneConfig.time_budget_s`` ran out), ``"fail_fast"``
            (another trial failed under ``FailureConfig(fail_fast=True)``) or ``"skipped"``
            (not resumed by ``Tuner.restore(resume_unfinished=False)``).
    """

    trial_id: str
    reason: Literal[
        "returned",
        "done",
        "stopper",
        "scheduler",
        "stop_all",
        "time_budget",
        "fail_fast",
        "skipped",
    ]


class TrialErrored(_EventBase, tag="trial_errored", frozen=True, kw_only=True):
    """The trial failed: user code raised, or its worker died.

    Attributes:
        error_type: Qualified name of the original exception type.
        message: ``str()`` of the original exception, or the cause of a worker's death.
        traceback: The formatted remote traceback.
        attempt: Which attempt failed (0 is the first).
        will_retry: True when ``FailureConfig.max_failures`` allows another attempt.
        counted: False for a failed checkpoint restore retried under
            ``TUNE_RESTORE_RETRY_NUM``, which does not count against ``max_failures``.
    """

    trial_id: str
    error_type: str
    message: str
    traceback: str = ""
    attempt: int = 0
    will_retry: bool = False
    counted: bool = True


class TrialPaused(_EventBase, tag="trial_paused", frozen=True, kw_only=True):
    """A scheduler paused the trial (status PAUSED): it holds no runner and no resources.

    Its runner is released right after this event; the trial waits until the scheduler's
    ``choose_trial_to_run`` picks it, then resumes (:class:`TrialResumed`) from
    ``checkpoint`` with its counters (``training_iteration``, ``time_total_s``, ...)
    continuing.

    Attributes:
        checkpoint: The checkpoint it resumes from, relative to the experiment directory
            (``<trial dir>/checkpoint_NNNNNN``; a class trainable is saved for the pause, a
            function trainable resumes from the last checkpoint it reported, an exploited
            trial from its donor's). None: it has none and will start over from scratch.
        scheduler: The class name of the scheduler that paused it.
    """

    trial_id: str
    checkpoint: str | None = None
    scheduler: str = ""


class TrialResumed(_EventBase, tag="trial_resumed", frozen=True, kw_only=True):
    """A paused trial is launched again (status PENDING until its ``TrialStarted``).

    Attributes:
        checkpoint: The checkpoint it restores from, relative to the experiment
            directory (``<trial dir>/checkpoint_NNNNNN``; another trial's after an
            exploit); None: it starts over from scratch.
    """

    trial_id: str
    checkpoint: str | None = None


class TrialExploited(_EventBase, tag="trial_exploited", frozen=True, kw_only=True):
    """A scheduler (PBT) made the trial continue from another trial's checkpoint.

    From here the trial's config is ``config`` (and its tag ``experiment_tag``, when set),
    and it is next launched from checkpoint ``dir_name`` of trial ``donor_id``: its
    ``training_iteration`` continues from that checkpoint's. The donor's checkpoint is
    kept (``CheckpointConfig.num_to_keep`` does not delete it) until the trial commits a
    checkpoint of its own, is exploited again, or ends.

    Attributes:
        donor_id: The trial whose checkpoint it continues from.
        dir_name: That checkpoint's directory name inside the donor's trial directory.
        config: The trial's new config.
        experiment_tag: Its new experiment tag (None: unchanged).
    """

    trial_id: str
    donor_id: str
    dir_name: str
    config: dict[str, Any]
    experiment_tag: str | None = None


class ActorFreed(_EventBase, tag="actor_freed", frozen=True, kw_only=True):
    """The runner that served a trial let go of it.

    Attributes:
        action: ``"stopped"`` (cleanup ran, resources released), ``"cached"`` (kept for reuse
            by a later trial with equal resources), or ``"killed"`` (torn down without cleanup,
            after an error or on a deadline).
        reason: Human-readable detail, e.g. why a reset for reuse failed.
    """

    trial_id: str
    action: Literal["stopped", "cached", "killed"]
    reason: str = ""


class ExperimentFinished(_EventBase, tag="experiment_finished", frozen=True, kw_only=True):
    """No trial is left to run; ``fit()`` is about to return."""

    num_trials: int
    num_errors: int


Event = (
    ExperimentStarted
    | TrialCreated
    | TrialStarted
    | ResultReported
    | CheckpointSaved
    | CheckpointDeleted
    | CheckpointDamaged
    | TrialCompleted
    | TrialErrored
    | TrialPaused
    | TrialResumed
    | TrialExploited
    | ActorFreed
    | SearcherStateSaved
    | SchedulerStateSaved
    | CallbackStateSaved
    | ExperimentFinished
)
"""Any event; a tagged union, so one decoder reads them all."""


class SubscriberLagged(_EventBase, tag="subscriber_lagged", frozen=True, kw_only=True):
    """A marker in a live event stream (``Run.events()``): events were lost here.

    Never journaled and never seen by callbacks: only a subscriber of
    :meth:`atune.Run.events` receives it, in place of the events it lost because it fell
    more than its buffer behind (the oldest unread ones are dropped first), or, for a
    replay from the start, because the run no longer holds its oldest events. The events
    after the marker are again consecutive. ``Run.status()`` and ``Run.results()`` give
    the current state to catch up from.

    Attributes:
        dropped: How many events the subscriber missed at this point.
    """

    dropped: int


StreamEvent = Event | SubscriberLagged
"""What a live event stream yields: any :data:`Event`, or a :class:`SubscriberLagged`."""


def _encode_fallback(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    tolist = getattr(obj, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    return repr(obj)


_encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)  # type: ignore[arg-type]


def encode_event(event: StreamEvent) -> bytes:
    """Encode one event as a JSON object (no trailing newline), e.g. for SSE or a WebSocket.

    The object's ``"type"`` field names the event (``"result_reported"``, ...).

    Values that JSON cannot hold (numpy scalars and arrays) are converted; any other
    foreign object is written as its ``repr`` so that encoding never fails mid-run.
    """
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Decode one JSON-encoded event.

    Raises:
        msgspec.DecodeError: ``data`` is not a valid event.
    """
    return _decoder.decode(data)


_stream_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)  # type: ignore[arg-type]


def decode_stream_event(data: bytes | str) -> StreamEvent:
    """Decode one event of a live stream (:func:`decode_event`, or a ``SubscriberLagged``).

    Raises:
        msgspec.DecodeError: ``data`` is not a valid event.
    """
    return _stream_decoder.decode(data)
