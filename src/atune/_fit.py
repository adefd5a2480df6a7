"""Assemble one experiment (backend, allocator, search, core, driver) and run it."""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from atune._controller._core import ControllerCore, CorePolicy, rank_checkpoints
from atune._controller._driver import Driver
from atune._controller._metric_check import required_metrics, strict_metric_checking
from atune._controller._pool import RunnerPool
from atune._log import get_logger
from atune._progress import ProgressReporter
from atune._signing import load_or_create_key
from atune._trial import Trial
from atune.callback import Callback
from atune.config import CheckpointConfig, RunConfig, TuneConfig
from atune.errors import ConfigError, TrialError, WorkerDiedError
from atune.events import Event, SearcherStateSaved, TrialCreated
from atune.execution._allocator import Allocator
from atune.execution._backend import Backend, LocalBackend
from atune.execution._host import ErrorInfo
from atune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory
from atune.result import Result, ResultGrid
from atune.schedulers import FIFOScheduler, TrialScheduler
from atune.search import BasicVariantGenerator, SearchAlgorithm, Searcher, SearchGenerator
from atune.stopper import make_stopper
from atune.storage._layout import is_staging_name, parse_checkpoint_name
from atune.storage._writer import ExperimentWriter
from atune.trainable._function import FunctionTrainable
from atune.trainable._trainable import Trainable

__all__ = [
    "RestorePlan",
    "rebuild_error",
    "resources_for",
    "run_experiment",
    "trainable_kind",
    "trainable_name",
]

_log = get_logger(__name__)

# One allocator per event loop and backend kind, shared by every experiment on that loop,
# so two concurrent ``await tuner.fit()`` never oversubscribe the cluster.
_allocators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Allocator]] = (
    weakref.WeakKeyDictionary()
)


def trainable_name(cls: type[Trainable]) -> str:
    """The name trials of ``cls`` are named after (the function's or class's name)."""
    return cls.__name__


def trainable_kind(cls: type[Trainable]) -> str:
    """``"function"`` for a wrapped function, ``"class"`` for a ``Trainable`` subclass."""
    return "function" if issubclass(cls, FunctionTrainable) else "class"


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


def _static_resources(cls: type[Trainable]) -> bool:
    """Whether every trial of ``cls`` asks for the same resources (no per-config callable)."""
    request = getattr(cls, "_atune_resources", None)
    return request is None or isinstance(request, (dict, PlacementGroupFactory))


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
        # max_concurrent_trials is enforced by the controller and the allocator; the
        # generator itself need not limit (so a next trial can be queued on a runner).
        return BasicVariantGenerator()
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


def _restore_retries() -> int:
    """``TUNE_RESTORE_RETRY_NUM``: failed restores a trial retries uncounted (default 0).

    As in Ray Tune: while a trial's failed checkpoint restores number fewer than this,
    each is retried (from the same checkpoint) without counting against
    ``FailureConfig.max_failures``; later ones count as failures.

    Raises:
        ConfigError: the variable is set to something other than a whole number >= 0.
    """
    raw = os.environ.get("TUNE_RESTORE_RETRY_NUM", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"TUNE_RESTORE_RETRY_NUM must be a whole number >= 0, got {raw!r}", value=raw
        )
    return value


@dataclass(frozen=True)
class RestorePlan:
    """What ``Tuner.restore`` hands to :func:`run_experiment`."""

    experiment_path: Path
    uid: str
    events: list[Event]
    resume_unfinished: bool = True
    resume_errored: bool = False
    restart_errored: bool = False


