"""Assemble one experiment (backend, allocator, search, core, driver) and run it."""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import weakref
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import anyio

from atune._controller._clock import Clock, VirtualClock, WallClock
from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._driver import Driver
from atune._controller._metric_check import required_metrics, strict_metric_checking
from atune._controller._policy import execution_defaults
from atune._controller._pool import RunnerPool
from atune._controller._restore import RestorePlan, reconcile_disk, replay
from atune._controller._retention import rank_checkpoints
from atune._controller._warm import WarmPlace, WarmRunners, idle_timeout_s, trainable_identity
from atune._env import env_number
from atune._gc import collection_paused
from atune._log import get_logger
from atune._progress import ProgressReporter
from atune._signing import load_or_create_key
from atune._trial import Trial
from atune.callback import Callback
from atune.config import CheckpointConfig, RunConfig, TuneConfig
from atune.errors import ConfigError, TrialError, WorkerDiedError
from atune.execution._allocator import Allocator
from atune.execution._backend import Backend, LocalBackend
from atune.execution._growth import (
    autoscaling_setting,
    max_pending_trials,
    pending_timeout_s,
    withdraw_demand,
)
from atune.execution._protocol import ErrorInfo
from atune.execution._request import resources_for, static_resources
from atune.execution._resources import normalize_resources, to_units
from atune.result import Result, ResultGrid
from atune.schedulers import FIFOScheduler, TrialScheduler
from atune.search import BasicVariantGenerator, SearchAlgorithm, Searcher, SearchGenerator
from atune.stopper import make_stopper
from atune.storage._writer import ExperimentWriter
from atune.trainable._function import FunctionTrainable, trainable_name
from atune.trainable._trainable import Trainable

if TYPE_CHECKING:
    from atune.simulator import Simulator
    from atune.storage._remote import RemoteRun, RemoteStorage

__all__ = [
    "build_result_grid",
    "rebuild_error",
    "run_experiment",
]

_log = get_logger(__name__)
# A simulation flushes its journal (and snapshots the searcher's and scheduler's state)
# every ten virtual minutes, not every half second: a flush is a worker-thread round trip,
# and a study of simulated hours would otherwise spend its time on them.
_SIMULATED_FLUSH_INTERVAL_S = 600.0

# One allocator per event loop and backend kind, shared by every experiment on that loop,
# so two concurrent ``await tuner.fit()`` never oversubscribe the cluster.
_allocators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Allocator]] = (
    weakref.WeakKeyDictionary()
)


# The idle runners kept warm between experiments, one per loop and backend kind, beside
# that loop's shared allocator (``_controller/_warm.py``).
_warm: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, WarmRunners]] = (
    weakref.WeakKeyDictionary()
)


async def _shared_warm_runners(kind: str, allocator: Allocator) -> WarmRunners:
    loop = asyncio.get_running_loop()
    per_loop = _warm.setdefault(loop, {})
    warm = per_loop.get(kind)
    if warm is None:
        warm = per_loop[kind] = await WarmRunners.open(allocator)
    return warm


def _shared_allocator(
    kind: str, capacity: dict[str, float], pending_timeout: float | None
) -> Allocator:
    loop = asyncio.get_running_loop()
    per_loop = _allocators.setdefault(loop, {})
    allocator = per_loop.get(kind)
    if allocator is None:
        allocator = per_loop[kind] = Allocator(capacity)
    else:
        allocator.update_capacity(capacity)
    allocator.set_growth(pending_timeout)
    return allocator


async def _growth_timeout(backend: Backend) -> float | None:
    """The pending-resources timeout if the cluster can grow, else None (fixed).

    ``ATUNE_AUTOSCALING`` decides, or, when it is unset (``auto``), the backend's
    :meth:`~Backend.can_grow`. A backend whose capacity never changes (the local one)
    is fixed whatever the setting.
    """
    setting = autoscaling_setting()
    timeout = pending_timeout_s()  # checked even when unused: a bad value fails early
    if not backend.dynamic_capacity or setting is False:
        return None
    if setting is None and not await anyio.to_thread.run_sync(backend.can_grow):
        return None
    return timeout


async def _make_backend(tune_config: TuneConfig) -> Backend:
    if tune_config.backend == "local":
        return LocalBackend()
    # Imported in a worker thread: the Ray backend's modules are not loaded before the
    # first Ray experiment, and the event loop may be serving others meanwhile.
    ray_backend = await anyio.to_thread.run_sync(importlib.import_module, "atune.execution._ray")
    backend: Backend = ray_backend.RayBackend()
    return backend


