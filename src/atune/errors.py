"""The one exception hierarchy of atune.

Every error atune raises on purpose is one of these::

    TuneError                       root; Ray Tune's name, so ``except tune.TuneError`` ports
    ├── ConfigError (ValueError)    bad input found before or at the start of ``fit()``
    │   ├── SearchSpaceError        a malformed search-space domain or grid
    │   └── NotSerializableError (TypeError)   a config value or trainable that cannot
    │                                          be shipped to a worker; names which
    ├── MetricError (ValueError)    a trial's first result lacks a required metric, or its
    │                               value is not a real number (fails that trial only)
    ├── ResourceError               a resource request that cannot be served
    │   └── InfeasibleResourcesError   can never fit the cluster; names request and capacity
    │       └── PendingResourcesTimeoutError   the cluster could grow, but did not grow
    │                                          to hold the request within the timeout
    ├── TrialError                  a trial failed; carries the remote type, message, traceback
    │   └── WorkerDiedError         the process hosting the trial died (exit code or signal)
    └── StorageError                the experiment directory cannot be read or written
        ├── JournalCorruptError     the event journal is damaged beyond its torn last line
        ├── ExperimentLockedError   another process (or fit()) is running the experiment
        └── CheckpointCorruptError  a committed checkpoint cannot be read back (``.path``)

``ConfigError`` derives from :class:`ValueError` so that Ray Tune programs that catch
``ValueError`` around ``Tuner(...)`` keep working after the port.

An exception raised by *user code* inside a trial is never wrapped when it can be
rebuilt: ``Result.error`` is an instance of the user's own exception type, with the
remote traceback attached as a note. Only when the original cannot be rebuilt in the
driver (it does not pickle, or it comes back from a journal, which holds no pickles) is
it represented by a :class:`TrialError` that keeps its type name, message and traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointCorruptError",
    "ConfigError",
    "ExperimentLockedError",
    "InfeasibleResourcesError",
    "JournalCorruptError",
    "MetricError",
    "NotSerializableError",
    "PendingResourcesTimeoutError",
    "ResourceError",
    "SearchSpaceError",
    "StorageError",
    "TrialError",
    "TuneError",
    "WorkerDiedError",
]


class TuneError(Exception):
    """Root of every error atune raises on purpose."""


class ConfigError(TuneError, ValueError):
    """A configuration value is invalid.

    Raised at ``Tuner(...)`` or at the start of ``fit()``, before any trial runs. The
    message names the offending value; ``.value`` holds it when there is one.
    """

    def __init__(self, message: str, *, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


class SearchSpaceError(ConfigError):
    """A search-space domain, grid or ``sample_from`` function is malformed."""


class NotSerializableError(ConfigError, TypeError):
    """A config value or the trainable cannot be serialised for the worker that runs it.

    Also a :class:`TypeError`, as Ray Tune raises for an unserialisable trainable, so ported
    ``except TypeError`` blocks keep working. The message names the key path of a config
    value (``opt.k``) and its type, or, for a trainable, the variables it captures that
    fail (from :func:`atune.utils.diagnose_serialization`).
    """


class MetricError(TuneError, ValueError):
    """A trial's result cannot be scored: the metric is missing or is not a real number.

    Checked on a trial's first result for every metric the experiment optimises
    (``TuneConfig.metric``, the scheduler's, the searcher's). It fails that trial only
    (without retries: the same code would report the same result); other trials go on.
    A :class:`ValueError`, as in Ray Tune.

    Attributes:
        metric: The metric that was checked.
        trial_id: The trial whose result failed the check.
    """

    def __init__(self, message: str, *, metric: str = "", trial_id: str = "") -> None:
        super().__init__(message)
        self.metric = metric
        self.trial_id = trial_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_metric_error, (str(self), self.metric, self.trial_id))


def _rebuild_metric_error(message: str, metric: str, trial_id: str) -> MetricError:
    return MetricError(message, metric=metric, trial_id=trial_id)


class ResourceError(TuneError):
    """A resource request cannot be served."""


class InfeasibleResourcesError(ResourceError):
    """A request can never fit the cluster's capacity.

    Attributes:
        request: The resources asked for (summed over bundles).
        capacity: The cluster's total resources when the request was checked.
    """

    def __init__(
        self, message: str, *, request: dict[str, float], capacity: dict[str, float]
    ) -> None:
        super().__init__(message)
        self.request = request
        self.capacity = capacity


class PendingResourcesTimeoutError(InfeasibleResourcesError):
    """On a cluster that can grow, a request waited too long for the nodes it needs.

    An autoscaler was asked for the resources (see docs/cluster.md, "Autoscaling
    clusters"), but the cluster's total stayed below the request for the whole
    ``ATUNE_PENDING_RESOURCES_TIMEOUT_S``: no node type offers it, the autoscaler reached
    its ``max_workers``, or nodes failed to start. The trial fails, without a retry.

    Attributes:
        request: The resources asked for (summed over bundles).
        capacity: The cluster's total resources when the timeout expired.
        bundles: The request's bundles.
        timeout_s: The timeout that expired, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        request: dict[str, float],
        capacity: dict[str, float],
        bundles: list[dict[str, float]],
        timeout_s: float,
    ) -> None:
        super().__init__(message, request=request, capacity=capacity)
        self.bundles = bundles
        self.timeout_s = timeout_s

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.request, self.capacity, self.bundles, self.timeout_s)
        return (_rebuild_pending_timeout, (str(self), *fields))


