"""The Ray backend: each runner is a Ray actor hosting a ``TrainableHost``.

The controller awaits the actor's ``ObjectRef``\\ s directly on its event loop (Ray's
object refs are awaitable), so no thread blocks on ``ray.get``. A single-bundle request
becomes plain actor options (no placement group, which is what makes Ray Tune's trial
start slow); a multi-bundle request becomes a placement group whose first bundle hosts the
actor, and child tasks and actors the trainable starts are captured into the group's
remaining bundles.

Ray is started on first use when it is not running: with this machine's CPU count, no
dashboard and quiet logs. An existing ``ray.init(...)`` or ``RAY_ADDRESS`` is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

from atune._log import get_logger
from atune._serializable import unserializable_config
from atune.errors import WorkerDiedError
from atune.execution import _exit_record as exit_record
from atune.execution._backend import Backend
from atune.execution._delivery import deliver_remote, launch_trained, same, timer_for
from atune.execution._host import TrainableHost
from atune.execution._protocol import (
    ErrorInfo,
    LaunchMode,
    LaunchOutcome,
    LaunchRequest,
    Runner,
    SaveOutcome,
    TrainBudget,
    TrainOutcome,
)
from atune.execution.placement_groups import PlacementGroupFactory
from atune.trainable._parameters import Parameters, _ray_session
from atune.trainable._session import TrialInfo
from atune.trainable._trainable import Trainable

__all__ = [
    "CHDIR_ENV",
    "ORIG_WORKING_DIR_ENV",
    "RayBackend",
    "autoscaler_running",
    "ensure_ray",
    "workdir_settings",
]

CHDIR_ENV = "RAY_CHDIR_TO_TRIAL_DIR"
ORIG_WORKING_DIR_ENV = "TUNE_ORIG_WORKING_DIR"


def workdir_settings() -> tuple[str, bool]:
    """The driver's working directory, and whether trials run in their own directory.

    Read in the driver, where a user sets ``RAY_CHDIR_TO_TRIAL_DIR`` (``"0"`` turns the
    change of directory off, as in Ray Tune), and handed to each actor.
    """
    return os.getcwd(), os.environ.get(CHDIR_ENV, "1") != "0"


_log = get_logger(__name__)
_T = TypeVar("_T")


_init_executor: ThreadPoolExecutor | None = None


async def ensure_ray_async() -> None:
    """:func:`ensure_ray` without blocking the event loop.

    Ray is initialised from one long-lived thread: Ray ties its connection to the thread
    that called ``ray.init``, so a pool thread that later exits would break it. The first
    ``import ray`` (most of a second) happens in that thread too. What cannot leave the
    loop's thread is the connection itself: Ray builds its in-process ``CoreWorker`` while
    holding the GIL, which stalls every Python thread of the process for its duration (a
    few hundred milliseconds); a service connects before it starts serving (docs/async.md).
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return
    global _init_executor
    if _init_executor is None:
        _init_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atune-ray-init")
    await asyncio.wrap_future(_init_executor.submit(ensure_ray))