def _search_algorithm(tune_config: TuneConfig, seed: int | None = None) -> SearchAlgorithm:
    alg = tune_config.search_alg
    if alg is None:
        # max_concurrent_trials is enforced by the controller and the allocator; the
        # generator itself need not limit (so a next trial can be queued on a runner).
        return BasicVariantGenerator(random_state=seed)
    if isinstance(alg, SearchAlgorithm):
        return alg
    if isinstance(alg, Searcher):
        return SearchGenerator(alg)
    raise ConfigError(
        f"TuneConfig.search_alg must be a Searcher or a search algorithm, got {alg!r}",
        value=alg,
    )


def _scheduler(tune_config: TuneConfig) -> TrialScheduler:
    scheduler = tune_config.scheduler or FIFOScheduler()
    if not isinstance(scheduler, TrialScheduler):
        raise ConfigError(
            f"TuneConfig.scheduler must be a TrialScheduler, got {scheduler!r}", value=scheduler
        )
    if not scheduler.set_search_properties(tune_config.metric, tune_config.mode):
        name = type(scheduler).__name__
        clashes = [
            f"{key} is set both on {name} ({key}={mine!r}) and on TuneConfig ({key}={theirs!r})"
            for key, mine, theirs in (
                ("metric", scheduler.metric, tune_config.metric),
                ("mode", scheduler.mode, tune_config.mode),
            )
            if mine is not None and theirs is not None and mine != theirs
        ] or [
            f"{name}'s metric/mode ({scheduler.metric!r}/{scheduler.mode!r}) conflict with "
            f"TuneConfig ({tune_config.metric!r}/{tune_config.mode!r})"
        ]
        raise ConfigError(
            "; ".join(clashes) + "; set it in one place",
            value=tune_config.metric
            if scheduler.metric != tune_config.metric
            else tune_config.mode,
        )
    if scheduler.requires_metric and (scheduler.metric is None or scheduler.mode is None):
        missing = " and ".join(
            name
            for name, v in (("metric", scheduler.metric), ("mode", scheduler.mode))
            if v is None
        )
        raise ConfigError(
            f"{type(scheduler).__name__} has no {missing} (metric={scheduler.metric!r}, "
            f"mode={scheduler.mode!r}): set {missing} on the scheduler or in TuneConfig"
        )
    return scheduler


def _restore_retries() -> int:
    """``TUNE_RESTORE_RETRY_NUM``: failed restores a trial retries uncounted (default 0).

    As in Ray Tune: while a trial's failed checkpoint restores number fewer than this,
    each is retried (from the same checkpoint) without counting against
    ``FailureConfig.max_failures``; later ones count as failures.

    Raises:
        ConfigError: the variable is set to something other than a whole number >= 0.
    """
    return env_number("TUNE_RESTORE_RETRY_NUM", 0, int, lambda v: v >= 0, "a whole number >= 0")


async def run_experiment(
    trainable_cls: type[Trainable],
    param_space: dict[str, Any],
    tune_config: TuneConfig,
    run_config: RunConfig,
    *,
    experiment_path: Path,
    uid: str,
    restore: RestorePlan | None = None,
    observers: Sequence[Callback] = (),
    simulator: Simulator | None = None,
    remote: RemoteRun | None = None,
) -> ResultGrid:
    """Run a new experiment, or continue a restored one, to completion.

    ``experiment_path`` was claimed (and described in ``experiment.json``) by the
    ``Tuner``, which holds its lock for the duration of this call. ``observers`` are
    callbacks that are not the user's (a run handle's event sink): they follow the user's
    callbacks, and their states are not journaled. With a ``simulator``, trials are
    answered by its simulated backend on a virtual clock (:mod:`atune.simulator`).
    With ``remote`` (remote storage), ``experiment_path`` is the driver's local mirror,
    uploaded as the run goes, and runners work in their nodes' scratch.
    """
    if simulator is None:
        return await _run_experiment(
            trainable_cls,
            param_space,
            tune_config,
            run_config,
            experiment_path=experiment_path,
            uid=uid,
            restore=restore,
            observers=observers,
            backend=await _make_backend(tune_config),
            allocator=None,
            clock=WallClock(),
            remote=remote,
        )
    from atune.execution._simulated import SimulatedBackend

    async with VirtualClock(epoch=simulator.epoch) as clock:
        backend = SimulatedBackend(simulator, clock)
        return await _run_experiment(
            trainable_cls,
            param_space,
            tune_config,
            run_config,
            experiment_path=experiment_path,
            uid=uid,
            restore=restore,
            observers=observers,
            backend=backend,
            allocator=Allocator(backend.capacity()),  # virtual: shared with no one
            clock=clock,
            seed=simulator.seed,
            flush_interval_s=_SIMULATED_FLUSH_INTERVAL_S,
            remote=remote,
        )


