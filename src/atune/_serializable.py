"""Checks that what a trial's worker receives can get there: config values and trainable.

A trial's config and, on the Ray backend, the trainable itself are serialised to reach the
worker that runs the trial. Without these checks, one ``threading.Lock`` in the search
space or captured by the training function surfaced mid-``fit()`` as a raw error from deep
inside the backend. Now:

* :func:`check_param_space` runs at ``Tuner(...)``: every constant leaf of the search space
  (and every value of a ``grid_search`` or ``choice``) must go where the backend sends it:
  through Ray's ``cloudpickle`` on the Ray backend (what Ray itself uses), through
  ``copy.deepcopy`` on the in-process backend (each trial gets its own copy of the config).
  Plain numbers and strings are skipped, so the check costs nothing for the usual spaces.
* :func:`check_trainable` runs at ``Tuner(...)`` on the Ray backend only (in-process, nothing
  is serialised): the trainable must pickle; ``with_parameters`` data is not pickled here
  (it goes to Ray's object store once, at the start of ``fit()``).
* :func:`unserializable_config` names the offending key when serialising a *sampled*
  config (a ``sample_from`` result) failed at a trial's launch; that trial then fails with
  it, without retries, and the other trials go on.

Each failure is a :class:`~atune.errors.NotSerializableError` (a ``ConfigError`` and a
``TypeError``) naming the key path (``opt.k``) and the type, or for a trainable the
variables it captures that fail.
"""

from __future__ import annotations

import copy
import importlib
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal

from atune.errors import NotSerializableError

__all__ = ["check_param_space", "check_trainable", "ray_dumps", "unserializable_config"]

_PLAIN = (str, int, float, bool, bytes, type(None))
_Dumps = Callable[[Any], Any]


def ray_dumps() -> _Dumps:
    """``cloudpickle.dumps``: how Ray serialises task arguments and actor classes.

    Ray's own copy once Ray is imported; before that, the ``cloudpickle`` package that
    Ray's copy is taken from, which accepts and refuses the same objects: checking a
    ``Tuner``'s arguments must not import Ray on the caller's event loop (most of a second).
    """
    module = importlib.import_module("ray.cloudpickle" if "ray" in sys.modules else "cloudpickle")
    dumps: _Dumps = module.dumps
    return dumps


def key_path(path: tuple[Any, ...]) -> str:
    """``("opt", "layers", 0)`` -> ``"opt.layers[0]"``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config>"


def _leaves(node: Any, path: tuple[Any, ...], *, space: bool) -> Iterator[tuple[Any, Any]]:
    """``(path, value)`` of the leaves to check: not plain, not a domain that samples.

    In a search space (``space=True``) a grid's or a choice's values are leaves (they end
    up in configs as they are); other domains produce numbers, and ``sample_from``
    functions run in the driver, so both are skipped.
    """
    if isinstance(node, _PLAIN):
        return
    if space:
        from atune.search._domain import Categorical, Domain

        if isinstance(node, Domain):
            if isinstance(node, Categorical):
                for value in node.categories:
                    yield from _leaves(value, path, space=True)
            return
        if isinstance(node, dict) and len(node) == 1 and "grid_search" in node:
            for value in node["grid_search"]:
                yield from _leaves(value, path, space=True)
            return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key), space=space)
    elif type(node) in (list, tuple):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index), space=space)
    else:
        yield path, node


def _failure(value: Any, path: tuple[Any, ...], how: str, exc: Exception) -> NotSerializableError:
    kind = type(value)
    return NotSerializableError(
        f"the config value at {key_path(path)!r} ({kind.__module__}.{kind.__qualname__}) "
        f"cannot be {how}: {type(exc).__name__}: {exc}. Create such objects inside the "
        "trainable (or pass them with tune.with_parameters) instead of in param_space",
        value=value,
    )


def check_param_space(space: dict[str, Any], *, backend: Literal["ray", "local"]) -> None:
    """Check that the constant values of ``space`` reach a trial on ``backend``.

    Raises:
        NotSerializableError: A value cannot be serialised (Ray) or copied (in-process);
            the message names its key path and type.
    """
    leaves = list(_leaves(space, (), space=True))
    if not leaves:
        return
    if backend == "ray":
        dumps, how = ray_dumps(), "serialised with Ray's cloudpickle to reach the trial's worker"
    else:
        dumps, how = copy.deepcopy, "copied into each trial's config (copy.deepcopy)"
    for path, value in leaves:
        try:
            dumps(value)
        except Exception as exc:
            raise _failure(value, path, how, exc) from exc


def unserializable_config(config: dict[str, Any], cause: BaseException) -> BaseException:
    """The error to raise when serialising ``config`` for a Ray worker failed with ``cause``.

    Finds the first leaf that does not serialise on its own and names it; if every leaf
    does (the failure lies elsewhere), ``cause`` itself is returned.
    """
    dumps = ray_dumps()
    for path, value in _leaves(config, (), space=False):
        try:
            dumps(value)
        except Exception as exc:
            how = "serialised with Ray's cloudpickle to reach the trial's worker"
            error = _failure(value, path, how, exc)
            error.value = None  # the trial's error is pickled back to the caller: keep it small
            return error
    return cause


def _shipped_code(cls: type) -> Any:
    """What of a trainable class is code: the user's function, or the user's class.

    ``with_parameters`` data, held on a wrapper class, is left out (it is put in Ray's
    object store separately, once).
    """
    function = cls.__dict__.get("_function")
    if isinstance(function, staticmethod):
        return function.__func__
    target = cls
    while target.__dict__.get("_atune_parameters") and len(target.__mro__) > 1:
        target = target.__mro__[1]
    return target


def check_trainable(trainable_cls: type) -> None:
    """Check that the trainable pickles as the Ray backend ships it to every worker.

    Raises:
        NotSerializableError: It does not; the message holds
            :func:`atune.utils.diagnose_serialization`'s report of the captured variables
            that fail.
    """
    from atune.utils import diagnose_serialization

    code = _shipped_code(trainable_cls)
    try:
        ray_dumps()(code)
    except Exception as exc:
        report = io.StringIO()
        diagnose_serialization(code, print_file=report)
        name = getattr(code, "__qualname__", repr(code))
        raise NotSerializableError(
            f"the trainable {name!r} was found to be non-serializable: the Ray backend "
            f"sends it to each trial's worker with cloudpickle, which failed with "
            f"{type(exc).__name__}: {exc}\n"
            f"atune.utils.diagnose_serialization says:\n{report.getvalue()}",
            value=code,
        ) from exc
