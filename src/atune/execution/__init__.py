"""Execution: backends and runners, resource requests, and the async allocator."""

from atune.execution._allocator import Allocator, Lease, ResourceScope
from atune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory

__all__ = [
    "Allocator",
    "Lease",
    "PlacementGroupFactory",
    "ResourceScope",
    "resource_dict_to_pg_factory",
]
