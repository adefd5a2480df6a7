"""Backends start runners; a runner is what the controller talks to for one trial.

Two backends implement the same small interface:

* :class:`~atune.execution._ray.RayBackend` (the default) hosts each runner in a Ray actor
  and awaits the actor's ``ObjectRef``\\ s;
* :class:`LocalBackend` hosts runners in this process, each trainable in a worker thread of
  its own, for fast tests and debugging without Ray.

Both host the same synchronous :class:`~atune.execution._host.TrainableHost` behind a thin
adapter (the Ray actor, :class:`~atune.execution._local.LocalRunner`), so a trainable
behaves identically under either; the conformance suite in ``tests/execution`` runs
against both.
The runner's protocol and the data it exchanges are in :mod:`atune.execution._protocol`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Hashable

import anyio

from atune.execution._local import LocalRunner
from atune.execution._protocol import Runner
from atune.execution.placement_groups import PlacementGroupFactory
from atune.trainable._trainable import Trainable

__all__ = ["Backend", "LocalBackend"]


class Backend(ABC):
    """Where runners live. One backend instance serves one ``fit()``."""

    #: Whether :meth:`capacity` can change during a run (nodes joining or leaving); the
    #: driver then re-reads it periodically, off the event loop.
    dynamic_capacity: bool = False

    @abstractmethod
    async def setup(self) -> None:
        """Connect to (or start) the execution engine."""

    @abstractmethod
    def capacity(self) -> dict[str, float]:
        """Total resources runners may use (CPU, GPU, memory, custom); may block briefly."""

    @abstractmethod
    async def prepare(self, trainable_cls: type[Trainable]) -> None:
        """Ship the trainable class once, before any runner is created."""

    @abstractmethod
    async def create_runner(self, resources: PlacementGroupFactory) -> Runner:
        """Create an idle runner holding ``resources`` (call ``start`` next)."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`setup` acquired (a Ray started by atune stays up)."""

    def can_grow(self) -> bool:
        """Whether an autoscaler adds nodes on demand (after :meth:`setup`; may block).

        A request larger than the capacity then waits for the cluster to grow instead of
        failing at once (:mod:`atune.execution._growth`). Default: False.
        """
        return False

    def request_resources(self, bundles: list[dict[str, float]]) -> None:  # noqa: B027
        """Ask the autoscaler for a cluster that holds ``bundles`` at once (may block).

        Replaces the previous request; ``[]`` withdraws it. Called only on a cluster
        that can grow (:meth:`can_grow`, or the user said so). Default: nothing.
        """

    def warm_key(self) -> Hashable | None:
        """What an idle runner must match to serve a later experiment (after :meth:`setup`).

        Runners of this backend may be kept warm between experiments
        (:mod:`atune._controller._warm`) and handed to a later experiment whose backend
        gives an equal key (and whose trainable and resources match); None (the default)
        keeps none.
        """
        return None


class LocalBackend(Backend):
    """Runs trainables in this process, one worker thread each (no Ray).

    Unlike the Ray backend, it never changes the working directory to the trial's
    directory (the working directory is shared by every thread of the process); it sets
    ``TUNE_ORIG_WORKING_DIR`` to the current directory when that is unset.

    Args:
        capacity: Resources to hand out; default: this machine's CPU count.
    """

    def __init__(self, capacity: dict[str, float] | None = None) -> None:
        self._capacity = dict(capacity or {"CPU": float(os.cpu_count() or 1)})
        self._cls: type[Trainable] | None = None

    async def setup(self) -> None:
        # Trials share this process, its threads and the caller's application, so the
        # working directory (process-wide) is never changed; the variable Ray Tune sets
        # for the original directory is set (if unset) so that code reading it still runs.
        cwd = await anyio.to_thread.run_sync(os.getcwd)  # a system call: off the loop
        os.environ.setdefault("TUNE_ORIG_WORKING_DIR", cwd)

    def capacity(self) -> dict[str, float]:
        return dict(self._capacity)

    async def prepare(self, trainable_cls: type[Trainable]) -> None:
        self._cls = trainable_cls

    async def create_runner(self, resources: PlacementGroupFactory) -> Runner:
        assert self._cls is not None, "prepare() first"
        return LocalRunner(self._cls, resources)

    def warm_key(self) -> Hashable | None:
        """Every in-process runner of this process can serve any later experiment."""
        return ("local",)
