"""The class API: ``Trainable``, and the auto-filled metrics every result carries."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atune._signing import sign, verify
from atune.errors import CheckpointCorruptError
from atune.storage._layout import (
    CHECKPOINT_STATE_FILE,
    DICT_CHECKPOINT_JSON,
    DICT_CHECKPOINT_PICKLE,
    SIGNATURE_SUFFIX,
    TEMP_CHECKPOINT_PREFIX,
    checkpoint_name,
    staging_name,
)
from atune.trainable._checkpoint import Checkpoint
from atune.trainable._session import TrialInfo

if TYPE_CHECKING:
    from atune.execution.placement_groups import PlacementGroupFactory

__all__ = ["Trainable", "commit_checkpoint_dir", "read_checkpoint_state"]

_node_ip: str | None = None


def _node_ip_address() -> str:
    global _node_ip
    if _node_ip is None:
        ray = sys.modules.get("ray")
        try:
            if ray is not None and ray.is_initialized():
                _node_ip = str(ray.util.get_node_ip_address())
            else:
                _node_ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            _node_ip = "127.0.0.1"
    return _node_ip


def commit_checkpoint_dir(staged: str | os.PathLike[str], trial_dir: str, index: int) -> str:
    """Make a fully written checkpoint directory visible as checkpoint ``index``.

    The directory is written under a temporary name first and renamed into place here, so
    a reader (or a restore after a crash) sees either no checkpoint or a complete one,
    never a mix of two attempts. A name that exists already is never overwritten: the
    next free index is taken instead (a worker of a crashed run may still be finishing
    its last save while the restored run saves), and the name used is returned.

    Returns:
        The committed directory's path.
    """
    while True:
        final = os.path.join(trial_dir, checkpoint_name(index))
        if not os.path.exists(final):
            try:
                os.rename(staged, final)
                return final
            except OSError:  # created in between (a non-empty directory): try the next
                pass
        index += 1


def read_checkpoint_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The counters saved with a checkpoint (``training_iteration``, ``time_total_s``, ...).

    Returns an empty dict for a checkpoint not written by atune.

    Raises:
        CheckpointCorruptError: the state file exists but does not parse.
    """
    state_file = Path(path) / CHECKPOINT_STATE_FILE
    if not state_file.is_file():
        return {}
    data = _load_json(str(state_file))
    return data if isinstance(data, dict) else {}


