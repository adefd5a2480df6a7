"""Pausing Python's cyclic garbage collector around bulk allocation.

Reading a large experiment back (decoding its journal, replaying it into trial records)
allocates a container per event and per result: over a million for 10,000 trials. Each
burst of allocations triggers a collection, and the oldest generation's collections scan
every object made so far, so collection time grows with the square of the journal: it
was two thirds of the time of restoring a 10,000-trial experiment. The objects made there
hold no reference cycles, so collecting once afterwards loses nothing.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collection_paused"]


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; re-enable it if it was enabled.

    The switch is process-wide, so other threads allocate uncollected meanwhile too;
    reference counting still frees everything that is not in a cycle.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
