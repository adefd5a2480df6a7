"""Execution: backends and runners, resource requests, and the async allocator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes

# The public names, once (see atune._lazy): imported on first use, since a Ray worker
# hosting a trial needs none of these.
if TYPE_CHECKING:
    from atune.execution._allocator import (
        Allocator as Allocator,
        Lease as Lease,
        ResourceScope as ResourceScope,
    )
    from atune.execution.placement_groups import (
        PlacementGroupFactory as PlacementGroupFactory,
        resource_dict_to_pg_factory as resource_dict_to_pg_factory,
    )

__getattr__, __dir__, __all__ = lazy_attributes(__name__, ("placement_groups",))