def _load_json(path: str) -> Any:
    """Parse one of atune's own checkpoint files; damage is a CheckpointCorruptError."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointCorruptError(
            f"checkpoint file {path} is damaged ({type(exc).__name__}: {exc})", path=path
        ) from exc


def _write_checkpoint_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    (Path(path) / CHECKPOINT_STATE_FILE).write_text(json.dumps(state))


class Trainable:
    """Base class of class trainables (Ray Tune's class API).

    Subclass it and implement :meth:`setup`, :meth:`step`, and for checkpointing
    :meth:`save_checkpoint` / :meth:`load_checkpoint`. atune constructs it inside the trial's
    runner (a Ray actor, or a thread of this process with the local backend); ``setup``
    runs once per runner, ``step`` once per training iteration, ``cleanup`` once when the
    runner is finally stopped. With actor reuse, ``reset_config`` switches an existing
    instance to a new trial's config instead of constructing a new one.

    It also works standalone: ``MyTrainable({"lr": 0.1}).train()`` runs one iteration and
    returns the result with its auto-filled metrics.

    Do not call ``report()`` inside a class trainable: return the metrics from ``step``.
    """

    #: Objects handed to ``setup`` as keyword arguments (set by ``with_parameters``).
    _atune_parameters: Mapping[str, Any] = {}

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        trial_info: TrialInfo | None = None,
    ) -> None:
        """Set up the trainable; do not override (override :meth:`setup`).

        Args:
            config: The trial's hyperparameters (``setup`` receives a copy).
            trial_info: Set by atune's runner; standalone instances get a temporary logdir
                and ``trial_id == "default"``.
        """
        self.config: dict[str, Any] = dict(config or {})
        self._info = trial_info or TrialInfo()
        self._logdir = self._info.trial_dir
        self._reset_counters()
        self._restored = False
        self._last_result: dict[str, Any] | None = None
        if self._atune_parameters:
            self.setup(copy.deepcopy(self.config), **self._atune_parameters)  # type: ignore[call-arg]
        else:
            self.setup(copy.deepcopy(self.config))

    def _reset_counters(self) -> None:
        self._iteration = 0
        self._time_total = 0.0
        self._timesteps_total: int | float | None = None
        self._episodes_total: int | float | None = None
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0

    # ----------------------------------------------------------------- to implement
    def setup(self, config: dict[str, Any]) -> None:
        """Prepare the trial (build the model, load data). Runs once per runner.

        With ``with_parameters(cls, **objects)`` it is called as
        ``setup(config, **objects)``; declare those parameters in the override.

        Args:
            config: A copy of the trial's hyperparameters.
        """

    def step(self) -> dict[str, Any]:
        """Run one logical iteration and return its metrics (a dict).

        Special keys: ``done`` (True stops the trial), ``should_checkpoint`` (take a
        checkpoint after this result), and the overrides ``time_this_iter_s``,
        ``timestamp``, ``timesteps_this_iter``, ``episodes_this_iter``,
        ``training_iteration``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | str | None:
        """Write the trial's state into ``checkpoint_dir``.

        Returns:
            None or ``checkpoint_dir`` itself (the files are the checkpoint), or a dict
            (stored as JSON when it can be, else pickled) that :meth:`load_checkpoint`
            receives back.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement save_checkpoint()")

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        """Restore the state written by :meth:`save_checkpoint`.

        Args:
            checkpoint: The dict ``save_checkpoint`` returned, or the checkpoint directory.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement load_checkpoint()")

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Switch this instance to a new trial's config (actor reuse). Return True if done.

        The default returns False; atune then starts a fresh runner for the new trial
        (Ray Tune would fail the trial instead).
        """
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` acquired; runs once, when the runner is finally stopped."""

    @classmethod
    def default_resource_request(
        cls, config: dict[str, Any]
    ) -> PlacementGroupFactory | dict[str, Any] | None:
        """Resources a trial of this class needs, given its config (None: 1 CPU)."""
        return None

    # ------------------------------------------------------------------- properties
    @property
    def trial_id(self) -> str:
        """The trial's id (``"default"`` outside atune)."""
        return self._info.trial_id

    @property
    def trial_name(self) -> str:
        """The trial's name (``"default"`` outside atune)."""
        return self._info.trial_name

    @property
    def trial_resources(self) -> PlacementGroupFactory | None:
        """The trial's resource request, or None outside atune."""
        return self._info.resources

    @property
    def logdir(self) -> str:
        """The trial directory (a temporary directory for standalone instances)."""
        if self._logdir is None:
            self._logdir = tempfile.mkdtemp(prefix=f"{type(self).__name__}_")
        return self._logdir

    @property
    def iteration(self) -> int:
        """Iterations completed so far (inside ``step``: before the current one)."""
        return self._iteration

    @property
    def finished(self) -> bool:
        """(atune) Whether the trial ended by itself and the instance may take another.

        Class trainables never end by themselves (the controller stops them), so False;
        a function trainable is finished once its function has returned.
        """
        return False

    @property
    def training_iteration(self) -> int:
        """Alias of :attr:`iteration`."""
        return self._iteration

    # ----------------------------------------------------------------- driven by atune
    def train(self) -> dict[str, Any]:
        """Run one ``step()`` and return its result with the auto-filled metrics.

        Raises:
            TypeError: ``step()`` did not return a dict.
        """
        start = time.monotonic()
        raw = self.step()
        elapsed = time.monotonic() - start
        if not isinstance(raw, dict):
            raise TypeError(f"step() needs to return a dict, got {type(raw).__name__}: {raw!r}")
        return self._autofill(dict(raw), elapsed)

    def _autofill(self, result: dict[str, Any], elapsed: float) -> dict[str, Any]:
        self._iteration += 1
        self._iterations_since_restore += 1
        time_this_iter = result.get("time_this_iter_s", elapsed)
        self._time_total += time_this_iter
        self._time_since_restore += time_this_iter
        result.setdefault("done", False)
        if result.get("timesteps_this_iter") is not None:
            self._timesteps_total = (self._timesteps_total or 0) + result["timesteps_this_iter"]
        if self._timesteps_total is not None:
            result.setdefault("timesteps_total", self._timesteps_total)
        if result.get("episodes_this_iter") is not None:
            self._episodes_total = (self._episodes_total or 0) + result["episodes_this_iter"]
        if self._episodes_total is not None:
            result.setdefault("episodes_total", self._episodes_total)
        result.setdefault("training_iteration", self._iteration)
        now = _dt.datetime.now()
        result.setdefault("timestamp", int(time.time()))
        result.update(
            trial_id=self.trial_id,
            date=now.strftime("%Y-%m-%d_%H-%M-%S"),
            time_this_iter_s=time_this_iter,
            time_total_s=self._time_total,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            node_ip=_node_ip_address(),
            config=self.config,
            time_since_restore=self._time_since_restore,
            iterations_since_restore=self._iterations_since_restore,
        )
        self._last_result = result
        return result

    def _state(self) -> dict[str, Any]:
        return {
            "training_iteration": self._iteration,
            "time_total_s": self._time_total,
            "timesteps_total": self._timesteps_total,
            "episodes_total": self._episodes_total,
        }

    def save(self, checkpoint_dir: str | None = None) -> Checkpoint:
        """Save a checkpoint with :meth:`save_checkpoint` and return it.

        Args:
            checkpoint_dir: Directory to write (created if missing); default: a new
                temporary directory.

        Raises:
            ValueError: ``save_checkpoint`` returned a path other than ``checkpoint_dir``.
        """
        target = checkpoint_dir or tempfile.mkdtemp(prefix=TEMP_CHECKPOINT_PREFIX)
        os.makedirs(target, exist_ok=True)
        returned = self.save_checkpoint(target)
        if isinstance(returned, dict):
            _write_dict_checkpoint(target, returned, _key(self._info))
        elif returned is not None and os.path.abspath(str(returned)) != os.path.abspath(target):
            raise ValueError(
                f"save_checkpoint() must return None, the checkpoint_dir it was given "
                f"({target!r}) or a dict, got the path {returned!r}"
            )
        _write_checkpoint_state(target, self._state())
        return Checkpoint(target)

    def restore(self, checkpoint: Checkpoint | str | os.PathLike[str]) -> None:
        """Restore from a checkpoint taken by :meth:`save` (counters included).

        Raises:
            ValueError: the checkpoint directory does not exist.
            CheckpointCorruptError: atune's files in the checkpoint are damaged (a state or
                dict file that does not parse, a pickled dict that is not signed).
        """
        path = checkpoint.path if isinstance(checkpoint, Checkpoint) else os.fspath(checkpoint)
        if not os.path.isdir(path):
            raise ValueError(f"checkpoint directory {path!r} does not exist")
        state = read_checkpoint_state(path)
        self._iteration = int(state.get("training_iteration") or 0)
        self._time_total = float(state.get("time_total_s") or 0.0)
        self._timesteps_total = state.get("timesteps_total")
        self._episodes_total = state.get("episodes_total")
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0
        self._restored = True
        self._load(path)

    def _load(self, path: str) -> None:
        self.load_checkpoint(_read_dict_checkpoint(path, _key(self._info)) or path)

    def reset(self, new_config: dict[str, Any], trial_info: TrialInfo | None = None) -> bool:
        """Switch to a new trial (actor reuse): calls :meth:`reset_config`, zeroes counters.

        Returns:
            What ``reset_config`` returned; on False the instance is left unchanged.
        """
        if not self.reset_config(copy.deepcopy(new_config)):
            return False
        self.config = dict(new_config)
        if trial_info is not None:
            self._info = trial_info
            self._logdir = trial_info.trial_dir
        self._reset_counters()
        self._restored = False
        self._last_result = None
        return True

    def stop(self) -> None:
        """Release resources: calls :meth:`cleanup`."""
        self.cleanup()

    def interrupt(self) -> None:
        """(atune) Thread-safe: the trial is being abandoned; stop at the next report boundary.

        Called from another thread while ``step()`` may be running. The default does
        nothing; function trainables stop their function at its next ``report()``.
        """


_PROCESS_KEY = secrets.token_bytes(32)


def _key(info: TrialInfo) -> bytes:
    return info.signing_key or _PROCESS_KEY


def _write_dict_checkpoint(target: str, data: dict[str, Any], key: bytes) -> None:
    try:
        payload = json.dumps(data)
    except (TypeError, ValueError):
        import pickle

        blob = pickle.dumps(data)
        with open(os.path.join(target, DICT_CHECKPOINT_PICKLE), "wb") as f:
            f.write(blob)
        with open(os.path.join(target, DICT_CHECKPOINT_PICKLE + SIGNATURE_SUFFIX), "w") as f:
            f.write(sign(key, blob))
        return
    with open(os.path.join(target, DICT_CHECKPOINT_JSON), "w") as f:
        f.write(payload)


def _read_dict_checkpoint(path: str, key: bytes) -> dict[str, Any] | None:
    json_file = os.path.join(path, DICT_CHECKPOINT_JSON)
    if os.path.isfile(json_file):
        data = _load_json(json_file)
        return data if isinstance(data, dict) else None
    pickle_file = os.path.join(path, DICT_CHECKPOINT_PICKLE)
    if os.path.isfile(pickle_file):
        import pickle

        with open(pickle_file, "rb") as f:
            blob = f.read()
        try:
            with open(pickle_file + SIGNATURE_SUFFIX) as f:
                signature = f.read()
        except FileNotFoundError:
            signature = ""
        if not verify(key, blob, signature):
            raise CheckpointCorruptError(
                f"refusing to unpickle {pickle_file}: it is not signed by this installation's "
                "key (atune never loads a pickle it did not write itself)",
                path=pickle_file,
            )
        data = pickle.loads(blob)
        return data if isinstance(data, dict) else None
    return None


def new_staging_dir(trial_dir: str, index: int) -> str:
    """A fresh, uniquely named directory next to where checkpoint ``index`` will live."""
    path = os.path.join(trial_dir, staging_name(index))
    os.makedirs(path)
    return path


def copy_tree(src: str, dst: str) -> None:
    """Copy a checkpoint's files into ``dst`` (which exists)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