async def _run_experiment(
    trainable_cls: type[Trainable],
    param_space: dict[str, Any],
    tune_config: TuneConfig,
    run_config: RunConfig,
    *,
    experiment_path: Path,
    uid: str,
    restore: RestorePlan | None,
    observers: Sequence[Callback],
    backend: Backend,
    allocator: Allocator | None,
    clock: Clock,
    seed: int | None = None,
    flush_interval_s: float | None = None,
    remote: RemoteRun | None = None,
) -> ResultGrid:
    """:func:`run_experiment` on ``backend`` and ``clock`` (the shared allocator if None)."""
    search = _search_algorithm(tune_config, seed)
    search.set_search_properties(
        tune_config.metric, tune_config.mode, param_space, tune_config.num_samples
    )
    scheduler = _scheduler(tune_config)
    stopper = make_stopper(run_config.stop)
    is_function = issubclass(trainable_cls, FunctionTrainable)
    checkpoint_config = run_config.checkpoint_config

    warm_timeout_s = idle_timeout_s() if allocator is None else 0.0  # checked before Ray
    await backend.setup()
    capacity = await anyio.to_thread.run_sync(backend.capacity)
    warm: WarmPlace | None = None
    if allocator is None:
        growth = await _growth_timeout(backend)
        allocator = _shared_allocator(tune_config.backend, capacity, growth)
        backend_key = backend.warm_key()
        if backend_key is not None:
            warm = WarmPlace(
                await _shared_warm_runners(tune_config.backend, allocator),
                (backend_key, trainable_identity(trainable_cls)),
                warm_timeout_s,
            )
    scope = allocator.scope(max_concurrent=tune_config.max_concurrent_trials)
    await backend.prepare(trainable_cls)

    try:
        trial_request = resources_for(trainable_cls, {}).required_resources
    except Exception:  # a callable request that needs a real config: count 1 CPU
        trial_request = {"CPU": 1.0}
    request_units = to_units(trial_request)
    pending_trials = 0 if allocator.pending_timeout_s is None else max_pending_trials(search)
    defaults = execution_defaults(
        is_function=is_function,
        reuse_actors=tune_config.reuse_actors,
        checkpoint_at_end=checkpoint_config.checkpoint_at_end,
        static_resources=static_resources(trainable_cls),
        capacity=to_units(normalize_resources(capacity)),
        trial_request=request_units,
        max_concurrent=tune_config.max_concurrent_trials,
        pending_trials=pending_trials,
    )

    signing_key = await anyio.to_thread.run_sync(load_or_create_key)
    policy = CorePolicy(
        experiment_path=str(experiment_path),
        trainable_name=trainable_name(trainable_cls),
        is_function=is_function,
        resources_for=lambda config: resources_for(trainable_cls, config),
        max_live_trials=defaults.max_live_trials,
        max_failures=run_config.failure_config.max_failures,
        fail_fast=run_config.failure_config.fail_fast,
        checkpoint_frequency=checkpoint_config.checkpoint_frequency,
        checkpoint_at_end=defaults.checkpoint_at_end,
        pipeline=defaults.pipeline,
        num_to_keep=checkpoint_config.num_to_keep,
        checkpoint_score_attribute=checkpoint_config.checkpoint_score_attribute,
        checkpoint_score_order=checkpoint_config.checkpoint_score_order,
        uid=uid,
        required_metrics=required_metrics(tune_config.metric, scheduler, search),
        strict_metric_checking=strict_metric_checking(),
        trial_name_creator=tune_config.trial_name_creator,
        trial_dirname_creator=tune_config.trial_dirname_creator,
        restore_retries=_restore_retries(),
        trial_request=request_units,
        max_concurrent_trials=tune_config.max_concurrent_trials,
        pending_trials=pending_trials,
    )
    core = ControllerCore(policy, search, scheduler=scheduler, stopper=stopper)
    if restore is not None:
        replay(core, restore)
        await anyio.to_thread.run_sync(reconcile_disk, core, restore.events, restore.snapshot)
    driver = Driver(
        core,
        RunnerPool(backend, scope, reuse=defaults.reuse, warm=warm),
        ExperimentWriter(str(experiment_path), sync=None if remote is None else remote.sync),
        experiment_name=(
            experiment_path.name if remote is None else PurePosixPath(remote.sync.storage.path).name
        ),
        callbacks=_callbacks(run_config, tune_config, observers),
        num_user_callbacks=len(run_config.callbacks or ()),
        time_budget_s=tune_config.time_budget_s,  # type: ignore[arg-type]
        resumed=restore is not None,
        signing_key=signing_key,
        clock=clock,
        trial_storage=None if remote is None else remote.trials,
        **({} if flush_interval_s is None else {"flush_interval_s": flush_interval_s}),
    )
    if restore is not None:
        await driver.dispatch.restore(restore.events)
    await driver.dispatch.setup(
        stop=run_config.stop,
        num_samples=tune_config.num_samples,
        total_num_samples=search.total_samples,
        time_budget_s=tune_config.time_budget_s,
    )
    try:
        await driver.run()
    finally:
        await withdraw_demand(allocator, backend)
        await backend.shutdown()
    if core.fatal_error is not None:
        raise rebuild_error(core.fatal_error, "")
    storage = None if remote is None else remote.sync.storage
    return build_result_grid(
        list(core.get_trials()),
        str(experiment_path) if storage is None else storage.uri,
        tune_config,
        run_config.checkpoint_config,
        storage=storage,
    )