async def run_experiment(
    trainable_cls: type[Trainable],
    param_space: dict[str, Any],
    tune_config: TuneConfig,
    run_config: RunConfig,
    *,
    experiment_path: Path,
    uid: str,
    restore: RestorePlan | None = None,
) -> ResultGrid:
    """Run a new experiment, or continue a restored one, to completion.

    ``experiment_path`` was claimed (and described in ``experiment.json``) by the
    ``Tuner``, which holds its lock for the duration of this call.
    """
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

    signing_key = await anyio.to_thread.run_sync(load_or_create_key)
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
        # Queue the next trial on a running trial's runner (no round trip between
        # trials); needs reuse, and one resource request for every trial.
        pipeline=bool(reuse) and _static_resources(trainable_cls),
        num_to_keep=checkpoint_config.num_to_keep,
        checkpoint_score_attribute=checkpoint_config.checkpoint_score_attribute,
        checkpoint_score_order=checkpoint_config.checkpoint_score_order,
        uid=uid,
        required_metrics=required_metrics(tune_config.metric, scheduler, search),
        strict_metric_checking=strict_metric_checking(),
        trial_name_creator=tune_config.trial_name_creator,
        trial_dirname_creator=tune_config.trial_dirname_creator,
        restore_retries=_restore_retries(),
    )
    core = ControllerCore(policy, search, scheduler=scheduler, stopper=stopper)
    if restore is not None:
        _replay(core, restore)
        await anyio.to_thread.run_sync(_reconcile_disk, core)
    driver = Driver(
        core,
        RunnerPool(backend, scope, reuse=reuse),
        ExperimentWriter(str(experiment_path)),
        experiment_name=experiment_path.name,
        callbacks=_callbacks(run_config, tune_config),
        num_user_callbacks=len(run_config.callbacks or ()),
        time_budget_s=tune_config.time_budget_s,  # type: ignore[arg-type]
        resumed=restore is not None,
        signing_key=signing_key,
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
        await backend.shutdown()
    if core.fatal_error is not None:
        raise rebuild_error(core.fatal_error, "")
    return build_result_grid(
        core.get_trials(), str(experiment_path), tune_config, run_config.checkpoint_config
    )


def _callbacks(run_config: RunConfig, tune_config: TuneConfig) -> list[Callback]:
    """The user's callbacks, then the progress display unless ``verbose=0``."""
    callbacks = list(run_config.callbacks or ())
    verbose = 1 if run_config.verbose is None else run_config.verbose
    if verbose >= 1:
        callbacks.append(
            ProgressReporter(verbose, metric=tune_config.metric, mode=tune_config.mode)
        )
    return callbacks


def _replay(core: ControllerCore, plan: RestorePlan) -> None:
    """Rebuild the core from the journal, and the search algorithm from its last snapshot."""
    core.replay(
        plan.events,
        resume_unfinished=plan.resume_unfinished,
        resume_errored=plan.resume_errored,
        restart_errored=plan.restart_errored,
    )
    snapshot_at = max(
        (i for i, e in enumerate(plan.events) if isinstance(e, SearcherStateSaved)), default=-1
    )
    if snapshot_at >= 0:
        snapshot = plan.events[snapshot_at]
        assert isinstance(snapshot, SearcherStateSaved)
        core.search.set_state(snapshot.state)
    # Trials created after the last snapshot were handed out already: advance past them.
    for event in plan.events[snapshot_at + 1 :]:
        if isinstance(event, TrialCreated):
            core.search.next_trial(event.trial_id)


def _reconcile_disk(core: ControllerCore) -> None:
    """Never reuse a checkpoint index found on disk; drop staging dirs of torn saves."""
    for trial in core.get_trials():
        trial_dir = Path(trial.path)
        if not trial_dir.is_dir():
            continue
        for child in trial_dir.iterdir():
            if is_staging_name(child.name):
                shutil.rmtree(child, ignore_errors=True)
            elif (index := parse_checkpoint_name(child.name)) is not None:
                trial.next_checkpoint_index = max(trial.next_checkpoint_index, index + 1)


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
        ranked = rank_checkpoints(
            trial.checkpoints,
            checkpoint_config.checkpoint_score_attribute,
            checkpoint_config.checkpoint_score_order,
        )
        # Ray Tune's order: worst first, best last (oldest first without a score attribute).
        best = [
            (_checkpoint(trial, record.dir_name), record.metrics) for record in reversed(ranked)
        ]
        result = Result(
            metrics=metrics,
            checkpoint=trial.checkpoint,
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


def _checkpoint(trial: Trial, dir_name: str) -> Any:
    from atune.trainable._checkpoint import Checkpoint

    return Checkpoint(os.path.join(trial.path, dir_name))
