"""The function API adapter: a user function driven, report by report, as a ``Trainable``.

The user function runs as a greenlet on the runner's own thread (an ``async def``
function runs in an event loop of its own inside it). ``step()`` switches into the
function; ``report()`` switches back with the result, and the function stays suspended at
that ``report()`` until the runner asks for the next result: lock-step, with no thread
handoff (Ray Tune hands every result between two threads through a queue and a lock).
Stopping throws an internal ``BaseException`` into the suspended ``report()``, which
unwinds the function, so code after the last ``report()`` of a stopped trial never runs and
nothing of the function is left running (Ray Tune leaves its thread behind, with whatever
GPU memory it holds).

``report()`` must therefore be called from the function itself (its own thread); a call
from a thread the function started raises a clear error.
"""

from __future__ import annotations

import asyncio
import inspect
import numbers
import os
import time
from collections.abc import Callable
from typing import Any

from atune.errors import ConfigError
from atune.execution._request import RESOURCES_ATTR
from atune.storage._layout import parse_checkpoint_name
from atune.storage._remote import upload_checkpoint
from atune.trainable._checkpoint import Checkpoint
from atune.trainable._greenlet_bridge import Suspendable, TrialStopped
from atune.trainable._session import TrialInfo, _activate, _deactivate, _Session, _withdraw
from atune.trainable._trainable import (
    Trainable,
    _write_checkpoint_state,
    commit_checkpoint_dir,
    copy_tree,
    new_staging_dir,
)

__all__ = [
    "FunctionTrainable",
    "TrainableReturned",
    "trainable_kind",
    "trainable_name",
    "validate_function",
    "wrap_function",
]


class TrainableReturned(Exception):
    """Raised by ``FunctionTrainable.step()`` once the function has returned."""


class FunctionTrainable(Trainable):
    """A ``Trainable`` that drives a user function; made by :func:`wrap_function`."""

    _function: Callable[..., Any]

    def setup(self, config: dict[str, Any], **parameters: Any) -> None:  # type: ignore[override]
        # ``parameters`` (from with_parameters) reach the function as keyword arguments.
        self._run_state: Suspendable | None = None
        self._finished = False
        self._returned = False
        self._loaded_checkpoint: Checkpoint | None = None
        self._checkpoint_index = self._info.checkpoint_index
        self._step_started = time.monotonic()

    # ------------------------------------------------------------------ step side
    def step(self) -> dict[str, Any]:
        if self._finished:
            raise TrainableReturned
        self._step_started = time.monotonic()
        if self._run_state is None:
            self._run_state = Suspendable(self._run)
        kind, payload = self._run_state.next()
        if kind == "result":
            return payload  # type: ignore[no-any-return]
        self._finished = True
        if kind == "error":
            raise payload
        self._returned = True
        raise TrainableReturned

    # -------------------------------------------------------------- function side
    def _run(self) -> tuple[str, Any]:
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
        except TrialStopped:
            return ("stopped", None)
        except BaseException as exc:  # handed to step(), re-raised in the runner
            return ("error", exc)
        finally:
            _deactivate(session, token)
        return ("returned", None)

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
        run_state = self._run_state
        assert run_state is not None
        run_state.check_stopping()  # an abandoned trial must not write another checkpoint
        result = dict(metrics)
        if checkpoint is not None:
            iteration = result.get("training_iteration", self._iteration + 1)
            elapsed = time.monotonic() - self._step_started
            # The result counts the time the checkpoint counts, so a trial resumed from
            # it (a pause, a retry) continues time_total_s without going back.
            result.setdefault("time_this_iter_s", elapsed)
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
        run_state.report(("result", result))

    def _persist(self, checkpoint: Checkpoint, state: dict[str, Any]) -> str:
        """Copy a reported checkpoint into the trial dir, atomically, under the next index."""
        trial_dir = self.logdir
        staged = new_staging_dir(trial_dir, self._checkpoint_index)
        copy_tree(checkpoint.path, staged)
        _write_checkpoint_state(staged, state)
        final = commit_checkpoint_dir(staged, trial_dir, self._checkpoint_index)
        upload_checkpoint(self._info.storage, final)  # remote storage: from this node
        committed = parse_checkpoint_name(os.path.basename(final))
        assert committed is not None, final
        self._checkpoint_index = committed + 1
        return final

    # ------------------------------------------------------------- lifecycle hooks
    def _load(self, path: str) -> None:
        self._loaded_checkpoint = Checkpoint(path)

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | str | None:
        raise NotImplementedError(
            "function trainables checkpoint through report(metrics, checkpoint=...)"
        )

    @property
    def finished(self) -> bool:
        # Only a function that returned hands its runner on; after an error the runner
        # is about to be killed.
        return self._returned

    def _stop_function(self) -> None:
        """Unwind the function from its suspended ``report()``, if it is suspended."""
        if self._run_state is not None:
            self._run_state.stop()
        self._run_state = None

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._stop_function()
        self._finished = False
        self._returned = False
        self._loaded_checkpoint = None
        return True

    def reset(self, new_config: dict[str, Any], trial_info: TrialInfo | None = None) -> bool:
        ok = super().reset(new_config, trial_info)
        if ok:
            self._checkpoint_index = self._info.checkpoint_index
        return ok

    def cleanup(self) -> None:
        self._stop_function()

    def interrupt(self) -> None:
        if self._run_state is not None:
            self._run_state.interrupt()
        session = getattr(self, "_session", None)  # set once the function started
        if session is not None:
            _withdraw(session)


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
    from atune.trainable._parameters import Parameters

    parameters = getattr(fn, "_atune_parameters", None)
    if not isinstance(parameters, Parameters):  # keep the holder: it pickles small
        parameters = Parameters(parameters or {})
    validate_function(fn, tuple(parameters))
    namespace: dict[str, Any] = {
        "_function": staticmethod(fn),
        "_atune_parameters": parameters,
        "__module__": __name__,
    }
    if hasattr(fn, RESOURCES_ATTR):
        namespace[RESOURCES_ATTR] = getattr(fn, RESOURCES_ATTR)
    cls_name = str(name or getattr(fn, "__name__", None) or "trainable")
    return type(cls_name, (FunctionTrainable,), namespace)


def trainable_name(cls: type[Trainable]) -> str:
    """The name trials of ``cls`` are named after (the function's or class's name)."""
    return cls.__name__


def trainable_kind(cls: type[Trainable]) -> str:
    """``"function"`` for a wrapped function, ``"class"`` for a ``Trainable`` subclass."""
    return "function" if issubclass(cls, FunctionTrainable) else "class"
