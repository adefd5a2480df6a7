"""``experiment.json``: the experiment's configuration as data, for ``Tuner.restore``.

Ray Tune pickles the whole tuner (``tuner.pkl``) and unpickles it on restore, which runs
whatever code a file in the experiment directory holds. atune writes only data: the
fields of ``TuneConfig``/``RunConfig`` that are data, and the search space through the
JSON codec of :mod:`atune.search._codec`. Search-space values that are code (a
``sample_from`` function) or objects are stored pickled and HMAC-signed with the
installation's key, and loaded only when the signature verifies. Other code (a custom
searcher, scheduler, stopper or callback) is not restored: restore says so, and
``param_space`` can be passed again to fill leaves that could not be stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from atune.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from atune.errors import ConfigError, StorageError
from atune.schedulers._restorable import scheduler_from_data, scheduler_to_data
from atune.search import BasicVariantGenerator
from atune.search._codec import decode_space, encode_space
from atune.search._restorable import search_from_data, search_to_data
from atune.storage._layout import SPEC_FILE

__all__ = ["ExperimentSpec", "read_spec", "spec_for", "write_spec"]

_VERSION = 1


class ExperimentSpec(msgspec.Struct, kw_only=True):
    """The data needed to rebuild an experiment's configuration."""

    version: int = _VERSION
    name: str
    trainable_name: str
    uid: str
    trainable_kind: str = ""
    """``"function"`` or ``"class"``; empty in specs written before it was recorded."""
    metric: str | None = None
    mode: str | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    backend: str = "ray"
    stop: dict[str, Any] | None = None
    code_not_restored: list[str] = msgspec.field(default_factory=list)
    checkpoint_config: dict[str, Any] = msgspec.field(default_factory=dict)
    failure_config: dict[str, Any] = msgspec.field(default_factory=dict)
    param_space: Any = None
    search_args: dict[str, Any] = msgspec.field(default_factory=dict)
    search: dict[str, Any] | None = None
    """Any other restorable search algorithm, as :mod:`atune.search._restorable` data."""
    scheduler: dict[str, Any] | None = None
    """atune's own scheduler, as :mod:`atune.schedulers._restorable` data."""
    verbose: int | None = None

    def configs(self, storage_path: str) -> tuple[TuneConfig, RunConfig]:
        """The ``TuneConfig`` and ``RunConfig`` this spec describes."""
        search_alg: Any = (
            search_from_data(self.search)
            if self.search is not None
            else BasicVariantGenerator(**self.search_args)
        )
        tune_config = TuneConfig(
            metric=self.metric,
            mode=self.mode,  # type: ignore[arg-type]
            search_alg=search_alg,
            scheduler=(scheduler_from_data(self.scheduler) if self.scheduler is not None else None),
            num_samples=self.num_samples,
            max_concurrent_trials=self.max_concurrent_trials,
            time_budget_s=self.time_budget_s,
            reuse_actors=self.reuse_actors,
            backend=self.backend,  # type: ignore[arg-type]
        )
        run_config = RunConfig(
            name=self.name,
            storage_path=storage_path,
            stop=self.stop,
            verbose=self.verbose,
            checkpoint_config=CheckpointConfig(**self.checkpoint_config),
            failure_config=FailureConfig(**self.failure_config),
        )
        return tune_config, run_config

    def space(self, key: Callable[[], bytes] | None = None) -> Any:
        """The decoded search space (unrestorable leaves are markers).

        Args:
            key: Returns the signing key: values stored pickled and signed are then
                loaded (after their HMAC verifies); without it they are markers too.
        """
        return decode_space(self.param_space, key=key)


def spec_for(
    *,
    name: str,
    trainable_name: str,
    trainable_kind: str = "",
    uid: str,
    param_space: dict[str, Any],
    tune_config: TuneConfig,
    run_config: RunConfig,
    signing_key: bytes | None = None,
) -> ExperimentSpec:
    """Describe a new experiment as data (what is code is listed, not stored).

    With ``signing_key``, values of the search space that are code or objects (a
    ``sample_from`` function, a model instance) are stored pickled and signed, so that
    ``Tuner.restore`` needs no ``param_space``; only values that do not pickle are listed.
    """
    not_restored: list[str] = []
    search = tune_config.search_alg
    search_args: dict[str, Any] = {}
    search_data: dict[str, Any] | None = None
    if search is not None:
        if isinstance(search, BasicVariantGenerator):
            args = search.init_args()
            if args is not None:
                search_args = args
        else:
            search_data = search_to_data(search)
        if not search_args and search_data is None:
            not_restored.append(f"search_alg={type(search).__name__}")
    scheduler_data: dict[str, Any] | None = None
    if tune_config.scheduler is not None:
        scheduler_data = scheduler_to_data(tune_config.scheduler)
        if scheduler_data is None:
            not_restored.append(f"scheduler={type(tune_config.scheduler).__name__}")
    stop = run_config.stop
    if stop is not None and not isinstance(stop, dict):
        not_restored.append(f"stop={type(stop).__name__}")
        stop = None
    if run_config.callbacks:
        not_restored.append("callbacks")
    encoded, unrestorable = encode_space(param_space, key=signing_key)
    not_restored.extend(f"param_space:{path}" for path in unrestorable)
    return ExperimentSpec(
        name=name,
        trainable_name=trainable_name,
        trainable_kind=trainable_kind,
        uid=uid,
        metric=tune_config.metric,
        mode=tune_config.mode,
        num_samples=tune_config.num_samples,
        max_concurrent_trials=tune_config.max_concurrent_trials,
        time_budget_s=tune_config.time_budget_s,  # type: ignore[arg-type]
        reuse_actors=tune_config.reuse_actors,
        backend=tune_config.backend,
        stop=stop,
        code_not_restored=not_restored,
        checkpoint_config=dataclasses.asdict(run_config.checkpoint_config),
        failure_config=dataclasses.asdict(run_config.failure_config),
        param_space=encoded,
        search_args=search_args,
        search=search_data,
        scheduler=scheduler_data,
        verbose=run_config.verbose,
    )


def write_spec(experiment_path: Path, spec: ExperimentSpec) -> None:
    """Write ``experiment.json`` atomically into an existing directory (blocking).

    Raises:
        StorageError: the file cannot be written; the message names it.
    """
    tmp = experiment_path / f".{SPEC_FILE}.tmp"
    try:
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(spec)))
        tmp.replace(experiment_path / SPEC_FILE)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {experiment_path / SPEC_FILE}: {exc}") from exc


def read_spec(experiment_path: Path) -> ExperimentSpec:
    """Read ``experiment.json``.

    Raises:
        StorageError: missing or unreadable.
    """
    path = experiment_path / SPEC_FILE
    try:
        spec = msgspec.json.decode(path.read_bytes(), type=ExperimentSpec)
    except FileNotFoundError as exc:
        raise StorageError(
            f"{experiment_path} is not an atune experiment (no {SPEC_FILE})"
        ) from exc
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path} is damaged: {exc}") from exc
    if spec.version != _VERSION:
        raise ConfigError(f"{path} has unsupported version {spec.version!r}", value=spec.version)
    return spec
