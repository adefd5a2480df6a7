"""A trainable's resource request: where it is stored and how it is read.

``with_resources`` stores the request on the trainable under :data:`RESOURCES_ATTR` (a
dict, a :class:`~atune.execution.placement_groups.PlacementGroupFactory`, or a callable
``config -> either``); a ``Trainable`` class may instead override
``default_resource_request``. This module is the one place that reads it back:
:func:`resources_for` (one trial's request) and :func:`static_resources` (whether every
trial asks for the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atune.errors import ConfigError
from atune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory

if TYPE_CHECKING:
    from atune.trainable._trainable import Trainable

__all__ = ["RESOURCES_ATTR", "resources_for", "static_resources"]

#: The attribute ``with_resources`` sets on a trainable (and ``wrap_function`` carries
#: over to the class it builds): the request as the user gave it.
RESOURCES_ATTR = "_atune_resources"


def resources_for(cls: type[Trainable], config: dict[str, Any]) -> PlacementGroupFactory:
    """The resource request of a trial of ``cls`` with ``config`` (default: 1 CPU).

    ``with_resources`` wins over ``Trainable.default_resource_request``.

    Raises:
        ConfigError: the request is neither a dict nor a ``PlacementGroupFactory``.
    """
    request: Any = getattr(cls, RESOURCES_ATTR, None)
    if request is None:
        request = cls.default_resource_request(config)
    elif callable(request) and not isinstance(request, PlacementGroupFactory):
        request = request(config)
    if request is None:
        return resource_dict_to_pg_factory(None)
    if isinstance(request, PlacementGroupFactory):
        return request
    if isinstance(request, dict):
        return resource_dict_to_pg_factory(request)
    raise ConfigError(
        f"resource request of {cls.__name__} must be a dict or a PlacementGroupFactory, "
        f"got {request!r}",
        value=request,
    )


def static_resources(cls: type[Trainable]) -> bool:
    """Whether every trial of ``cls`` asks for the same resources (no per-config callable)."""
    request = getattr(cls, RESOURCES_ATTR, None)
    return request is None or isinstance(request, (dict, PlacementGroupFactory))
