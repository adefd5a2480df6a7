"""``Tuner``: configure an experiment, then ``fit()`` it, synchronously or with ``await``.

``tuner.fit()`` serves both worlds with one method:

* called where no event loop is running (a plain script), it runs the experiment and
  returns the :class:`~atune.result.ResultGrid`, like Ray Tune;
* called inside a running event loop (a web service, a notebook cell, an ``async def``),
  it returns a coroutine: ``results = await tuner.fit()`` runs the experiment on that loop
  without blocking it, and so do ``asyncio.create_task(tuner.fit())``,
  ``TaskGroup.create_task(tuner.fit())`` and anyio's ``tg.start_soon(tuner.fit)``. Forgetting the ``await`` never silently skips the run: using the
  un-awaited value raises a ``TypeError`` that says to await it, and dropping it emits a
  ``RuntimeWarning``.

Bad input fails here, at ``Tuner(...)``, with a :class:`~atune.errors.ConfigError` that
names the value; what can only be known once the cluster is known (resources) fails at the
start of ``fit()``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import importlib
import inspect
import os
import posixpath
import shutil
import uuid
import warnings
from collections.abc import Callable, Coroutine, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from atune._log import get_logger
from atune._serializable import check_param_space, check_trainable
from atune._spec import spec_for
from atune._switching import short_switch_interval
from atune.callback import Callback
from atune.config import RunConfig, TuneConfig, local_storage_path
from atune.errors import ConfigError, StorageError
from atune.result import ResultGrid
from atune.search import validate_param_space
from atune.stopper import make_stopper
from atune.trainable._function import trainable_kind, trainable_name, wrap_function
from atune.trainable._trainable import Trainable

if TYPE_CHECKING:
    from atune._controller._restore import RestorePlan
    from atune._run import Run
    from atune.storage._lock import ExperimentLock
    from atune.storage._remote import RemoteLock, RemoteStorage

    class FitReturn(ResultGrid, Coroutine[Any, Any, ResultGrid]):
        """The type checker's view of what ``Tuner.fit()`` returns: both of its faces.

        No overload can say which face a call gets, since that depends on whether an event
        loop is running when it is made, not on the arguments. So the type allows both
        uses (a ``ResultGrid`` in a plain script; ``await``, ``asyncio.create_task`` and
        ``TaskGroup.create_task`` inside a loop), and the run time checks the context: it
        returns a :class:`~atune.result.ResultGrid` without a running loop, a coroutine of
        one (:class:`_FitCall`) inside one, and using the wrong face raises a
        ``TypeError`` that says which to use. Nothing of this type is ever created.
        """


__all__ = ["Tuner"]

_log = get_logger(__name__)


class Tuner:
    """Tune a trainable's hyperparameters (Ray Tune's ``Tuner``).

    Args:
        trainable: A function ``fn(config)`` that calls ``report()`` (or returns/yields
            metrics), or a ``Trainable`` subclass; optionally wrapped by
            ``with_parameters`` / ``with_resources``. (atune) A
            :class:`~atune.simulator.Simulator` runs the study in virtual time against
            learning curves instead (``tune_config.backend`` is then not used).
        param_space: The search space: a dict whose leaves may be search domains
            (``uniform``, ``choice``, ``grid_search``, ...), nested dicts and lists.
        tune_config: How to search (metric, mode, samples, concurrency, ...).
        run_config: Where and how to run (name, storage, stop criteria, callbacks, ...).

    The experiment's directory (``<storage_path>/<name>``, or ``<name>_2``, ... when that
    exists) is created here, with ``experiment.json`` and an empty journal, as Ray Tune's
    ``Tuner`` creates it: ``Tuner.can_restore`` is true for it from now on. The ``Tuner``
    keeps the experiment's name (``run_config`` is not changed).

    Raises:
        ConfigError: a trainable that is neither a function taking ``config`` nor a
            ``Trainable`` subclass, a ``param_space`` that is not a dict, a malformed
            search space, invalid config values, a ``storage_path`` URI that atune does
            not support, or a name longer than the file system allows.
        NotSerializableError: a ``param_space`` value that cannot reach a trial (Ray:
            cloudpickle; in-process: ``copy.deepcopy``), or, on the Ray backend, a
            trainable that does not pickle (a ``ConfigError`` and a ``TypeError``).
        StorageError: the experiment directory cannot be created or written.
    """

    def __init__(
        self,
        trainable: Callable[..., Any] | type[Trainable] | None = None,
        *,
        param_space: dict[str, Any] | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
    ) -> None:
        self._setup(trainable, param_space, tune_config, run_config)
        self._experiment_path, self._uid = self._claim()

    def _setup(
        self,
        trainable: Callable[..., Any] | type[Trainable] | None,
        param_space: dict[str, Any] | None,
        tune_config: TuneConfig | None,
        run_config: RunConfig | None,
    ) -> None:
        """Validate and keep the arguments (no I/O)."""
        if trainable is None:
            raise ConfigError("Tuner needs a trainable (a function or a Trainable subclass)")
        from atune.simulator import simulator_of

        self._simulator = simulator_of(trainable)
        self._trainable_cls = as_trainable_class(trainable)
        self._tune_config = tune_config or TuneConfig()
        if not isinstance(self._tune_config, TuneConfig):
            raise ConfigError(
                f"tune_config must be a TuneConfig, got {type(tune_config).__name__}",
                value=tune_config,
            )
        self._run_config = run_config or RunConfig()
        if not isinstance(self._run_config, RunConfig):
            raise ConfigError(
                f"run_config must be a RunConfig, got {type(run_config).__name__}",
                value=run_config,
            )
        for callback in self._run_config.callbacks or ():
            if not isinstance(callback, Callback):
                raise ConfigError(
                    f"RunConfig.callbacks must hold atune.Callback instances, got {callback!r}",
                    value=callback,
                )
        make_stopper(self._run_config.stop)  # validates the stop criteria now
        _check_search_and_scheduler(self._tune_config)
        if param_space is None:
            param_space = {}
        validate_param_space(param_space, num_samples=self._tune_config.num_samples)
        check_param_space(param_space, backend=self._backend)
        if self._backend == "ray":  # in-process, nothing is serialised
            check_trainable(self._trainable_cls)
        self._param_space = param_space
        self._check_checkpoint_config()
        self._results: ResultGrid | None = None
        self._restore: RestorePlan | None = None
        self._ran = False  # a fit() took the experiment's lock
        self._storage_path = self._run_config.storage_path
        # Remote storage: the experiment directory there, this run's scratch name, and
        # what of the local mirror (``_experiment_path``) the storage has already.
        self._remote: RemoteStorage | None = None
        self._run_key = ""
        self._remote_state: dict[str, tuple[int, int]] = {}

    def _claim(self) -> tuple[Path, str]:
        """Claim a new experiment directory and describe the experiment in it (blocking).

        The directory holds ``experiment.json`` and an empty journal as soon as this
        returns, so ``Tuner.can_restore`` is true for it, as in Ray Tune; a ``Tuner`` that
        is never fit leaves an experiment whose restore runs it from the start.
        """
        from atune._signing import load_or_create_key
        from atune._spec import write_spec
        from atune.storage._experiment_dir import claim_experiment_dir, default_experiment_name
        from atune.storage._remote import is_remote
        from atune.storage._writer import create_journal

        simulator = self._simulator
        now = None
        if simulator is not None:  # a deterministic name and uid: equal runs, equal journals
            now = _dt.datetime.fromtimestamp(simulator.epoch, _dt.timezone.utc)
        name = self._run_config.name or default_experiment_name(
            trainable_name(self._trainable_cls), now
        )
        storage_path = self._storage_path
        assert storage_path is not None
        if is_remote(storage_path, self._run_config.storage_filesystem):
            path = self._claim_remote(storage_path, name)
        else:
            path = claim_experiment_dir(storage_path, name)
        uid = uuid.uuid4().hex[:5] if simulator is None else simulator.uid
        spec = spec_for(
            name=path.name,
            trainable_name=trainable_name(self._trainable_cls),
            trainable_kind=trainable_kind(self._trainable_cls),
            uid=uid,
            param_space=self._param_space,
            tune_config=self._tune_config,
            run_config=self._run_config,
            signing_key=load_or_create_key(),  # code in the space is stored signed
        )
        try:
            write_spec(path, spec)
            create_journal(path)
            if self._remote is not None:
                from atune.storage._remote import publish_new_experiment

                self._remote_state = publish_new_experiment(self._remote, path)
        except StorageError:
            shutil.rmtree(path, ignore_errors=True)  # leave no half-made experiment
            raise
        return path, uid

    def _claim_remote(self, storage_path: str, name: str) -> Path:
        """Claim ``<storage_path>/<name>`` on remote storage; returns the local mirror."""
        from atune.storage._experiment_dir import check_name_length
        from atune.storage._remote import (
            claim_remote_experiment,
            new_run_key,
            open_storage,
            scratch_dir,
        )

        root = open_storage(storage_path, self._run_config.storage_filesystem)
        probe = scratch_dir(new_run_key(name))
        check_name_length(probe.parent, probe.name)
        self._remote = claim_remote_experiment(root, name)
        self._run_key = new_run_key(posixpath.basename(self._remote.path))
        mirror = scratch_dir(self._run_key)
        try:
            mirror.mkdir(parents=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the local scratch directory {mirror}: {exc}"
            ) from exc
        return mirror

    @property
    def _backend(self) -> Literal["ray", "local"]:
        """Where trials run: ``tune_config.backend``; a simulation is in-process."""
        return "local" if self._simulator is not None else self._tune_config.backend

    @property
    def experiment_path(self) -> str:
        """The experiment directory this ``Tuner`` runs in (claimed at construction).

        atune addition. A ``fit()`` after a completed or interrupted one starts a new
        experiment in a new directory; this property then names the newest. On remote
        storage it is the experiment's URI (what ``Tuner.restore`` takes).
        """
        if self._remote is not None:
            return self._remote.uri
        return str(self._experiment_path)

    def _check_checkpoint_config(self) -> None:
        from atune.trainable._function import FunctionTrainable

        cc = self._run_config.checkpoint_config
        if issubclass(self._trainable_cls, FunctionTrainable):
            if cc.checkpoint_frequency:
                raise ConfigError(
                    "CheckpointConfig.checkpoint_frequency applies to class trainables only; "
                    "a function trainable checkpoints with report(..., checkpoint=...) "
                    f"(got checkpoint_frequency={cc.checkpoint_frequency!r})",
                    value=cc.checkpoint_frequency,
                )
            if cc.checkpoint_at_end:
                raise ConfigError(
                    "CheckpointConfig.checkpoint_at_end applies to class trainables only; "
                    "a function trainable checkpoints with report(..., checkpoint=...)",
                    value=cc.checkpoint_at_end,
                )

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike[str],
        trainable: Callable[..., Any] | type[Trainable],
        *,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: dict[str, Any] | None = None,
        storage_filesystem: Any = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Tuner:
        """Continue an interrupted experiment from its journal; call ``fit()`` on the result.

        The experiment is rebuilt from data only (``experiment.json`` and the event
        journal ``events.jsonl``); no pickle in the directory is ever loaded. Finished trials
        are not run again; unfinished ones resume from their latest committed checkpoint
        (from scratch if they had none); the search goes on with the samples it had not
        started. ``fit()`` on an experiment with nothing left to run returns its stored
        results at once, and :meth:`get_results` returns them without running anything.

        Search-space values that are code or objects (``sample_from`` functions, model
        instances) were stored pickled and HMAC-signed with this installation's key
        (``~/.atune/signing_key``); they are loaded only if the signature verifies, so a
        directory from elsewhere (or an altered one) is refused, never executed. Pass
        ``param_space`` again to supply such values instead (its keys must match; then
        nothing stored is unpickled), and for values that could not be pickled at all.
        Other code (a custom searcher, scheduler, stopper, or callbacks) is not restored;
        a warning names it.

        Restoring writes nothing: a torn last journal line is cut only when ``fit()``
        is about to append. On remote storage (a URI, or ``storage_filesystem``) the
        experiment's files, all but its checkpoints, are downloaded into a fresh local
        scratch directory: nothing else is needed (trials fetch their checkpoints).

        Args:
            path: The experiment directory (``<storage_path>/<name>``).
            trainable: The same trainable as the original run (wrappers included).
            resume_unfinished: Resume unfinished trials (else mark them TERMINATED).
            resume_errored: Resume errored trials from their latest checkpoint.
            restart_errored: Restart errored trials from scratch.
            param_space: The original search space, to fill leaves that are code.
            storage_filesystem: The ``pyarrow.fs.FileSystem`` the experiment is on (then
                ``path`` is a path on it); for a URI, pyarrow resolves one.
            callbacks: (atune) The original run's callbacks, which are code and so not
                stored: each gets back the state its ``get_state()`` returned last (when
                the callback at the same position is of the same class).

        Raises:
            StorageError: ``path`` is not an atune experiment.
            JournalCorruptError: the journal is damaged (a torn last line is only dropped).
            StorageError: a stored search-space value is unsigned or its signature does not
                verify (and no ``param_space`` was passed).
            ConfigError: the space has values that could not be stored and no
                ``param_space`` was passed.
            ValueError: ``trainable`` is not the original one: another name, or a function
                where the original was a class (or the reverse), as in Ray Tune (a
                :class:`~atune.errors.ConfigError`).
        """
        from atune._controller._restore import RestorePlan
        from atune._controller._snapshot import read_history
        from atune._spec import read_spec
        from atune.search._codec import has_unrestorable, merge_space
        from atune.storage._remote import is_remote

        remote: RemoteStorage | None = None
        if is_remote(os.fspath(path), storage_filesystem):
            from atune.storage._remote import open_remote_experiment

            remote, run_key, experiment_path, state = open_remote_experiment(
                os.fspath(path), storage_filesystem, "Tuner.restore path"
            )
        else:
            experiment_path = Path(local_storage_path(path, "Tuner.restore path")).resolve()
        spec = read_spec(experiment_path)
        _check_same_trainable(spec.trainable_name, spec.trainable_kind, trainable)
        # Only read here: a torn last line is cut off by fit(), under the experiment lock,
        # so restoring an experiment that another process is running changes nothing.
        history = read_history(experiment_path)
        if param_space is not None:
            # Values passed again replace what is stored: nothing stored is unpickled.
            space = merge_space(spec.space(), param_space)
        else:
            from atune._signing import load_or_create_key

            space = spec.space(key=load_or_create_key)
        missing = has_unrestorable(space)
        if missing:
            raise ConfigError(
                "the search space has values that could not be stored with the experiment "
                "(they do not pickle): "
                f"{', '.join(missing)}; pass the original space: "
                "Tuner.restore(path, trainable, param_space=...)",
                value=missing,
            )
        not_restored = [
            c
            for c in spec.code_not_restored
            if not c.startswith("param_space:") and not (c == "callbacks" and callbacks)
        ]
        if not_restored:
            _log.warning(
                "restoring without the parts of the original configuration that are code",
                not_restored=not_restored,
            )
        tune_config, run_config = spec.configs(storage_path=str(experiment_path.parent))
        run_config.name = experiment_path.name
        if callbacks:
            run_config.callbacks = list(callbacks)
        tuner = cls.__new__(cls)  # the experiment's directory exists: claim none
        tuner._setup(trainable, space, tune_config, run_config)
        tuner._experiment_path, tuner._uid = experiment_path, spec.uid
        if remote is not None:
            tuner._remote, tuner._run_key, tuner._remote_state = remote, run_key, state
            tuner._run_config.storage_filesystem = storage_filesystem
        tuner._restore = RestorePlan(
            experiment_path=experiment_path,
            uid=spec.uid,
            events=history.restore_events(),
            snapshot=history.snapshot,
            resume_unfinished=resume_unfinished,
            resume_errored=resume_errored,
            restart_errored=restart_errored,
        )
        return tuner

    @classmethod
    def can_restore(cls, path: str | os.PathLike[str], storage_filesystem: Any = None) -> bool:
        """True when ``path`` holds an atune experiment that ``restore`` can read.

        That is the case from the moment ``Tuner(...)`` created the experiment directory
        (as in Ray Tune), also while another process runs it.
        """
        from atune.storage._layout import JOURNAL_FILE, SPEC_FILE
        from atune.storage._remote import is_remote

        if is_remote(os.fspath(path), storage_filesystem):
            from atune.storage._remote import open_storage, remote_experiment

            storage = open_storage(os.fspath(path), storage_filesystem, "Tuner.can_restore path")
            return remote_experiment(storage)
        experiment_path = Path(local_storage_path(path, "Tuner.can_restore path"))
        return (experiment_path / SPEC_FILE).is_file() and (
            experiment_path / JOURNAL_FILE
        ).is_file()

    def fit(self) -> FitReturn:
        """Run the experiment; see the module docstring for sync versus ``await`` use.

        While it runs, ``fit()`` holds the experiment's lock (:mod:`atune.storage._lock`):
        a second ``fit()`` of the same experiment, from this process or another (also
        through ``Tuner.restore``), fails at once. The lock is released however ``fit()``
        ends (cancellation included), and by the operating system if the process dies.
        Calling ``fit()`` again after a first one ended runs a new experiment in a new
        directory (a ``Tuner.restore`` tuner resumes its experiment again instead).

        Returns:
            The ``ResultGrid`` (no running loop), or a coroutine of it (inside a loop);
            typed as :class:`FitReturn`, which allows both uses, since no static type can
            tell which applies.

        Raises:
            ExperimentLockedError: another ``fit()`` runs this experiment; the message
                names its pid and host.
            StorageError: the experiment cannot be written (full disk, file too large,
                permissions); the journal stays restorable up to its last good write.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            import anyio

            lock = self._lock_experiment()  # fail at once when someone else runs it
            try:
                if self._backend == "ray":
                    from atune.execution._ray import ensure_ray

                    ensure_ray()  # from the main thread, where Ray can install its handlers
                kept: list[ResultGrid] = []

                async def fit_and_keep() -> None:
                    # The grid is not the main task's result: on Python 3.11, asyncio's
                    # runner formats that task's repr (result included) when it restores
                    # the SIGINT handler, twice: 0.3 s for 10,000 results.
                    kept.append(await self._fit_locked(lock))

                with short_switch_interval():
                    anyio.run(fit_and_keep)
                grid = kept[0]
            finally:
                lock.release()
            return grid  # type: ignore[return-value]  # the sync face of FitReturn
        return _FitCall(self._fit())  # type: ignore[return-value]  # its async face

    def _lock_experiment(self) -> ExperimentLock | RemoteLock:
        """Take the experiment's lock (blocking); a new experiment after the first fit.

        On remote storage the lock is an object in the storage (:class:`RemoteLock`).

        Raises:
            ExperimentLockedError: another ``fit()`` (in this or another process) runs it.
        """
        from atune.storage._lock import ExperimentLock
        from atune.storage._remote import RemoteLock

        if self._ran and self._restore is None:
            self._experiment_path, self._uid = self._claim()
        lock: ExperimentLock | RemoteLock = (
            RemoteLock(self._remote)
            if self._remote is not None
            else ExperimentLock(self._experiment_path)
        )
        lock.acquire()
        self._ran = True
        return lock

    def start(self, *, history: int = 100_000) -> Run:
        """A live handle on a run of this experiment: ``async with tuner.start() as run:``.

        atune addition. Entering the block starts what ``await tuner.fit()`` runs, as a
        task; inside it, ``run.events()`` streams the experiment's events,
        ``run.status()`` and ``run.results()`` say where it stands, ``run.cancel()`` stops
        it (resumably) and ``await run.wait()`` returns its ``ResultGrid``. Leaving the
        block waits for the run to end, or cancels it when the block raised. See
        :class:`atune.Run`.

        Args:
            history: How many of the run's latest events the handle keeps for a replay
                from the start (``run.events()``); older ones are dropped, and a replay
                then begins with a :class:`~atune.events.SubscriberLagged` marker.

        Raises:
            ConfigError: ``history`` is not a whole number >= 1.
        """
        from atune._run import Run

        return Run(self, history=history)

    async def _fit(self, observers: Sequence[Callback] = ()) -> ResultGrid:
        # The short switch interval covers the whole call, the first fit()'s imports in a
        # worker thread included: they hold the GIL in switch-interval slices too.
        with short_switch_interval():
            # The controller, the driver, the backends and anyio load in a worker thread:
            # a first fit() in a fresh process would otherwise stall the caller's event
            # loop for the whole import (hundreds of milliseconds).
            await asyncio.to_thread(_load_fit_machinery)
            import anyio

            lock = await anyio.to_thread.run_sync(self._lock_experiment)
            try:
                return await self._fit_locked(lock, observers)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(lock.release)

    async def _fit_locked(
        self, lock: ExperimentLock | RemoteLock, observers: Sequence[Callback] = ()
    ) -> ResultGrid:
        import anyio

        assert lock.held
        remote = None
        if self._remote is not None:
            from atune.storage._remote import (
                ExperimentSync,
                RemoteLock,
                RemoteRun,
                TrialStorage,
                download_experiment,
            )

            if self._restore is not None:
                # Under the lock, the storage is what this run continues: another fit may
                # have run the experiment since Tuner.restore downloaded it.
                self._remote_state = await anyio.to_thread.run_sync(
                    download_experiment, self._remote, self._experiment_path
                )
            remote = RemoteRun(
                sync=ExperimentSync(
                    self._remote,
                    self._experiment_path,
                    state=self._remote_state,
                    lock=lock if isinstance(lock, RemoteLock) else None,
                ),
                trials=TrialStorage(self._remote, self._run_key, str(self._experiment_path)),
            )
        fit = await anyio.to_thread.run_sync(importlib.import_module, "atune._fit")
        if self._restore is not None:
            from atune._controller._restore import listens, reread_journal
            from atune.schedulers import TrialScheduler

            # Read the journal again now that no one else can append to it, and cut a
            # torn last line off before this run appends. Whether the scheduler is caught
            # up decides whether the journal's snapshot is enough (else every event).
            scheduler = self._tune_config.scheduler
            self._restore = await anyio.to_thread.run_sync(
                functools.partial(
                    reread_journal,
                    self._restore,
                    scheduler_listens=isinstance(scheduler, TrialScheduler) and listens(scheduler),
                )
            )
        self._results = await fit.run_experiment(
            self._trainable_cls,
            self._param_space,
            self._tune_config,
            self._run_config,
            experiment_path=self._experiment_path,
            uid=self._uid,
            restore=self._restore,
            observers=observers,
            simulator=self._simulator,
            remote=remote,
        )
        return self._results

    def get_results(self) -> ResultGrid:
        """The results of the last ``fit()``; for a restored tuner, the stored results.

        A tuner from :meth:`restore` that has not been fitted returns the results the
        journal recorded, without running anything (Ray Tune's way to analyse a past run;
        :func:`atune.load_results` does the same without a trainable).

        Raises:
            RuntimeError: ``fit()`` has not completed yet (and the tuner was not restored).
        """
        if self._results is None and self._restore is not None:
            from atune._load import stored_result_grid

            self._results = stored_result_grid(
                self._restore.experiment_path,
                self._restore.events,
                snapshot=self._restore.snapshot,
                trainable_name=trainable_name(self._trainable_cls),
                tune_config=self._tune_config,
                checkpoint_config=self._run_config.checkpoint_config,
                storage=self._remote,
            )
        if self._results is None:
            raise RuntimeError("no results yet: call Tuner.fit() (or Tuner.restore) first")
        return self._results


