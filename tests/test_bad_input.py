"""Bad input fails early, with a ``ConfigError`` (a ``ValueError``) that names the value.

Each case fails at ``Tuner(...)`` (or while building its arguments: a config object or a
search-space domain), or at the start of ``fit()`` before any trial runs. No Ray needed:
cases that reach ``fit()`` use the in-process backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from atune.errors import ConfigError


def train_fn(config: dict[str, Any]) -> None:
    tune.report({"score": 1})


def no_config() -> None:
    pass


def two_required(config: dict[str, Any], extra: int) -> None:
    pass


class NotTrainable:
    """A class that does not subclass ``atune.Trainable``."""

    def step(self) -> dict[str, Any]:
        return {}


def fit_local(storage: str, *, tune_config: TuneConfig | None = None, **run: Any) -> Any:
    """``Tuner(train_fn).fit()`` on the in-process backend (no running loop: sync)."""
    tune_config = tune_config or TuneConfig(backend="local")
    return Tuner(
        train_fn,
        tune_config=tune_config,
        run_config=RunConfig(name="bad", storage_path=storage, **run),
    ).fit()


# (build, the offending value as it must appear in the message)
AT_CONSTRUCTION: dict[str, tuple[Callable[[], Any], str]] = {
    "function-without-config": (lambda: Tuner(no_config), "no_config()"),
    "function-with-two-required-params": (
        lambda: Tuner(two_required),
        "two_required(config",
    ),
    "mode-maximize": (lambda: TuneConfig(mode="maximize"), "'maximize'"),  # type: ignore[arg-type]
    "param-space-list": (lambda: Tuner(train_fn, param_space=[1, 2]), "[1, 2]"),  # type: ignore[arg-type]
    "param-space-str": (lambda: Tuner(train_fn, param_space="abc"), "'abc'"),  # type: ignore[arg-type]
    "loguniform-zero-lower": (
        lambda: Tuner(train_fn, param_space={"lr": tune.loguniform(0, 1)}),
        "lower=0",
    ),
    "randint-empty-range": (
        lambda: Tuner(train_fn, param_space={"n": tune.randint(5, 5)}),
        "lower=5, upper=5",
    ),
    "empty-grid": (
        lambda: Tuner(train_fn, param_space={"a": tune.grid_search([])}),
        "[]",
    ),
    "num-samples-zero": (lambda: TuneConfig(num_samples=0), "got 0"),
    "name-escapes": (lambda: RunConfig(name="../escape"), "'../escape'"),
    "name-absolute": (lambda: RunConfig(name="/tmp/absolute"), "'/tmp/absolute'"),
    "name-too-long": (lambda: Tuner(train_fn, run_config=RunConfig(name="n" * 300)), "n" * 300),
    "storage-path-s3": (lambda: RunConfig(storage_path="s3://bucket/x"), "'s3://bucket/x'"),
    "storage-path-gs": (lambda: RunConfig(storage_path="gs://bucket/x"), "'gs://bucket/x'"),
    "num-to-keep-zero": (lambda: CheckpointConfig(num_to_keep=0), "got 0"),
    "fail-fast-with-retries": (
        lambda: FailureConfig(fail_fast=True, max_failures=2),
        "max_failures=2",
    ),
    "non-trainable-class": (lambda: Tuner(NotTrainable), "NotTrainable"),
    "checkpoint-frequency-on-function": (
        lambda: Tuner(
            train_fn,
            run_config=RunConfig(checkpoint_config=CheckpointConfig(checkpoint_frequency=1)),
        ),
        "checkpoint_frequency=1",
    ),
    "backend-unknown": (lambda: TuneConfig(backend="dask"), "'dask'"),  # type: ignore[arg-type]
    "tune-config-not-a-config": (
        lambda: Tuner(train_fn, tune_config={"metric": "score"}),  # type: ignore[arg-type]
        "dict",
    ),
}


@pytest.mark.parametrize(
    ("build", "shown"), list(AT_CONSTRUCTION.values()), ids=list(AT_CONSTRUCTION)
)
def test_rejected_at_construction(build: Callable[[], Any], shown: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(shown)) as info:
        build()
    assert isinstance(info.value, ValueError)


AT_FIT_START: dict[str, tuple[dict[str, Any], str]] = {
    "stop-not-a-stopper": ({"stop": "abc"}, "str"),
    "stop-nested-dict": ({"stop": {"info": {"loss": 1}}}, "'info'"),
    "stop-stopper-class": ({"stop": tune.Stopper}, "Stopper"),
    "search-alg-string": (
        {"tune_config": TuneConfig(backend="local", search_alg="random")},
        "'random'",
    ),
    "scheduler-string": (
        {"tune_config": TuneConfig(backend="local", scheduler="asha")},
        "'asha'",
    ),
}


@pytest.mark.parametrize(("kwargs", "shown"), list(AT_FIT_START.values()), ids=list(AT_FIT_START))
def test_rejected_at_fit_start(storage: str, kwargs: dict[str, Any], shown: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(shown)):
        fit_local(storage, **kwargs)
    assert list(Path(storage).iterdir()) == []  # no trial ran, nothing was written


@pytest.mark.parametrize("threshold", ["3", None], ids=["str", "none"])
def test_stop_threshold_must_be_a_number(storage: str, threshold: Any) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(threshold))):
        fit_local(storage, stop={"training_iteration": threshold})


def test_callbacks_must_be_callbacks(storage: str) -> None:
    with pytest.raises(ConfigError, match="not-a-callback"):
        fit_local(storage, callbacks=["not-a-callback"])
