"""The function API adapter: a user function driven, report by report, as a ``Trainable``.

The user function runs in its own worker thread (an ``async def`` function runs in an
event loop of its own in that thread). ``report()`` hands each result through a lock-step
rendezvous to ``step()`` and then waits: the function runs again only when the runner
asks for the next result. Stopping releases the waiting ``report()`` with an internal
``BaseException`` that unwinds the function, so code after the last ``report()`` of a
stopped trial never runs; the thread is then joined (Ray Tune never joins it, which keeps
GPU memory alive after a stop).
"""

from __future__ import annotations

import asyncio
import inspect
import numbers
import os
import threading
import time
import traceback as _traceback
from collections.abc import Callable
from typing import Any

from atune.errors import ConfigError
from atune.trainable._checkpoint import Checkpoint
from atune.trainable._session import TrialInfo, _activate, _deactivate, _Session
from atune.trainable._trainable import (
    Trainable,
    _write_checkpoint_state,
    checkpoint_index,
    commit_checkpoint_dir,
    copy_tree,
    new_staging_dir,
    read_checkpoint_state,
)

__all__ = ["FunctionTrainable", "TrainableReturned", "validate_function", "wrap_function"]

_JOIN_TIMEOUT_S = 5.0


class TrainableReturned(Exception):
    """Raised by ``FunctionTrainable.step()`` once the function has returned."""


class _TrialStopped(BaseException):
    """Unwinds a stopped function from inside its blocked ``report()``."""


