"""Experiment configuration: ``TuneConfig``, ``RunConfig``, ``CheckpointConfig``, ``FailureConfig``.

The fields and defaults are Ray Tune's (see the semantics reference §4.2-4.5), validated
when the object is built so that bad input fails at ``Tuner(...)`` with an error that
names the value. atune additions are marked as such.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from atune.errors import ConfigError

if TYPE_CHECKING:
    from atune.callback import Callback

__all__ = ["CheckpointConfig", "FailureConfig", "RunConfig", "TuneConfig"]

_MODES = ("min", "max")


def _check_mode(name: str, mode: Any, *, allow_none: bool = True) -> None:
    if mode is None and allow_none:
        return
    if mode not in _MODES:
        raise ConfigError(f"{name} must be 'min' or 'max', got {mode!r}", value=mode)


@dataclass
class TuneConfig:
    """How to search: metric, mode, number of samples, concurrency, search and scheduling.

    Attributes:
        metric: The metric to optimise; also the default of ``ResultGrid.get_best_result``.
        mode: ``"min"`` or ``"max"``.
        search_alg: A ``Searcher`` or search algorithm; default: random/grid variants.
        scheduler: A trial scheduler; default: FIFO.
        num_samples: Samples of the search space (grid search repeats the whole grid per
            sample); ``-1`` samples until stopped.
        max_concurrent_trials: At most this many trials run at once (None or 0: no limit
            beyond the cluster's resources).
        time_budget_s: Wall-clock budget for the whole experiment (seconds or timedelta).
        reuse_actors: Reuse a trial's actor for the next trial with equal resources.
            ``None`` (the atune default) reuses function trainables, which are safe to
            reuse by construction, and not class trainables; ``True``/``False`` force it.
        trial_name_creator: ``Callable[[Trial], str]`` naming trials.
        trial_dirname_creator: ``Callable[[Trial], str]`` naming trial directories; the
            name must not be a path.
        backend: (atune) ``"ray"`` runs each trial in a Ray actor; ``"local"`` runs trials
            in this process, in threads, for fast tests and debugging.
    """

    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | _dt.timedelta | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Callable[[Any], str] | None = None
    trial_dirname_creator: Callable[[Any], str] | None = None
    backend: Literal["ray", "local"] = "ray"

    def __post_init__(self) -> None:
        _check_mode("TuneConfig.mode", self.mode)
        if self.metric is not None and not isinstance(self.metric, str):
            raise ConfigError(
                f"TuneConfig.metric must be a string, got {self.metric!r}", value=self.metric
            )
        if (
            not isinstance(self.num_samples, int)
            or isinstance(self.num_samples, bool)
            or self.num_samples == 0
            or self.num_samples < -1
        ):
            raise ConfigError(
                "TuneConfig.num_samples must be a positive integer or -1 (run until stopped), "
                f"got {self.num_samples!r}",
                value=self.num_samples,
            )
        mct = self.max_concurrent_trials
        if mct is not None and (not isinstance(mct, int) or isinstance(mct, bool) or mct < 0):
            raise ConfigError(
                f"TuneConfig.max_concurrent_trials must be None or an integer >= 1, got {mct!r}",
                value=mct,
            )
        if self.max_concurrent_trials == 0:
            self.max_concurrent_trials = None
        if isinstance(self.time_budget_s, _dt.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s is not None and (
            not isinstance(self.time_budget_s, (int, float)) or self.time_budget_s <= 0
        ):
            raise ConfigError(
                f"TuneConfig.time_budget_s must be a positive number of seconds, "
                f"got {self.time_budget_s!r}",
                value=self.time_budget_s,
            )
        if self.backend not in ("ray", "local"):
            raise ConfigError(
                f"TuneConfig.backend must be 'ray' or 'local', got {self.backend!r}",
                value=self.backend,
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints to take and keep.

    Attributes:
        num_to_keep: Keep at most this many checkpoints per trial (None: all). The latest is
            never deleted, so a trial can always resume.
        checkpoint_score_attribute: Rank checkpoints by this (flattened) metric instead of
            recency. Checkpoints missing it, or with NaN, rank worst.
        checkpoint_score_order: ``"max"`` or ``"min"``.
        checkpoint_frequency: Class trainables: checkpoint every N iterations (0: never).
        checkpoint_at_end: Class trainables: checkpoint when the trial ends (default True for
            classes; function trainables checkpoint through ``report(checkpoint=...)`` and
            reject this option).
    """

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: Literal["max", "min"] = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (
            not isinstance(self.num_to_keep, int) or self.num_to_keep < 1
        ):
            raise ConfigError(
                f"CheckpointConfig.num_to_keep must be None or an integer >= 1, "
                f"got {self.num_to_keep!r}",
                value=self.num_to_keep,
            )
        _check_mode(
            "CheckpointConfig.checkpoint_score_order", self.checkpoint_score_order, allow_none=False
        )
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ConfigError(
                f"CheckpointConfig.checkpoint_frequency must be an integer >= 0, "
                f"got {self.checkpoint_frequency!r}",
                value=self.checkpoint_frequency,
            )


@dataclass
class FailureConfig:
    """What to do when a trial fails.

    Attributes:
        max_failures: Retry a failed trial up to this many times from its latest checkpoint
            (0: never, -1: forever). Retries back off: the first starts at once, then
            each waits 1, 2, 4, 8, 16 and at most 30 seconds, until a result resets the
            count (Ray Tune retries at once every time). The wait holds no resources, and
            a stop (time budget, ``stop_all``) ends it. A trial stopped while its retries
            kept failing ends in ERROR with its last error, not as a success. A metric
            check failure (:class:`~atune.errors.MetricError`) or a config that cannot be
            serialised is not retried.
        fail_fast: ``True`` stops the experiment after the first trial error; ``"raise"``
            also re-raises that error from ``fit()``.
    """

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ConfigError(
                f"FailureConfig.max_failures must be an integer >= -1, got {self.max_failures!r}",
                value=self.max_failures,
            )
        if isinstance(self.fail_fast, str):
            if self.fail_fast.lower() != "raise":
                raise ConfigError(
                    f"FailureConfig.fail_fast must be True, False or 'raise', "
                    f"got {self.fail_fast!r}",
                    value=self.fail_fast,
                )
            self.fail_fast = "raise"
        if self.fail_fast and self.max_failures != 0:
            raise ConfigError(
                "FailureConfig.fail_fast cannot be combined with max_failures != 0 "
                f"(got max_failures={self.max_failures!r})",
                value=self.max_failures,
            )


def _default_storage_path() -> str:
    return os.environ.get("ATUNE_STORAGE_PATH") or os.path.expanduser("~/atune_results")


@dataclass
class RunConfig:
    """Where and how to run: name, storage, stop criteria, callbacks, checkpoints, failures.

    Attributes:
        name: Experiment name; the experiment directory is ``<storage_path>/<name>``.
            Default: ``<trainable name>_<YYYY-MM-DD_HH-MM-SS>_<microseconds>``, chosen by
            the ``Tuner`` (which keeps it; this object is not changed). It must be a plain
            name, not a path, and fit the file system's name limit (checked at
            ``Tuner(...)``).
        storage_path: Root directory of experiments (default ``~/atune_results``, or the
            ``ATUNE_STORAGE_PATH`` environment variable). A local path, a ``file://``
            URI (which means that local path), or a remote storage URI that
            ``pyarrow.fs.FileSystem.from_uri`` opens (``s3://bucket/prefix``,
            ``gs://...``; options in the query: ``?endpoint_override=...&region=...``),
            which needs the ``remote`` extra. On remote storage nothing assumes a disk
            that the nodes share; see ``docs/cluster.md``. The URI is opened (and a bad
            one refused with a ``ConfigError``) at ``Tuner(...)``.
        storage_filesystem: A ``pyarrow.fs.FileSystem`` to store experiments on (Ray
            Tune's); ``storage_path`` is then a path on it, without a scheme. pyarrow's
            ``LocalFileSystem`` means the local path.
        stop: A dict (stop when any ``result[key] >= value``), a ``Stopper``, a callable
            ``(trial_id, result) -> bool``, or a list of Stoppers.
        callbacks: ``Callback`` objects notified of trial events.
        verbose: 0 silent, 1 experiment status, 2 also one line per trial event.
        checkpoint_config: See :class:`CheckpointConfig`.
        failure_config: See :class:`FailureConfig`.
        progress_reporter: A ``CLIReporter``, ``JupyterNotebookReporter`` or a
            ``ProgressReporter`` subclass (:mod:`atune.progress_reporter`): what the
            progress display shows. Anything else raises ``ConfigError``. Not used at
            ``verbose=0``.
        sync_config, log_to_file: Accepted for compatibility with Ray Tune programs;
            atune stores everything locally and ignores them.
    """

    name: str | None = None
    storage_path: str | None = None
    stop: Any = None
    callbacks: Sequence[Callback] | None = None
    verbose: int | None = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    sync_config: Any = None
    progress_reporter: Any = None
    log_to_file: Any = False
    storage_filesystem: Any = None

    def __post_init__(self) -> None:
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.name is not None:
            _check_plain_name("RunConfig.name", self.name)
        if self.storage_path is None:
            self.storage_path = _default_storage_path()
        if _names_remote(self.storage_path, self.storage_filesystem):
            self.storage_path = os.fspath(self.storage_path)  # opened by the Tuner
        else:
            self.storage_path = local_storage_path(self.storage_path)
        if self.progress_reporter is not None:
            from atune.progress_reporter import ProgressReporter

            if not isinstance(self.progress_reporter, ProgressReporter):
                raise ConfigError(
                    "RunConfig.progress_reporter must be an atune.CLIReporter, "
                    "atune.JupyterNotebookReporter or a subclass of "
                    f"atune.ProgressReporter, got {self.progress_reporter!r}",
                    value=self.progress_reporter,
                )
        if self.verbose is not None and self.verbose not in (0, 1, 2, 3):
            raise ConfigError(
                f"RunConfig.verbose must be 0, 1, 2 or 3, got {self.verbose!r}",
                value=self.verbose,
            )


_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _names_remote(storage_path: Any, storage_filesystem: Any) -> bool:
    """Whether the pair names remote storage (no I/O); see :func:`is_remote`."""
    from atune.storage._remote import is_remote

    try:
        text = os.fspath(storage_path)
    except TypeError:
        return False  # local_storage_path names the bad value
    return isinstance(text, str) and is_remote(text, storage_filesystem)


def local_storage_path(storage_path: Any, what: str = "RunConfig.storage_path") -> str:
    """The absolute local directory that ``storage_path`` names.

    A plain path is expanded (``~``) and made absolute; ``file:///x`` means ``/x``. Any
    other URI (``s3://``, ``gs://``, ``hdfs://``, ...) is refused here: remote storage
    is opened through :mod:`atune.storage._remote`, and such a string must never become a
    local directory named ``s3:``.

    Raises:
        ConfigError: a URI of another scheme than ``file``, a ``file`` URI naming another
            host, or a value that is not a path; the message names the value.
    """
    try:
        text: str | bytes = os.fspath(storage_path)
    except TypeError:
        raise ConfigError(
            f"{what} must be a path (str or os.PathLike), got {storage_path!r}",
            value=storage_path,
        ) from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    match = _URI.match(text)
    if match is not None:
        scheme = match.group(1).lower()
        if scheme != "file":
            raise ConfigError(
                f"{what}={text!r} is not a local path ({scheme}:// is remote storage, "
                "which this call does not open)",
                value=text,
            )
        parsed = urllib.parse.urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{what}={text!r}: a file:// URI must name a local path (file:///path), "
                f"not the host {parsed.netloc!r}",
                value=text,
            )
        text = urllib.parse.unquote(parsed.path)
    return os.path.abspath(os.path.expanduser(text))


def _check_plain_name(what: str, name: Any) -> None:
    """Reject names that would escape their parent directory."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {name!r}", value=name)
    if name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name) or "\0" in name:
        raise ConfigError(
            f"{what} must be a plain directory name without path separators or '..', got {name!r}",
            value=name,
        )
