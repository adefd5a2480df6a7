"""``with_parameters`` and ``with_resources``: attach data and resource requests to trainables.

Both return a new trainable and leave the original untouched. They compose in either order.

``with_parameters(trainable, **kwargs)`` hands large objects to every trial without
pickling them per trial: the wrapper holds them in a
:class:`~atune.trainable._parameters.Parameters` mapping, which pickles as a small handle
(references into the Ray object store while Ray is initialised, else a reference to the
objects in this process). With the Ray backend each object is put into the object store
once (when ``fit()`` starts, or at the wrapper's first pickle with Ray running), and every
trial's actor fetches it from there (numpy arrays are read zero-copy from shared memory);
the in-process backend hands the trials the objects themselves. Functions receive the objects as keyword
arguments (``fn(config, **kwargs)``); classes receive them in ``setup(config, **kwargs)``.

``with_resources(trainable, resources)`` sets the resource request per trial: a dict
(``{"CPU": 2, "GPU": 1, "memory": 2**30, "custom": 1}``; ``cpu``/``gpu`` also accepted), a
:class:`~atune.execution.placement_groups.PlacementGroupFactory`, or a callable
``config -> dict | PlacementGroupFactory``.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, TypeVar

from atune.errors import ConfigError
from atune.execution._request import RESOURCES_ATTR
from atune.trainable._function import validate_function
from atune.trainable._parameters import Parameters
from atune.trainable._trainable import Trainable

__all__ = ["PARAMETERS_ATTR", "RESOURCES_ATTR", "with_parameters", "with_resources"]

PARAMETERS_ATTR = "_atune_parameters"

T = TypeVar("T")


def _is_trainable_class(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, Trainable)


def _copy_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` that can carry its own attributes (the original stays untouched).

    Plain functions are copied with their code object, so a generator or ``async def``
    function stays one; other callables are wrapped.
    """
    if isinstance(fn, types.FunctionType):
        copy = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
        )
        copy.__kwdefaults__ = fn.__kwdefaults__
        copy.__dict__.update(fn.__dict__)
        functools.update_wrapper(copy, fn, updated=())
        del copy.__wrapped__  # type: ignore[attr-defined]
        return copy

    @functools.wraps(fn)
    def wrapper(config: dict[str, Any], **kwargs: Any) -> Any:
        return fn(config, **kwargs)

    return wrapper


def with_parameters(trainable: T, **kwargs: Any) -> T:
    """A trainable that receives ``kwargs`` in every trial (see the module docstring).

    Args:
        trainable: A function ``fn(config, **kwargs)`` or a ``Trainable`` subclass whose
            ``setup(config, **kwargs)`` accepts them.
        **kwargs: The objects to hand to every trial.

    Raises:
        ConfigError: ``trainable`` is neither a function nor a ``Trainable`` subclass, or
            cannot accept the given keyword arguments.
    """
    if _is_trainable_class(trainable):
        cls: Any = trainable
        validate_function(cls.setup.__get__(object.__new__(cls)), tuple(kwargs))
        params = Parameters({**getattr(cls, PARAMETERS_ATTR, {}), **kwargs})
        return type(cls.__name__, (cls,), {PARAMETERS_ATTR: params, "__module__": cls.__module__})  # type: ignore[return-value]
    if callable(trainable) and not inspect.isclass(trainable):
        params = Parameters({**getattr(trainable, PARAMETERS_ATTR, {}), **kwargs})
        validate_function(trainable, tuple(params))
        wrapper = _copy_function(trainable)
        setattr(wrapper, PARAMETERS_ATTR, params)
        return wrapper  # type: ignore[return-value]
    raise ConfigError(
        f"with_parameters() takes a function or a Trainable subclass, got {trainable!r}",
        value=trainable,
    )


def with_resources(trainable: T, resources: Any) -> T:
    """A trainable whose trials request ``resources`` (see the module docstring).

    Raises:
        ConfigError: ``trainable`` is neither a function nor a ``Trainable`` subclass, or
            ``resources`` is not a dict, a ``PlacementGroupFactory`` or a callable.
    """
    from atune.execution.placement_groups import PlacementGroupFactory

    if not (isinstance(resources, (dict, PlacementGroupFactory)) or callable(resources)):
        raise ConfigError(
            "with_resources() takes a dict, a PlacementGroupFactory or a callable "
            f"config -> resources, got {resources!r}",
            value=resources,
        )
    if isinstance(resources, dict):
        from atune.execution.placement_groups import resource_dict_to_pg_factory

        resource_dict_to_pg_factory(resources)  # validate now, at the call site
    if _is_trainable_class(trainable):
        cls: Any = trainable
        return type(cls.__name__, (cls,), {RESOURCES_ATTR: resources, "__module__": cls.__module__})  # type: ignore[return-value]
    if callable(trainable) and not inspect.isclass(trainable):
        wrapper = _copy_function(trainable)
        setattr(wrapper, RESOURCES_ATTR, resources)
        return wrapper  # type: ignore[return-value]
    raise ConfigError(
        f"with_resources() takes a function or a Trainable subclass, got {trainable!r}",
        value=trainable,
    )