def ensure_ray() -> None:
    """Connect to Ray, starting a local instance when none is running (blocking).

    In order: an existing connection; ``RAY_ADDRESS``; the cluster this machine joined with
    ``ray start`` (Ray records its address, and ``ray.init()`` finds it); else a new local
    instance with this machine's CPUs.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    try:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    except ValueError as exc:
        # ``ray.init()`` found a cluster started with ``ray start`` on this machine and
        # refuses to size it: join it as it is (nothing was started or connected yet).
        if "existing cluster" not in str(exc):
            raise
        ray.init(logging_level=logging.WARNING)


def autoscaler_running() -> bool:
    """Whether the connected Ray cluster has an autoscaler that can add nodes (blocking).

    Ray has no public call for this. Two records in Ray's GCS tell, and are read here:

    * the cluster config that autoscaler v2 (and KubeRay) reports: the cluster can grow
      when a node group's ``max_count`` exceeds its ``min_count`` or is unlimited (the
      test Ray Data makes);
    * the status that the v1 autoscaler writes every few seconds
      (``__autoscaling_status``): every head runs it, but without an autoscaling config
      it only mirrors the nodes that exist, under node types named ``node_<node id>``;
      node types of any other name come from an autoscaling config.

    Anything missing or unreadable counts as a fixed cluster; ``ATUNE_AUTOSCALING=1``
    says otherwise (:mod:`atune.execution._growth`).
    """
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:
        config = None
    if config is not None and config.node_group_configs:
        return any(
            group.max_count == -1 or group.max_count > group.min_count
            for group in config.node_group_configs
        )
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(_AUTOSCALING_STATUS_KEY)
        report = json.loads(raw).get("autoscaler_report") if raw else None
    except Exception:
        report = None
    if not isinstance(report, dict):
        return False
    types: set[str] = set()
    for key in ("active_nodes", "idle_nodes", "pending_launches"):
        types.update(report.get(key) or {})
    types.update((report.get("node_type_mapping") or {}).values())
    return any(not name.startswith(_MIRRORED_NODE_TYPE) for name in types)


# Ray's GCS key of the v1 autoscaler's status, and the prefix of the node types it makes
# up for the nodes of a cluster without an autoscaling config (a read-only mirror).
_AUTOSCALING_STATUS_KEY = "__autoscaling_status"
_MIRRORED_NODE_TYPE = "node_"


class _TrialActor:
    """The body of the Ray actor: a thin shell around a ``TrainableHost``.

    A synchronous actor (cheaper per call than an async one): every trial call runs in the
    actor's one default thread, so user code always sees the same thread; ``drain``,
    ``split`` and ``wait_started`` run in concurrency groups of their own so they can
    answer while a ``launch`` or ``train`` call is running. ``split`` is how the driver's
    timer (:func:`~atune.execution._delivery.deliver_remote`) collects the results of a
    call whose user code blocks between reports, so a process that dies then loses none
    that ``report()`` accepted.

    Working directory, as in Ray Tune: each launch makes the trial's directory the
    process's working directory (every trial of a reused actor gets its own), and
    ``TUNE_ORIG_WORKING_DIR`` holds the driver's working directory;
    ``RAY_CHDIR_TO_TRIAL_DIR=0`` in the driver's environment turns the change off. The
    change happens in the user thread at the start of a launch, before ``setup`` or
    ``reset_config`` runs (see :func:`workdir_settings`).

    It records a death of its process into the current trial's directory (see
    :mod:`atune.execution._exit_record`), and removes the records when its work for a
    trial ends without one: on ``stop``, on ``reset`` to another trial, and on an error
    that the driver answers by killing the actor.
    """

    def __init__(
        self, trainable_cls: type[Trainable], workdir: tuple[str, bool] | None = None
    ) -> None:
        import ray

        in_worker = ray.get_runtime_context().worker.mode == ray.WORKER_MODE  # not the driver
        if in_worker:
            exit_record.install()
        orig_dir, chdir = workdir or ("", False)
        if in_worker and orig_dir:
            os.environ[ORIG_WORKING_DIR_ENV] = orig_dir
        chdir = chdir and in_worker  # an actor in the driver's process never moves it

        def on_launch(info: TrialInfo) -> None:
            # The death records follow the trial: pointed at its directory by each launch.
            exit_record.watch(info.trial_dir)
            if chdir and info.trial_dir:
                os.chdir(info.trial_dir)

        self._host = TrainableHost(_resolve_parameters(trainable_cls), on_launch=on_launch)

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        outcome = self._host.launch(request)
        return _settle(outcome, ended=_launch_ended(outcome))

    def train(self, budget: TrainBudget) -> TrainOutcome:
        outcome = self._host.train(budget)
        return _settle(outcome, ended=outcome.error is not None)

    def save(self, index: int) -> SaveOutcome:
        outcome = self._host.save(index)
        return _settle(outcome, ended=outcome.error is not None)

    def stop(self) -> ErrorInfo | None:
        return _settle(self._host.stop(), ended=True)

    def drain(self) -> list[dict[str, Any]]:
        return self._host.drain()

    def split(self, trial_id: str) -> list[dict[str, Any]]:
        return self._host.split(trial_id)

    def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        return self._host.wait_started(trial_id, timeout)

    def ping(self) -> None:
        """Answer (in the control group): whether Ray can reach the actor at all."""


def _settle(outcome: _T, *, ended: bool) -> _T:
    """Pass ``outcome`` on; first remove the death records if the trial's work ended."""
    if ended:
        exit_record.unwatch()
    return outcome


