"""``Tuner``: configure an experiment, then ``fit()`` it, synchronously or with ``await``.

``tuner.fit()`` serves both worlds with one method:

* called where no event loop is running (a plain script), it runs the experiment and
  returns the :class:`~atune.result.ResultGrid`, like Ray Tune;
* called inside a running event loop (a web service, a notebook cell, an ``async def``),
  it returns an awaitable: ``results = await tuner.fit()`` runs the experiment on that loop
  without blocking it. Forgetting the ``await`` never silently skips the run: using the
  un-awaited value raises a ``TypeError`` that says to await it, and dropping it emits a
  ``RuntimeWarning``.

Bad input fails here, at ``Tuner(...)``, with a :class:`~atune.errors.ConfigError` that
names the value; what can only be known once the cluster is known (resources) fails at the
start of ``fit()``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import os
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atune._fit import run_experiment, trainable_name
from atune._log import get_logger
from atune._switching import short_switch_interval
from atune.callback import Callback
from atune.config import RunConfig, TuneConfig
from atune.errors import ConfigError
from atune.result import ResultGrid
from atune.search import validate_param_space
from atune.stopper import make_stopper
from atune.trainable._function import wrap_function
from atune.trainable._trainable import Trainable

if TYPE_CHECKING:
    from atune._fit import RestorePlan

__all__ = ["Tuner"]

_log = get_logger(__name__)


class Tuner:
    """Tune a trainable's hyperparameters (Ray Tune's ``Tuner``).

    Args:
        trainable: A function ``fn(config)`` that calls ``report()`` (or returns/yields
            metrics), or a ``Trainable`` subclass; optionally wrapped by
            ``with_parameters`` / ``with_resources``.
        param_space: The search space: a dict whose leaves may be search domains
            (``uniform``, ``choice``, ``grid_search``, ...), nested dicts and lists.
        tune_config: How to search (metric, mode, samples, concurrency, ...).
        run_config: Where and how to run (name, storage, stop criteria, callbacks, ...).

    Raises:
        ConfigError: a trainable that is neither a function taking ``config`` nor a
            ``Trainable`` subclass, a ``param_space`` that is not a dict, a malformed
            search space, or invalid config values.
    """

    def __init__(
        self,
        trainable: Callable[..., Any] | type[Trainable] | None = None,
        *,
        param_space: dict[str, Any] | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
    ) -> None:
        if trainable is None:
            raise ConfigError("Tuner needs a trainable (a function or a Trainable subclass)")
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
        if param_space is None:
            param_space = {}
        validate_param_space(param_space, num_samples=self._tune_config.num_samples)
        self._param_space = param_space
        self._check_checkpoint_config()
        if self._run_config.name is None:
            stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            self._run_config.name = f"{trainable_name(self._trainable_cls)}_{stamp}"
        self._results: ResultGrid | None = None
        self._restore: RestorePlan | None = None

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
        is about to append.

        Args:
            path: The experiment directory (``<storage_path>/<name>``).
            trainable: The same trainable as the original run (wrappers included).
            resume_unfinished: Resume unfinished trials (else mark them TERMINATED).
            resume_errored: Resume errored trials from their latest checkpoint.
            restart_errored: Restart errored trials from scratch.
            param_space: The original search space, to fill leaves that are code.
            storage_filesystem: Accepted for compatibility; only local paths are supported.

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
        from atune._fit import RestorePlan
        from atune._spec import read_spec
        from atune.search._codec import has_unrestorable, merge_space
        from atune.storage._journal import read_journal
        from atune.storage._writer import JOURNAL_FILE

        experiment_path = Path(os.fspath(path)).expanduser().resolve()
        spec = read_spec(experiment_path)
        _check_same_trainable(spec.trainable_name, spec.trainable_kind, trainable)
        contents = read_journal(experiment_path / JOURNAL_FILE)
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
        not_restored = [c for c in spec.code_not_restored if not c.startswith("param_space:")]
        if not_restored:
            _log.warning(
                "restoring without the parts of the original configuration that are code",
                not_restored=not_restored,
            )
        tune_config, run_config = spec.configs(storage_path=str(experiment_path.parent))
        run_config.name = experiment_path.name
        tuner = cls(trainable, param_space=space, tune_config=tune_config, run_config=run_config)
        tuner._restore = RestorePlan(
            experiment_path=experiment_path,
            uid=spec.uid,
            events=contents.events,
            journal=contents,
            resume_unfinished=resume_unfinished,
            resume_errored=resume_errored,
            restart_errored=restart_errored,
        )
        return tuner

    @classmethod
    def can_restore(cls, path: str | os.PathLike[str], storage_filesystem: Any = None) -> bool:
        """True when ``path`` holds an atune experiment that ``restore`` can read."""
        from atune._spec import SPEC_FILE
        from atune.storage._writer import JOURNAL_FILE

        experiment_path = Path(os.fspath(path)).expanduser()
        return (experiment_path / SPEC_FILE).is_file() and (
            experiment_path / JOURNAL_FILE
        ).is_file()

    def fit(self) -> Any:
        """Run the experiment; see the module docstring for sync versus ``await`` use.

        Returns:
            The ``ResultGrid`` (no running loop), or an awaitable of it (inside a loop).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            import anyio

            if self._tune_config.backend == "ray":
                from atune.execution._ray import ensure_ray

                ensure_ray()  # from the main thread, where Ray can install its handlers
            return anyio.run(self._fit)
        return _FitCall(self._fit)

    async def _fit(self) -> ResultGrid:
        with short_switch_interval():
            self._results = await run_experiment(
                self._trainable_cls,
                self._param_space,
                self._tune_config,
                self._run_config,
                restore=self._restore,
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
                trainable_name=trainable_name(self._trainable_cls),
                tune_config=self._tune_config,
                checkpoint_config=self._run_config.checkpoint_config,
            )
        if self._results is None:
            raise RuntimeError("no results yet: call Tuner.fit() (or Tuner.restore) first")
        return self._results


class _FitCall:
    """What ``Tuner.fit()`` returns inside a running event loop: await it."""

    _MESSAGE = (
        "Tuner.fit() was called inside a running event loop, so it returned an awaitable "
        "instead of blocking the loop; use `results = await tuner.fit()`"
    )

    def __init__(self, fit: Callable[[], Any]) -> None:
        self._fit = fit
        self._awaited = False

    def __await__(self) -> Generator[Any, None, ResultGrid]:
        self._awaited = True
        return self._fit().__await__()  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        raise TypeError(f"{self._MESSAGE} (tried to use .{name} on it)")

    def __iter__(self) -> Any:
        raise TypeError(self._MESSAGE)

    def __len__(self) -> int:
        raise TypeError(self._MESSAGE)

    def __del__(self) -> None:
        if not self._awaited:
            warnings.warn(
                f"{self._MESSAGE}; the experiment did not run", RuntimeWarning, stacklevel=2
            )

    def __repr__(self) -> str:
        return "<pending Tuner.fit(): await it>"


def _check_same_trainable(original_name: str, original_kind: str, trainable: Any) -> None:
    """Refuse a trainable that is not the one the experiment ran (Ray Tune does too).

    The name and the kind (function or class) must match; the code may change.

    Raises:
        ConfigError: (a ``ValueError``) the name or the kind differs, or ``trainable`` is
            not a trainable at all.
    """
    from atune._fit import trainable_kind

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