def _rebuild_pending_timeout(
    message: str,
    request: dict[str, float],
    capacity: dict[str, float],
    bundles: list[dict[str, float]],
    timeout_s: float,
) -> PendingResourcesTimeoutError:
    return PendingResourcesTimeoutError(
        message, request=request, capacity=capacity, bundles=bundles, timeout_s=timeout_s
    )


class TrialError(TuneError):
    """A trial failed and its original exception could not be rebuilt in the driver.

    Attributes:
        trial_id: The failing trial.
        error_type: Qualified name of the original exception type (``"builtins.ValueError"``).
        error_message: ``str()`` of the original exception.
        traceback: The formatted remote traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        trial_id: str = "",
        error_type: str = "",
        error_message: str = "",
        traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.trial_id = trial_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class WorkerDiedError(TrialError):
    """The process that hosted a trial died (``os._exit``, a signal, a lost node).

    The message names the cause Ray observed (exit code or signal) and never guesses one.
    """


class StorageError(TuneError):
    """The experiment directory cannot be read or written as required."""


class JournalCorruptError(StorageError):
    """The event journal is damaged somewhere other than a torn last line.

    atune never silently starts a fresh experiment over a damaged one; ``.path`` and
    ``.line`` say where the damage is.
    """

    def __init__(self, message: str, *, path: str, line: int) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class ExperimentLockedError(StorageError):
    """Another ``fit()`` is running the experiment: one process at a time may run it.

    Raised at the start of ``fit()`` (or ``Tuner.restore(...).fit()``) when the experiment's
    lock is held, by another process or by another ``fit()`` of this one. Reading the
    experiment (``ResultGrid.from_path``, ``Tuner.restore(...)`` itself) never needs the
    lock. The operating system releases the lock when its holder exits, however it exits.

    Attributes:
        path: The experiment directory.
        pid: The holder's process id, or None when it could not be read.
        host: The holder's host name, or None when it could not be read.
    """

    def __init__(self, message: str, *, path: str, pid: int | None, host: str | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
        self.host = host


class CheckpointCorruptError(StorageError):
    """A committed checkpoint cannot be read back: atune's own files in it are damaged.

    Raised when restoring from a checkpoint whose directory is gone, whose
    ``.atune_state.json`` or ``_dict_checkpoint.json`` does not parse (a truncated
    write, a full disk), or whose pickled dict is not signed by this installation's key.
    Errors raised by the user's ``load_checkpoint`` are not this. During ``fit()`` a
    trial then falls back to its newest intact checkpoint (with a warning); with none
    left, the trial fails with this error.

    Attributes:
        path: The damaged file or checkpoint directory.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)  # ``path`` has a default so that the error pickles
        self.path = path