def _launch_ended(outcome: LaunchOutcome) -> bool:
    """Whether the trial's work on this actor ended with the launch call."""
    trained = outcome.trained
    return (
        outcome.error is not None
        or outcome.declined
        or (trained is not None and trained.error is not None)
    )


def _put_parameters(cls: type[Trainable]) -> type[Trainable]:
    """Put the ``with_parameters`` objects into the object store, once, in the driver.

    The class keeps its :class:`Parameters` holder, which from then on pickles (with each
    actor's creation) as the references only; every actor fetches the objects by ref.
    """
    parameters = cls._atune_parameters
    if not isinstance(parameters, Parameters):
        parameters = Parameters(parameters)
        cls = type(cls.__name__, (cls,), {"_atune_parameters": parameters})
    parameters.to_object_store()
    return cls


def _resolve_parameters(cls: type[Trainable]) -> type[Trainable]:
    """In the actor: fetch the objects behind the refs (zero-copy for numpy arrays)."""
    parameters = cls._atune_parameters
    if isinstance(parameters, Parameters):
        parameters.fetch()
    return cls


_remote_actor_cls: Any = None
# How long a death Ray reports as "temporarily unavailable" is waited on for Ray's verdict
# (see ``_RayRunner._verdict``): with Ray 2.60's default health checks, a node killed
# without notice was declared dead within about 15 s in atune's tests.
_UNAVAILABLE_WAIT_S = 60.0
_UNAVAILABLE_POLL_S = 0.5
_CONTROL = "control"  # drain, split, ping: answer while a train call runs or hangs
# wait_started: blocks until a launch passes its set-up; one per trial a runner serves
# (the running one and the one queued behind it).
_NOTICE = "notice"


def _actor_class() -> Any:
    global _remote_actor_cls
    if _remote_actor_cls is None:
        import ray

        _remote_actor_cls = ray.remote(concurrency_groups={_CONTROL: 1, _NOTICE: 2})(_TrialActor)  # type: ignore[call-overload]
    return _remote_actor_cls


def _actor_options(bundle: dict[str, float]) -> dict[str, Any]:
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}
    options: dict[str, Any] = {
        "num_cpus": bundle.get("CPU", 0),
        "num_gpus": bundle.get("GPU", 0),
    }
    if bundle.get("memory"):
        options["memory"] = bundle["memory"]
    if custom:
        options["resources"] = custom
    return options