def _callbacks(
    run_config: RunConfig, tune_config: TuneConfig, observers: Sequence[Callback] = ()
) -> list[Callback]:
    """The user's callbacks, the observers, then the progress display unless ``verbose=0``."""
    callbacks = [*(run_config.callbacks or ()), *observers]
    verbose = 1 if run_config.verbose is None else run_config.verbose
    if verbose >= 1:
        callbacks.append(
            ProgressReporter(
                verbose,
                metric=tune_config.metric,
                mode=tune_config.mode,
                reporter=run_config.progress_reporter,
            )
        )
    return callbacks


def rebuild_error(info: ErrorInfo, trial_id: str) -> BaseException:
    """The original exception of a failed trial when it can be rebuilt, else a TrialError."""
    if info.payload is not None:
        try:
            exc = pickle.loads(info.payload)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            note = f"atune: trial {trial_id} failed; remote traceback:\n{info.traceback}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
            return exc
    cls = WorkerDiedError if info.type_name.endswith("WorkerDiedError") else TrialError
    return cls(
        f"trial {trial_id} failed with {info.type_name}: {info.message}",
        trial_id=trial_id,
        error_type=info.type_name,
        error_message=info.message,
        traceback=info.traceback,
    )


def build_result_grid(
    trials: list[Trial],
    experiment_path: str,
    tune_config: TuneConfig,
    checkpoint_config: CheckpointConfig,
    *,
    storage: RemoteStorage | None = None,
) -> ResultGrid:
    """The ``ResultGrid`` of the given trials.

    With ``storage`` (an experiment on remote storage), the results' checkpoints are
    :class:`~atune.storage._stored_checkpoint.StoredCheckpoint` objects in it.
    """
    with collection_paused():  # one Result per trial: no cycles, many allocations
        return _build_result_grid(trials, experiment_path, tune_config, checkpoint_config, storage)


def _build_result_grid(
    trials: list[Trial],
    experiment_path: str,
    tune_config: TuneConfig,
    checkpoint_config: CheckpointConfig,
    storage: RemoteStorage | None,
) -> ResultGrid:
    results = []
    for trial in trials:
        metrics: dict[str, Any] = dict(trial.last_result)
        if metrics:
            metrics["experiment_tag"] = trial.experiment_tag
        error = None
        if trial.error is not None:
            error = rebuild_error(trial.error, trial.trial_id)
        ranked = rank_checkpoints(
            trial.checkpoints,
            checkpoint_config.checkpoint_score_attribute,
            checkpoint_config.checkpoint_score_order,
        )
        # Ray Tune's order: worst first, best last (oldest first without a score attribute).
        best = [
            (_checkpoint(trial, record.dir_name, storage), record.metrics)
            for record in reversed(ranked)
        ]
        latest = trial.checkpoints[-1].dir_name if trial.checkpoints else None
        result = Result(
            metrics=metrics,
            checkpoint=None if latest is None else _checkpoint(trial, latest, storage),
            error=error,
            path=trial.path,
            best_checkpoints=best,
        )
        result._row_limit = trial.num_results  # one row per journaled ResultReported
        results.append(result)
    return ResultGrid(
        results,
        experiment_path=experiment_path,
        metric=tune_config.metric,
        mode=tune_config.mode,
        statuses=[t.status for t in trials],
    )


def _checkpoint(trial: Trial, dir_name: str, storage: RemoteStorage | None) -> Any:
    if storage is not None:
        from atune.storage._stored_checkpoint import StoredCheckpoint

        return StoredCheckpoint(storage.child(trial.dirname, dir_name))
    from atune.trainable._checkpoint import Checkpoint

    return Checkpoint(os.path.join(trial.path, dir_name))