def _check_search_and_scheduler(tune_config: TuneConfig) -> None:
    """Refuse a search algorithm or scheduler of the wrong type before claiming a directory.

    Only the types: whether their metric/mode agree is checked at the start of ``fit()``.
    """
    from atune.schedulers import TrialScheduler
    from atune.search import SearchAlgorithm, Searcher

    alg = tune_config.search_alg
    if alg is not None and not isinstance(alg, (SearchAlgorithm, Searcher)):
        raise ConfigError(
            f"TuneConfig.search_alg must be a Searcher or a search algorithm, got {alg!r}",
            value=alg,
        )
    scheduler = tune_config.scheduler
    if scheduler is not None and not isinstance(scheduler, TrialScheduler):
        raise ConfigError(
            f"TuneConfig.scheduler must be a TrialScheduler, got {scheduler!r}", value=scheduler
        )


class _FitCall(Coroutine[Any, Any, ResultGrid]):
    """What ``Tuner.fit()`` returns inside a running event loop: a coroutine; await it.

    It is a real :class:`collections.abc.Coroutine` around ``Tuner._fit()``, so every way
    of running a coroutine accepts it: ``await``, ``asyncio.create_task``,
    ``TaskGroup.create_task``, ``asyncio.ensure_future``, and anyio's
    ``tg.start_soon(tuner.fit)``. Unlike a bare coroutine it is never silently skipped:
    using it as a result (``pending.get_best_result()``, iterating it) raises a
    ``TypeError`` that says to await it, and dropping it without running it emits a
    ``RuntimeWarning`` (the inner coroutine is closed, so Python's own "never awaited"
    warning does not come on top).
    """

    _MESSAGE = (
        "Tuner.fit() was called inside a running event loop, so it returned an awaitable "
        "instead of blocking the loop; use `results = await tuner.fit()`"
    )
    # What asyncio and anyio read from a coroutine (names, repr, debugging); forwarded.
    _INTROSPECTION = frozenset(
        {
            "__name__",
            "__qualname__",
            "cr_await",
            "cr_code",
            "cr_frame",
            "cr_origin",
            "cr_running",
            "cr_suspended",
        }
    )

    def __init__(self, coro: Coroutine[Any, Any, ResultGrid]) -> None:
        self._coro = coro
        self._started = False

    def send(self, value: Any) -> Any:
        """Run the experiment up to its next suspension (the coroutine protocol)."""
        self._started = True
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Raise an exception (a cancellation) at the current suspension point."""
        self._started = True
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy signature

    def close(self) -> None:
        """Close the coroutine; an experiment that never started does not run."""
        self._started = True
        self._coro.close()

    def __await__(self) -> Generator[Any, None, ResultGrid]:
        self._started = True
        return self._coro.__await__()

    def __getattr__(self, name: str) -> Any:
        if name in _FitCall._INTROSPECTION or name.startswith(("cr_", "gi_", "ag_")):
            return getattr(self._coro, name)
        if name.startswith("_"):
            raise AttributeError(name)
        raise TypeError(f"{self._MESSAGE} (tried to use .{name} on it)")

    def __iter__(self) -> Any:
        raise TypeError(self._MESSAGE)

    def __len__(self) -> int:
        raise TypeError(self._MESSAGE)

    def __del__(self) -> None:
        coro = self.__dict__.get("_coro")
        if coro is not None and not self.__dict__.get("_started", True):
            coro.close()  # no second "never awaited" warning from Python
            warnings.warn(
                f"{self._MESSAGE}; the experiment did not run", RuntimeWarning, stacklevel=2
            )

    def __repr__(self) -> str:
        return "<pending Tuner.fit(): await it>"


def _load_fit_machinery() -> None:
    """Import what ``fit()`` runs on (called in a worker thread, see ``Tuner._fit``)."""
    importlib.import_module("atune._fit")
    importlib.import_module("anyio._backends._asyncio")  # anyio loads it on first use


def _check_same_trainable(original_name: str, original_kind: str, trainable: Any) -> None:
    """Refuse a trainable that is not the one the experiment ran (Ray Tune does too).

    The name and the kind (function or class) must match; the code may change.

    Raises:
        ConfigError: (a ``ValueError``) the name or the kind differs, or ``trainable`` is
            not a trainable at all.
    """
    cls = as_trainable_class(trainable)
    name, kind = trainable_name(cls), trainable_kind(cls)
    if original_kind and kind != original_kind:
        raise ConfigError(
            f"Tuner.restore needs the experiment's own trainable: it ran a {original_kind} "
            f"trainable {original_name!r}, got the {kind} {name!r}",
            value=trainable,
        )
    if name != original_name:
        raise ConfigError(
            f"Tuner.restore needs the experiment's own trainable: it ran {original_name!r}, "
            f"got {name!r} (the code may change, the name may not)",
            value=trainable,
        )


def as_trainable_class(trainable: Any) -> type[Trainable]:
    """The ``Trainable`` subclass that runs ``trainable`` (functions are wrapped).

    Raises:
        ConfigError: ``trainable`` is neither a ``Trainable`` subclass nor a function
            taking a single ``config`` parameter.
    """
    from atune.simulator import simulator_of

    simulator = simulator_of(trainable)
    if simulator is not None:
        return simulator._trainable
    if inspect.isclass(trainable):
        if issubclass(trainable, Trainable):
            return trainable
        raise ConfigError(
            f"a trainable class must subclass atune.Trainable, got {trainable!r}",
            value=trainable,
        )
    if callable(trainable):
        return wrap_function(trainable)
    raise ConfigError(
        f"trainable must be a function or a Trainable subclass, got {trainable!r}",
        value=trainable,
    )
