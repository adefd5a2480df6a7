"""Clusters that grow on demand: when to wait for nodes, for how long, and asking for them.

On a fixed cluster, a request larger than the cluster's total capacity can never be
served and fails at once (:class:`~atune.errors.InfeasibleResourcesError`). When an
autoscaler can add nodes, such a request is instead *pending*: it waits in the
allocator's queue (:meth:`~atune.execution._allocator.Allocator.set_growth`), and what
the waiting requests ask for is passed on to the autoscaler as demand
(:func:`follow_demand`), until the nodes join or the request's timeout expires.

Three settings, read when ``fit()`` starts:

* ``ATUNE_AUTOSCALING``: ``auto`` (the default) asks the backend whether an autoscaler
  runs (:meth:`~atune.execution._backend.Backend.can_grow`); ``1``/``true`` says the
  cluster can grow (an autoscaler atune does not detect, one that watches Ray's pending
  demand); ``0``/``false`` treats it as fixed.
* ``ATUNE_PENDING_RESOURCES_TIMEOUT_S``: how long a request larger than the cluster
  waits for it to grow before its trial fails with
  :class:`~atune.errors.PendingResourcesTimeoutError` (default 600 s, ``inf``: no
  limit). Cloud nodes take minutes to start; a request no node type offers fails
  only after this long.
* ``TUNE_MAX_PENDING_TRIALS_PG`` (Ray Tune's variable, same meaning): how many trials
  beyond what fits may be live at once, waiting for the cluster to grow. ``auto`` (the
  default), as in Ray Tune: 200 for the default random/grid search, whose trials do
  not depend on each other's results; for a searcher, its ``ConcurrencyLimiter``'s
  limit if it has one, else 1 (a searcher suggests better configurations from results,
  so it is asked for few at a time).
"""

from __future__ import annotations

import os

import anyio

from atune._env import env_number
from atune._log import get_logger
from atune.errors import ConfigError
from atune.execution._allocator import Allocator
from atune.execution._backend import Backend
from atune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm

__all__ = [
    "AUTOSCALING_ENV",
    "DEFAULT_PENDING_TIMEOUT_S",
    "MAX_PENDING_TRIALS_ENV",
    "PENDING_TIMEOUT_ENV",
    "autoscaling_setting",
    "follow_demand",
    "max_pending_trials",
    "pending_timeout_s",
    "withdraw_demand",
]

_log = get_logger(__name__)

AUTOSCALING_ENV = "ATUNE_AUTOSCALING"
"""Environment variable: ``auto`` (default), ``1``/``true`` or ``0``/``false``."""

PENDING_TIMEOUT_ENV = "ATUNE_PENDING_RESOURCES_TIMEOUT_S"
"""Environment variable: seconds a request beyond the cluster waits for it to grow."""

DEFAULT_PENDING_TIMEOUT_S = 600.0
"""The pending-resources timeout when ``ATUNE_PENDING_RESOURCES_TIMEOUT_S`` is unset."""

MAX_PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"
"""Environment variable (Ray Tune's): trials that may wait for a growing cluster."""

_AUTO_PENDING_TRIALS = 200  # Ray Tune's floor for the default search on a growing cluster
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# How long the last publication of the demand (when an experiment ends) may take.
_FINAL_PUBLISH_S = 10.0


def autoscaling_setting() -> bool | None:
    """``ATUNE_AUTOSCALING``: True or False as the user says, None to detect (``auto``).

    Raises:
        ConfigError: The variable is set to something else.
    """
    raw = os.environ.get(AUTOSCALING_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(
        f"{AUTOSCALING_ENV} must be 'auto', '1'/'true' or '0'/'false', got {raw!r}", value=raw
    )


def pending_timeout_s() -> float:
    """``ATUNE_PENDING_RESOURCES_TIMEOUT_S``: seconds > 0, ``inf`` for no limit.

    Raises:
        ConfigError: The variable is set to something other than a number > 0.
    """
    return env_number(
        PENDING_TIMEOUT_ENV,
        DEFAULT_PENDING_TIMEOUT_S,
        float,
        lambda v: v > 0,
        "a number of seconds > 0 (or inf)",
    )


def max_pending_trials(search: SearchAlgorithm) -> int:
    """``TUNE_MAX_PENDING_TRIALS_PG``: trials that may wait for a growing cluster.

    Args:
        search: The experiment's search algorithm (decides the ``auto`` value).

    Raises:
        ConfigError: The variable is set to something other than ``auto`` or an int >= 0.
    """
    if os.environ.get(MAX_PENDING_TRIALS_ENV, "").strip() not in ("", "auto"):
        return env_number(
            MAX_PENDING_TRIALS_ENV, 0, int, lambda v: v >= 0, "'auto' or a whole number >= 0"
        )
    if isinstance(search, BasicVariantGenerator):
        return _AUTO_PENDING_TRIALS
    searcher = getattr(search, "searcher", None)
    while searcher is not None:  # SearchGenerator -> ConcurrencyLimiter -> ...
        if isinstance(searcher, ConcurrencyLimiter):
            return searcher.max_concurrent
        searcher = getattr(searcher, "searcher", None)
    return 1


async def follow_demand(allocator: Allocator, backend: Backend) -> None:
    """Pass the allocator's demand on to the backend's autoscaler, until cancelled.

    Each time the demand changes (:meth:`Allocator.demand_changed`) it is published
    (:meth:`Backend.request_resources`, in a worker thread): one publication at a time,
    of the latest demand. A failed publication is logged, and the next change tries
    again: the demand is a hint to the autoscaler, and the run goes on without it.
    Runs in the driver's task group, on a cluster that can grow only.
    """
    published: list[dict[str, float]] | None = None
    while True:
        changed = allocator.demand_changed()  # taken before publishing: no change lost
        demand = allocator.demand()
        if demand != published:
            try:
                await anyio.to_thread.run_sync(backend.request_resources, demand)
            except Exception as exc:
                _log.warning("could not publish the resource demand", error=str(exc))
            else:
                published = demand
                _log.debug("resource demand published", bundles=len(demand))
        await changed.wait()


async def withdraw_demand(allocator: Allocator, backend: Backend) -> None:
    """Publish the demand once more as an experiment ends (shielded, with a deadline).

    What the experiment asked for is withdrawn; the requests of an experiment still
    running on the same allocator stay in it. Does nothing on a fixed cluster.
    """
    if allocator.pending_timeout_s is None:
        return
    with anyio.move_on_after(_FINAL_PUBLISH_S, shield=True):
        try:
            await anyio.to_thread.run_sync(backend.request_resources, allocator.demand())
        except Exception as exc:  # the cluster may be gone already
            _log.warning("could not withdraw the resource demand", error=str(exc))