class _Rendezvous:
    """Lock-step handoff of one item at a time from the function thread to ``step()``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[str, Any] | None = None
        self._go = False
        self._stopping = False

    # function thread -------------------------------------------------------------
    def put_and_wait(self, item: tuple[str, Any]) -> None:
        with self._cond:
            self._item = item
            self._cond.notify_all()
            while not self._go and not self._stopping:
                self._cond.wait()
            self._go = False
            if self._stopping:
                raise _TrialStopped

    def put_final(self, item: tuple[str, Any]) -> None:
        with self._cond:
            self._item = item
            self._cond.notify_all()

    # step() side -----------------------------------------------------------------
    def resume_and_take(self, resume: bool) -> tuple[str, Any]:
        with self._cond:
            if resume:
                self._go = True
                self._cond.notify_all()
            while self._item is None:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def check_stopping(self) -> None:
        """Raise at once if the trial was stopped (before a report writes anything)."""
        if self._stopping:
            raise _TrialStopped


class FunctionTrainable(Trainable):
    """A ``Trainable`` that drives a user function; made by :func:`wrap_function`."""

    _function: Callable[..., Any]

    def setup(self, config: dict[str, Any], **parameters: Any) -> None:  # type: ignore[override]
        # ``parameters`` (from with_parameters) reach the function as keyword arguments.
        self._channel = _Rendezvous()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._loaded_checkpoint: Checkpoint | None = None
        self._checkpoint_index = self._info.checkpoint_index
        self._step_started = time.monotonic()

    # ------------------------------------------------------------------ step side
    def step(self) -> dict[str, Any]:
        if self._finished:
            raise TrainableReturned
        self._step_started = time.monotonic()
        resume = self._thread is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"atune-trial-{self.trial_id}", daemon=True
            )
            self._thread.start()
        kind, payload = self._channel.resume_and_take(resume)
        if kind == "result":
            return payload  # type: ignore[no-any-return]
        self._finished = True
        if kind == "error":
            raise payload
        raise TrainableReturned

    # ---------------------------------------------------------------- thread side
    def _run(self) -> None:
        session = _Session(self._info, self._report, self._loaded_checkpoint)
        self._session = session
        token = _activate(session)
        try:
            fn = self._function
            kwargs = self._atune_parameters
            config = self.config
            if inspect.iscoroutinefunction(fn):
                output = asyncio.run(fn(config, **kwargs))
            elif inspect.isasyncgenfunction(fn):
                asyncio.run(self._drain_async(fn(config, **kwargs)))
                output = None
            else:
                output = fn(config, **kwargs)
            if inspect.isgenerator(output):
                for value in output:
                    self._report_value(value)
            else:
                self._report_value(output)
        except _TrialStopped:
            return
        except BaseException as exc:  # handed to step(), re-raised in the runner
            self._channel.put_final(("error", exc))
            return
        finally:
            _deactivate(session, token)
        self._channel.put_final(("returned", None))

    async def _drain_async(self, agen: Any) -> None:
        async for value in agen:
            self._report_value(value)

    def _report_value(self, value: Any) -> None:
        """A returned or yielded value: a dict or a number is one more report."""
        if value is None or (isinstance(value, dict) and not value):
            return
        if isinstance(value, dict):
            self._report(value, None)
        elif isinstance(value, numbers.Number) and not isinstance(value, bool):
            self._report({"_metric": value}, None)
        else:
            raise ValueError(
                "Invalid return or yield value: a trainable function may return or yield "
                f"a dict of metrics or a single number, got {type(value).__name__}: {value!r}"
            )

    def _report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        self._channel.check_stopping()  # an abandoned trial must not write another checkpoint
        result = dict(metrics)
        if checkpoint is not None:
            iteration = result.get("training_iteration", self._iteration + 1)
            elapsed = time.monotonic() - self._step_started
            state = {**self._state(), "training_iteration": iteration}
            state["time_total_s"] = self._time_total + result.get("time_this_iter_s", elapsed)
            committed = self._persist(checkpoint, state)
            result["checkpoint_dir_name"] = os.path.basename(committed)
            result["should_checkpoint"] = True
            self._loaded_checkpoint = Checkpoint(committed)
            self._session.loaded_checkpoint = self._loaded_checkpoint
        else:
            result["checkpoint_dir_name"] = None
        result["timestamp"] = int(time.time())
        self._channel.put_and_wait(("result", result))

    def _persist(self, checkpoint: Checkpoint, state: dict[str, Any]) -> str:
        """Copy a reported checkpoint into the trial dir, atomically, under the next index."""
        trial_dir = self.logdir
        staged = new_staging_dir(trial_dir, self._checkpoint_index)
        copy_tree(checkpoint.path, staged)
        _write_checkpoint_state(staged, state)
        final = commit_checkpoint_dir(staged, trial_dir, self._checkpoint_index)
        self._checkpoint_index = checkpoint_index(final) + 1
        return final

    # ------------------------------------------------------------- lifecycle hooks
    def _load(self, path: str) -> None:
        self._loaded_checkpoint = Checkpoint(path)

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | str | None:
        raise NotImplementedError(
            "function trainables checkpoint through report(metrics, checkpoint=...)"
        )

    def _shutdown_thread(self) -> bool:
        """Stop the function at its blocked ``report()`` and join it; True if it ended."""
        thread = self._thread
        self._channel.stop()
        if thread is None:
            return True
        thread.join(_JOIN_TIMEOUT_S)
        return not thread.is_alive()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        if not self._shutdown_thread():
            return False
        self._channel = _Rendezvous()
        self._thread = None
        self._finished = False
        self._loaded_checkpoint = None
        return True

    def reset(self, new_config: dict[str, Any], trial_info: TrialInfo | None = None) -> bool:
        ok = super().reset(new_config, trial_info)
        if ok:
            self._checkpoint_index = self._info.checkpoint_index
        return ok

    def cleanup(self) -> None:
        self._shutdown_thread()

    def interrupt(self) -> None:
        self._channel.stop()

    @classmethod
    def restored_iteration(cls, path: str) -> int:
        """The ``training_iteration`` stored with a checkpoint (0 if unknown)."""
        return int(read_checkpoint_state(path).get("training_iteration") or 0)


def validate_function(fn: Callable[..., Any], extra_kwargs: tuple[str, ...] = ()) -> None:
    """Check that ``fn`` can be called as ``fn(config, **extra)``.

    Raises:
        ConfigError: naming the function and its signature.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot inspect the signature of trainable {fn!r}: {exc}") from exc
    try:
        sig.bind({}, **dict.fromkeys(extra_kwargs))
    except TypeError as exc:
        name = getattr(fn, "__name__", repr(fn))
        raise ConfigError(
            f"trainable function {name}{sig} must take a single positional 'config' "
            "parameter (extra arguments can be passed with tune.with_parameters)",
            value=fn,
        ) from exc


def wrap_function(fn: Callable[..., Any], *, name: str | None = None) -> type[FunctionTrainable]:
    """Make a ``FunctionTrainable`` subclass that drives ``fn(config, **parameters)``.

    Parameters attached by ``with_parameters`` and resources attached by
    ``with_resources`` carry over to the class.

    Raises:
        ConfigError: ``fn`` does not take a single ``config`` parameter.
    """
    parameters = dict(getattr(fn, "_atune_parameters", {}))
    validate_function(fn, tuple(parameters))
    namespace: dict[str, Any] = {
        "_function": staticmethod(fn),
        "_atune_parameters": parameters,
        "__module__": __name__,
    }
    if hasattr(fn, "_atune_resources"):
        namespace["_atune_resources"] = fn._atune_resources
    cls_name = str(name or getattr(fn, "__name__", None) or "trainable")
    return type(cls_name, (FunctionTrainable,), namespace)


def format_exception(exc: BaseException) -> str:
    """The full formatted traceback of ``exc``."""
    return "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
