"""Assemble one experiment (backend, allocator, search, core, driver) and run it."""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import uuid
import weakref
from pathlib import Path
from typing import Any

import anyio
import structlog

from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._driver import Driver
from atune._controller._pool import RunnerPool
from atune._trial import Trial
from atune.config import RunConfig, TuneConfig
from atune.errors import ConfigError, TrialError, WorkerDiedError
from atune.execution._allocator import Allocator
from atune.execution._backend import Backend, LocalBackend
from atune.execution._host import ErrorInfo
from atune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory
from atune.result import Result, ResultGrid
from atune.schedulers import FIFOScheduler, TrialScheduler
from atune.search import BasicVariantGenerator, SearchAlgorithm, Searcher, SearchGenerator
from atune.stopper import make_stopper
from atune.storage._writer import ExperimentWriter
from atune.trainable._function import FunctionTrainable
from atune.trainable._trainable import Trainable

__all__ = ["rebuild_error", "resources_for", "run_experiment", "trainable_name"]

_log = structlog.get_logger(__name__)

# One allocator per event loop and backend kind, shared by every experiment on that loop,
# so two concurrent ``await tuner.fit()`` never oversubscribe the cluster.
_allocators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Allocator]] = (
    weakref.WeakKeyDictionary()
)


def trainable_name(cls: type[Trainable]) -> str:
    """The name trials of ``cls`` are named after (the function's or class's name)."""
    return cls.__name__


def resources_for(cls: type[Trainable], config: dict[str, Any]) -> PlacementGroupFactory:
    """The resource request of a trial of ``cls`` with ``config`` (default: 1 CPU).

    ``with_resources`` wins over ``Trainable.default_resource_request``.
    """
    request: Any = getattr(cls, "_atune_resources", None)
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


def _shared_allocator(kind: str, capacity: dict[str, float]) -> Allocator:
    loop = asyncio.get_running_loop()
    per_loop = _allocators.setdefault(loop, {})
    allocator = per_loop.get(kind)
    if allocator is None:
        allocator = per_loop[kind] = Allocator(capacity)
    else:
        allocator.update_capacity(capacity)
    return allocator


def _make_backend(tune_config: TuneConfig) -> Backend:
    if tune_config.backend == "local":
        return LocalBackend()
    from atune.execution._ray import RayBackend

    return RayBackend()


def _search_algorithm(tune_config: TuneConfig) -> SearchAlgorithm:
    alg = tune_config.search_alg
    if alg is None:
        return BasicVariantGenerator(max_concurrent=tune_config.max_concurrent_trials or 0)
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
        raise ConfigError(
            f"the scheduler's metric/mode ({scheduler.metric!r}/{scheduler.mode!r}) conflict "
            f"with TuneConfig ({tune_config.metric!r}/{tune_config.mode!r}); set them in one place"
        )
    return scheduler


def _fits(capacity: dict[str, float], request: dict[str, float]) -> int:
    """How many copies of ``request`` fit in ``capacity`` at once."""
    counts = [
        math.floor(capacity.get(key, 0.0) / amount + 1e-9)
        for key, amount in request.items()
        if amount > 0
    ]
    return min(counts) if counts else 1_000_000


def _experiment_path(run_config: RunConfig) -> Path:
    """A directory for a new experiment that never mixes with an existing one."""
    base = Path(run_config.storage_path or ".") / str(run_config.name)
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    if path != base:
        _log.warning(
            "experiment directory already in use; writing the new experiment next to it "
            "(use Tuner.restore to continue the old one)",
            existing=str(base),
            new=str(path),
        )
    return path


async def run_experiment(
    trainable_cls: type[Trainable],
    param_space: dict[str, Any],
    tune_config: TuneConfig,
    run_config: RunConfig,
) -> ResultGrid:
    """Run a new experiment to completion and return its results."""
    search = _search_algorithm(tune_config)
    search.set_search_properties(
        tune_config.metric, tune_config.mode, param_space, tune_config.num_samples
    )
    scheduler = _scheduler(tune_config)
    stopper = make_stopper(run_config.stop)
    is_function = issubclass(trainable_cls, FunctionTrainable)
    reuse = tune_config.reuse_actors
    if reuse is None:
        reuse = is_function
    checkpoint_config = run_config.checkpoint_config
    checkpoint_at_end = checkpoint_config.checkpoint_at_end
    if checkpoint_at_end is None:
        checkpoint_at_end = not is_function

    backend = _make_backend(tune_config)
    await backend.setup()
    capacity = await anyio.to_thread.run_sync(backend.capacity)
    allocator = _shared_allocator(tune_config.backend, capacity)
    scope = allocator.scope(max_concurrent=tune_config.max_concurrent_trials)
    await backend.prepare(trainable_cls)

    try:
        default_request = resources_for(trainable_cls, {}).required_resources
    except Exception:  # a callable request that needs a real config
        default_request = {"CPU": 1.0}
    max_live = max(1, _fits(capacity, default_request))
    if tune_config.max_concurrent_trials:
        max_live = min(max_live, tune_config.max_concurrent_trials)

    experiment_path = _experiment_path(run_config)
    policy = CorePolicy(
        experiment_path=str(experiment_path),
        trainable_name=trainable_name(trainable_cls),
        is_function=is_function,
        resources_for=lambda config: resources_for(trainable_cls, config),
        max_live_trials=max_live,
        max_failures=run_config.failure_config.max_failures,
        fail_fast=run_config.failure_config.fail_fast,
        checkpoint_frequency=checkpoint_config.checkpoint_frequency,
        checkpoint_at_end=bool(checkpoint_at_end),
        uid=uuid.uuid4().hex[:5],
        trial_name_creator=tune_config.trial_name_creator,
        trial_dirname_creator=tune_config.trial_dirname_creator,
    )
    core = ControllerCore(policy, search, scheduler=scheduler, stopper=stopper)
    driver = Driver(
        core,
        RunnerPool(backend, scope, reuse=reuse),
        ExperimentWriter(str(experiment_path)),
        experiment_name=str(run_config.name),
        callbacks=run_config.callbacks or (),
        time_budget_s=tune_config.time_budget_s,  # type: ignore[arg-type]
    )
    for callback in driver.callbacks:
        callback.setup(stop=run_config.stop, num_samples=tune_config.num_samples)
    try:
        await driver.run()
    finally:
        await backend.shutdown()
    if core.fatal_error is not None:
        raise rebuild_error(core.fatal_error, "")
    return build_result_grid(core.get_trials(), str(experiment_path), tune_config)


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
    trials: list[Trial], experiment_path: str, tune_config: TuneConfig
) -> ResultGrid:
    """The ``ResultGrid`` of the given trials."""
    results = []
    for trial in trials:
        metrics: dict[str, Any] = dict(trial.last_result)
        if metrics:
            metrics["experiment_tag"] = trial.experiment_tag
        error = None
        if trial.error is not None:
            error = rebuild_error(trial.error, trial.trial_id)
        best = [
            (_checkpoint(trial, record.dir_name), record.metrics) for record in trial.checkpoints
        ]
        results.append(
            Result(
                metrics=metrics,
                checkpoint=trial.checkpoint,
                error=error,
                path=trial.path,
                best_checkpoints=best,
            )
        )
    return ResultGrid(
        results,
        experiment_path=experiment_path,
        metric=tune_config.metric,
        mode=tune_config.mode,
        statuses=[t.status for t in trials],
    )


def _checkpoint(trial: Trial, dir_name: str) -> Any:
    from atune.trainable._checkpoint import Checkpoint

    return Checkpoint(os.path.join(trial.path, dir_name))
