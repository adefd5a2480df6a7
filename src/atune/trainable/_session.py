"""The function API's session: ``report()``, ``get_checkpoint()``, ``get_context()``.

A session is the link between a running trainable function and the runner that drives it.
It is found through a context variable, so it works in the worker thread that runs the
function (and in tasks of an ``async def`` trainable), and with several trials in one
process (the in-process backend). Threads the user starts do not inherit context
variables; as a fallback, when exactly one session is active in the process (the normal
case in a Ray actor) that session is used.

Outside a session ``report()`` and ``get_checkpoint()`` log a warning once and return
None, and ``get_context()`` returns a context whose getters do the same, as in Ray Tune.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atune._log import get_logger

if TYPE_CHECKING:
    from atune.execution.placement_groups import PlacementGroupFactory
    from atune.storage._remote import TrialStorage
    from atune.trainable._checkpoint import Checkpoint

__all__ = ["TrialInfo", "TuneContext", "get_checkpoint", "get_context", "report"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class TrialInfo:
    """What a trainable may know about the trial it serves (sent to the runner).

    Attributes:
        trial_id: The trial's id.
        trial_name: The trial's name.
        trial_dir: Absolute path of the trial directory (results and checkpoints live there).
        experiment_name: ``RunConfig.name``.
        resources: The trial's resource request.
        checkpoint_index: Index of the next checkpoint directory (see
            :func:`~atune.storage._layout.checkpoint_name`);
            the controller owns the numbering so indices are never reused across retries.
        signing_key: Key that signs and verifies pickled dict checkpoints (see
            ``atune._signing``); empty outside atune, where a per-process key is used.
        storage: Remote storage only (:mod:`atune.storage._remote`): the runner works
            in its node's scratch and uploads checkpoints there; None for local storage.
    """

    trial_id: str = "default"
    trial_name: str = "default"
    trial_dir: str | None = None
    experiment_name: str | None = None
    resources: PlacementGroupFactory | None = None
    checkpoint_index: int = 0
    signing_key: bytes = b""
    storage: TrialStorage | None = None


class _Session:
    """Per-trial state shared by ``report()`` and the function runner."""

    def __init__(
        self,
        info: TrialInfo,
        report_fn: Callable[[dict[str, Any], Checkpoint | None], None],
        loaded_checkpoint: Checkpoint | None,
    ) -> None:
        self.info = info
        self.report_fn = report_fn
        self.loaded_checkpoint = loaded_checkpoint


_current: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "atune_session", default=None
)
_active: set[_Session] = set()
_active_lock = threading.Lock()
_warned: set[str] = set()


def _activate(session: _Session) -> contextvars.Token[_Session | None]:
    with _active_lock:
        _active.add(session)
    return _current.set(session)


def _deactivate(session: _Session, token: contextvars.Token[_Session | None] | None) -> None:
    with _active_lock:
        _active.discard(session)
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # reset from another context: just clear it
            _current.set(None)


def _withdraw(session: _Session) -> None:
    """The trial of ``session`` is being abandoned: no other thread may fall back on it.

    Its own thread still finds it (the context variable), and stops at its next report.
    """
    with _active_lock:
        _active.discard(session)


def _session() -> _Session | None:
    session = _current.get()
    if session is not None:
        return session
    with _active_lock:
        if len(_active) == 1:
            return next(iter(_active))
    return None


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.warning(
            f"{what} is meant to be called inside a trainable function run by atune; "
            "outside of one it does nothing and returns None"
        )


def report(metrics: dict[str, Any], *, checkpoint: Checkpoint | None = None) -> None:
    """Report one result of a function trainable, optionally with a checkpoint.

    Each call is one training iteration. With ``checkpoint``, its directory is copied into
    the trial directory as the next ``checkpoint_<N>`` (complete before it becomes visible)
    and the result gets ``checkpoint_dir_name``. The call then blocks until the controller
    asks for the next result, so a STOP decided on this result lands here: code after the
    last ``report()`` of a stopped trial never runs. Inside an ``async def`` trainable the
    call blocks that trainable's own event loop, which pauses it in the same way.

    Args:
        metrics: The metrics; keys must be strings.
        checkpoint: A checkpoint to persist with this result.

    Raises:
        TypeError: ``metrics`` is not a dict.
    """
    session = _session()
    if session is None:
        _warn_once("report()")
        return None
    if not isinstance(metrics, dict):
        raise TypeError(f"report() takes a dict of metrics, got {type(metrics).__name__}")
    session.report_fn(metrics, checkpoint)
    return None


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the restored one, or the latest this trial reported.

    None on a fresh start. After a retry, a resume or a scheduler's exploit it is the
    checkpoint the trial was restored from; after the function itself reports a
    checkpoint it is that one.
    """
    session = _session()
    if session is None:
        _warn_once("get_checkpoint()")
        return None
    return session.loaded_checkpoint


class TuneContext:
    """What the running trial may ask about itself; see :func:`get_context`.

    Each getter returns None (and warns once) outside a trial.
    """

    def _info(self, name: str) -> TrialInfo | None:
        session = _session()
        if session is None:
            _warn_once(f"TuneContext.{name}()")
            return None
        return session.info

    def get_trial_id(self) -> str | None:
        """The trial's id, e.g. ``"a06d0_00000"``."""
        info = self._info("get_trial_id")
        return None if info is None else info.trial_id

    def get_trial_name(self) -> str | None:
        """The trial's name, e.g. ``"train_fn_a06d0_00000"``."""
        info = self._info("get_trial_name")
        return None if info is None else info.trial_name

    def get_trial_dir(self) -> str | None:
        """The trial directory on storage (Ray Tune returns a staging dir; atune the real one)."""
        info = self._info("get_trial_dir")
        return None if info is None else info.trial_dir

    def get_experiment_name(self) -> str | None:
        """The experiment's name (``RunConfig.name``)."""
        info = self._info("get_experiment_name")
        return None if info is None else info.experiment_name

    def get_trial_resources(self) -> PlacementGroupFactory | None:
        """The trial's resource request as a ``PlacementGroupFactory``."""
        info = self._info("get_trial_resources")
        return None if info is None else info.resources

    def __repr__(self) -> str:
        return "TuneContext()"


_context = TuneContext()


def get_context() -> TuneContext:
    """The context of the running trial (safe to call anywhere)."""
    return _context