class _RayRunner:
    def __init__(self, actor: Any, resources: PlacementGroupFactory, pg: Any) -> None:
        self.resources = resources
        self._actor = actor
        self._pg = pg
        self._trial_dir: str | None = None  # where the actor records its death
        # Why the actor died, worked out once: reading its death records removes them, and
        # several calls (a launch and a start watch) can fail on the same death. Ray's
        # settled report comes with it (see ``_verdict``).
        self._death: tuple[str, str, BaseException] | None = None
        self._death_lock = anyio.Lock()
        # The trial the actor serves (its last launch that took the actor): the timer of a
        # train call splits only that trial's call.
        self._serving = ""
        # A call split by the timer, continued by the next train() (see _delivery.py), and
        # what turns its value into the TrainOutcome of its remainder.
        self._pending: tuple[asyncio.Future[Any], Callable[[Any], TrainOutcome]] | None = None

    async def _await(self, ref: Any) -> Any:
        from ray.exceptions import RayActorError

        try:
            return await ref
        except RayActorError as exc:
            async with self._death_lock:
                if self._death is None:
                    settled = await self._verdict(exc)
                    cause, fault = await anyio.to_thread.run_sync(
                        _death_cause, settled, self._trial_dir
                    )
                    self._death = cause, fault, settled
            cause, fault, settled = self._death
            raise WorkerDiedError(
                f"the worker process of this trial died: {cause}",
                error_type=f"{type(settled).__module__}.{type(settled).__qualname__}",
                error_message=str(settled),
                traceback=fault,
            ) from exc

    async def _verdict(self, exc: BaseException) -> BaseException:
        """Ray's final word on an actor it reports as only temporarily unavailable.

        Ray raises ``ActorUnavailableError`` when it lost the connection to the actor but
        has not decided yet whether the actor (or its node) is dead: a node that was just
        lost still counts as alive until Ray's health checks give up on it. A retry
        started now could be placed on that dying node and die again, and the error would
        not say that the node was lost. So the actor is asked (:meth:`_TrialActor.ping`)
        until Ray reports it dead, which names the cause (``its node has died``) and
        means Ray no longer places anything on that node; the capacity the driver reads
        next leaves the node out. An actor that answers again, or is still unavailable
        after ``_UNAVAILABLE_WAIT_S``, is given up on as unavailable (the driver kills it).
        """
        from ray.exceptions import ActorUnavailableError, RayActorError

        with anyio.move_on_after(_UNAVAILABLE_WAIT_S):
            while isinstance(exc, ActorUnavailableError):
                await anyio.sleep(_UNAVAILABLE_POLL_S)
                try:
                    await self._actor.ping.options(concurrency_group=_CONTROL).remote()
                except RayActorError as later:
                    exc = later
                else:
                    break  # reachable again: what became of the call is unknown
        return exc

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        info = request.info
        queued = request.mode is LaunchMode.QUEUED
        # Deaths are recorded in the directory of the trial the actor serves; a queued
        # launch moves there only once the runner took it.
        if not queued:
            self._trial_dir = info.trial_dir
        try:
            ref = self._actor.launch.remote(request)
        except Exception as exc:  # serialising the arguments failed: a sampled config value
            raise unserializable_config(request.config, exc) from exc
        # A queued launch waits behind another trial's call: no timer (it would find none
        # of its own to split anyway).
        timer = 0.0 if queued else timer_for(request.budget)
        call = asyncio.wrap_future(ref.future())
        value, split = await self._await(
            deliver_remote(call, timer, lambda: self._split(info.trial_id))
        )
        if split is not None:
            self._serving = info.trial_id
            self._keep_pending(call, launch_trained)
            return LaunchOutcome(trained=split)
        outcome: LaunchOutcome = value  # type: ignore[assignment]
        if not (outcome.busy or outcome.declined or outcome.error):
            self._serving = info.trial_id
        if queued and not outcome.busy:
            self._trial_dir = info.trial_dir
        return outcome

    async def _split(self, trial_id: str) -> list[dict[str, Any]]:
        ref = self._actor.split.options(concurrency_group=_CONTROL).remote(trial_id)
        return await ref  # type: ignore[no-any-return]

    def _keep_pending(
        self, call: asyncio.Future[Any], trained: Callable[[Any], TrainOutcome]
    ) -> None:
        # Its error (the actor killed with it) is read by the next train(), or by nobody
        # if the trial is let go of first: then it must not be reported as unretrieved.
        call.add_done_callback(_retrieve)
        self._pending = (call, trained)

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        pending, self._pending = self._pending, None
        if pending is not None:  # it ends at its next result: no timer needed
            call, trained = pending
            return trained(await self._await(call))
        call = asyncio.wrap_future(self._actor.train.remote(budget).future())
        trial_id = self._serving
        delivered: tuple[TrainOutcome | None, TrainOutcome | None] = await self._await(
            deliver_remote(call, timer_for(budget), lambda: self._split(trial_id))
        )
        value, split = delivered
        if split is not None:
            self._keep_pending(call, same)
            return split
        assert value is not None
        return value

    async def save(self, index: int) -> SaveOutcome:
        return await self._await(self._actor.save.remote(index))  # type: ignore[no-any-return]

    async def stop(self) -> ErrorInfo | None:
        try:
            return await self._await(self._actor.stop.remote())  # type: ignore[no-any-return]
        finally:
            await self.kill()

    async def drain(self) -> list[dict[str, Any]]:
        ref = self._actor.drain.options(concurrency_group=_CONTROL).remote()
        return await self._await(ref)  # type: ignore[no-any-return]

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        ref = self._actor.wait_started.options(concurrency_group=_NOTICE).remote(trial_id, timeout)
        return await self._await(ref)  # type: ignore[no-any-return]

    async def kill(self) -> None:
        import ray

        self._pending = None
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self._actor, no_restart=True)
        if self._pg is not None:
            ray.util.remove_placement_group(self._pg)
            self._pg = None


