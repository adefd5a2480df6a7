"""Execution: backends and runners, resource requests, and the async allocator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes

if TYPE_CHECKING:
    from atune.execution._allocator import Allocator, Lease, ResourceScope
    from atune.execution.placement_groups import (
        PlacementGroupFactory,
        resource_dict_to_pg_factory,
    )

# Imported on first use: a Ray worker hosting a trial needs none of these.
_LAZY = {
    "Allocator": "atune.execution._allocator",
    "Lease": "atune.execution._allocator",
    "ResourceScope": "atune.execution._allocator",
    "PlacementGroupFactory": "atune.execution.placement_groups",
    "resource_dict_to_pg_factory": "atune.execution.placement_groups",
}

__all__ = [
    "Allocator",
    "Lease",
    "PlacementGroupFactory",
    "ResourceScope",
    "resource_dict_to_pg_factory",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__, ("placement_groups",))