def _retrieve(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()


def _death_cause(exc: BaseException, trial_dir: str | None) -> tuple[str, str]:
    """Why the actor died, and faulthandler's report of a crash ("" if none).

    Blocking: reads and removes the records the actor left in ``trial_dir``, then weighs
    them against Ray's own account (see :func:`exit_record.describe_death`).
    """
    exit_text, fault_text = exit_record.collect(trial_dir)
    cause = exit_record.describe_death(
        str(exc),
        exit_record=exit_text,
        fault_record=fault_text,
        preempted=bool(getattr(exc, "preempted", False)),
    )
    return cause, fault_text


class RayBackend(Backend):
    """Hosts each trial's runner in a Ray actor (see the module docstring)."""

    dynamic_capacity = True

    def __init__(self) -> None:
        self._cls: type[Trainable] | None = None
        self._workdir: tuple[str, bool] | None = None
        self._session: Any = None

    async def setup(self) -> None:
        await ensure_ray_async()
        self._workdir = await anyio.to_thread.run_sync(workdir_settings)
        self._session = await anyio.to_thread.run_sync(_ray_session)

    def warm_key(self) -> Hashable | None:
        """The Ray session and the working-directory settings the actors were made with.

        An actor of an earlier ``ray.init`` is never handed out, nor one whose
        ``TUNE_ORIG_WORKING_DIR`` (set when it was created) is not this run's.
        """
        if self._session is None:
            return None
        return ("ray", self._session, self._workdir)

    def capacity(self) -> dict[str, float]:
        import ray

        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}

    def can_grow(self) -> bool:
        """Whether Ray's autoscaler runs with node types it can start (see
        :func:`autoscaler_running`)."""
        return autoscaler_running()

    def request_resources(self, bundles: list[dict[str, float]]) -> None:
        """``ray.autoscaler.sdk.request_resources(bundles=...)``: Ray's autoscaler keeps
        the cluster large enough for these bundles at once (``[]`` withdraws)."""
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[dict(bundle) for bundle in bundles])

    async def prepare(self, trainable_cls: type[Trainable]) -> None:
        # The class itself is small and travels inline with each actor's creation (no
        # object-store round trip); only ``with_parameters`` objects are put, once each.
        if trainable_cls._atune_parameters:
            self._cls = await anyio.to_thread.run_sync(_put_parameters, trainable_cls)
        else:
            self._cls = trainable_cls

    async def create_runner(self, resources: PlacementGroupFactory) -> Runner:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = resources.bundles
        pg = None
        options = _actor_options(bundles[0])
        if len(bundles) > 1:
            pg = await anyio.to_thread.run_sync(resources.to_placement_group)
            await pg.ready()
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg,
                placement_group_bundle_index=-1 if resources.head_bundle_is_empty else 0,
                placement_group_capture_child_tasks=True,
            )
        # Submitting an actor serialises its class and, the first time, exports it to
        # Ray's GCS: tens of milliseconds that must not stall the event loop.
        actor_cls = _actor_class().options(**options)
        actor = await anyio.to_thread.run_sync(actor_cls.remote, self._cls, self._workdir)
        return _RayRunner(actor, resources, pg)
