"""Bad input fails early, with a ``ConfigError`` (a ``ValueError``) that names the value.

Each case fails at ``Tuner(...)`` (or while building its arguments: a config object or a
search-space domain), or at the start of ``fit()`` before any trial runs. No Ray needed:
cases that reach ``fit()`` use the in-process backend.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from atune.errors import ConfigError, NotSerializableError


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
    "storage-path-unknown-scheme": (
        lambda: Tuner(train_fn, run_config=RunConfig(storage_path="nosuch://bucket/x")),
        "'nosuch://bucket/x'",
    ),
    "storage-path-file-uri-host": (
        lambda: RunConfig(storage_path="file://otherhost/x"),
        "'file://otherhost/x'",
    ),
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


# ------------------------------------------------------------------------ metric check
def _reports(config: dict[str, Any]) -> None:
    tune.report(config["report"])
    tune.report(config["report"])


def _fit_metric(storage: str, reports: list[dict[str, Any]], metric: str = "loss") -> Any:
    return Tuner(
        _reports,
        param_space={"report": tune.grid_search(reports)},
        tune_config=TuneConfig(backend="local", metric=metric, mode="min"),
        run_config=RunConfig(storage_path=storage, verbose=0),
    ).fit()


def test_a_result_without_the_metric_fails_only_that_trial(storage: str) -> None:
    from atune.errors import MetricError

    results = _fit_metric(storage, [{"acc": 0.5}, {"loss": 1.0}])
    assert results.num_errors == 1 and results.num_terminated == 1
    (error,) = results.errors
    assert isinstance(error, MetricError) and isinstance(error, ValueError)
    assert "'loss'" in str(error) and "TuneConfig(metric=...)" in str(error)
    assert "acc" in str(error) and "training_iteration" in str(error)  # what it did report
    assert results[1].metrics["loss"] == 1.0


@pytest.mark.parametrize(
    ("value", "type_name"), [("low", "str"), (False, "bool"), (None, "NoneType")]
)
def test_a_metric_that_is_not_a_number_fails_the_trial(
    storage: str, value: Any, type_name: str
) -> None:
    results = _fit_metric(storage, [{"loss": value}])
    (error,) = results.errors
    assert f"as {type_name} {value!r}, not a real number" in str(error)


def test_nan_inf_and_nested_metrics_are_allowed(storage: str) -> None:
    nested = [{"val": {"loss": v}} for v in (float("nan"), float("inf"), 2.0)]
    results = _fit_metric(storage, nested, metric="val/loss")
    assert results.num_errors == 0 and results.num_terminated == 3


def test_strict_metric_checking_can_be_turned_off(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    results = _fit_metric(storage, [{"acc": 0.5}])
    assert results.num_errors == 0


# --------------------------------------------------------------- serialisation checks
@pytest.mark.parametrize("backend", ["local", "ray"])
@pytest.mark.parametrize(
    ("space", "path"),
    [
        ({"opt": {"k": threading.Lock()}}, "'opt.k'"),
        ({"layers": [1, {"lock": threading.Lock()}]}, "'layers[1].lock'"),
        ({"opt": tune.grid_search([1, threading.Lock()])}, "'opt'"),
        ({"opt": tune.choice([threading.Lock()])}, "'opt'"),
    ],
    ids=["nested", "in-list", "grid", "choice"],
)
def test_a_config_value_that_cannot_reach_a_trial_fails_at_tuner(
    space: dict[str, Any], path: str, backend: str
) -> None:
    with pytest.raises(NotSerializableError, match=re.escape(path)) as info:
        Tuner(train_fn, param_space=space, tune_config=TuneConfig(backend=backend))  # type: ignore[arg-type]
    assert "_thread.lock" in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, TypeError)


def test_a_trainable_that_does_not_pickle_fails_at_tuner_on_ray_only() -> None:
    lock = threading.Lock()

    def captures_a_lock(config: dict[str, Any]) -> None:  # pickled by value: a closure
        with lock:
            tune.report({"score": 1})

    with pytest.raises(TypeError, match="was found to be non-serializable") as info:
        Tuner(captures_a_lock, tune_config=TuneConfig(backend="ray"))
    assert isinstance(info.value, NotSerializableError)
    # diagnose_serialization's report names the culprit.
    assert "[name='lock']... FAILED" in str(info.value)
    Tuner(captures_a_lock, tune_config=TuneConfig(backend="local"))  # nothing is pickled


def _sampled_lock(config: dict[str, Any]) -> Any:
    return threading.Lock() if config["bad"] else 1


def _reports_score(config: dict[str, Any]) -> None:
    tune.report({"score": 1})


@pytest.mark.ray
def test_a_sampled_value_that_does_not_pickle_fails_only_its_trial_on_ray(storage: str) -> None:
    results = Tuner(
        _reports_score,
        param_space={
            "bad": tune.grid_search([True, False]),
            "opt": {"k": tune.sample_from(_sampled_lock)},
        },
        tune_config=TuneConfig(backend="ray"),
        run_config=RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results.num_errors == 1 and results.num_terminated == 1
    (error,) = results.errors
    assert isinstance(error, NotSerializableError)
    assert "'opt.k'" in str(error) and "_thread.lock" in str(error)


# ------------------------------------------------- schedulers and searchers (issue 11)
def _asha(**kwargs: Any) -> Any:
    from atune.schedulers import ASHAScheduler

    return ASHAScheduler(**kwargs)


def _median(**kwargs: Any) -> Any:
    from atune.schedulers import MedianStoppingRule

    return MedianStoppingRule(**kwargs)


def _optuna(**kwargs: Any) -> Any:
    from atune.search.optuna import OptunaSearch

    return OptunaSearch(**kwargs)


def _hyperopt(**kwargs: Any) -> Any:
    from atune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(**kwargs)


def _limited(searcher: Any) -> Any:
    from atune.search import ConcurrencyLimiter

    return ConcurrencyLimiter(searcher, max_concurrent=1)


def _repeated(searcher: Any) -> Any:
    from atune.search import Repeater

    return Repeater(searcher, repeat=2)


GRID = {"lr": tune.grid_search([0.1, 0.2])}

# At construction: (build, error type, what the message must show).
SCHEDULING_AT_CONSTRUCTION: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    "asha-grace-period-above-max-t": (
        lambda: _asha(grace_period=10, max_t=5),
        ValueError,
        "grace_period (10) must be <= max_t (5)",
    ),
    "asha-reduction-factor-1": (
        lambda: _asha(reduction_factor=1),
        ValueError,
        "reduction_factor must be > 1, got 1",
    ),
    "asha-reduction-factor-0.5": (
        lambda: _asha(reduction_factor=0.5),
        ValueError,
        "reduction_factor must be > 1, got 0.5",
    ),
    "asha-max-t-str": (lambda: _asha(max_t="9"), TypeError, "max_t must be a number, got '9'"),
    "asha-mode": (lambda: _asha(mode="maximize"), ValueError, "'maximize'"),
    "median-mode": (lambda: _median(mode="best"), ValueError, "'best'"),
    "optuna-grid-in-space": (
        lambda: _optuna(space=GRID, metric="m", mode="min"),
        ValueError,
        "grid_search at 'lr'",
    ),
    "hyperopt-grid-in-space": (
        lambda: _hyperopt(space=GRID, metric="m", mode="min"),
        ValueError,
        "grid_search at 'lr'",
    ),
}


@pytest.mark.parametrize(
    ("build", "error", "shown"),
    list(SCHEDULING_AT_CONSTRUCTION.values()),
    ids=list(SCHEDULING_AT_CONSTRUCTION),
)
def test_scheduler_and_searcher_arguments_are_checked_at_construction(
    build: Callable[[], Any], error: type[Exception], shown: str
) -> None:
    if "_optuna" in build.__code__.co_names:
        pytest.importorskip("optuna")
    if "_hyperopt" in build.__code__.co_names:
        pytest.importorskip("hyperopt")
    with pytest.raises(error, match=re.escape(shown)):
        build()


def _no_trial_started(storage: str) -> None:
    """``Tuner`` claimed its directory, but ``fit()`` created no trial in it."""
    for experiment in Path(storage).iterdir():
        assert [p.name for p in experiment.iterdir() if p.is_dir()] == []
        journal = experiment / "events.jsonl"
        assert not journal.exists() or "trial_created" not in journal.read_text()


# At the start of fit(): (TuneConfig arguments, param_space, what the message must show).
SCHEDULING_AT_FIT: dict[str, tuple[Callable[[], dict[str, Any]], dict[str, Any], str]] = {
    "asha-no-metric-no-mode": (lambda: {"scheduler": _asha()}, {}, "has no metric and mode"),
    "asha-no-mode": (lambda: {"scheduler": _asha(metric="score")}, {}, "has no mode"),
    "asha-only-tune-config-mode": (
        lambda: {"scheduler": _asha(), "mode": "max"},
        {},
        "AsyncHyperBandScheduler has no metric",
    ),
    "median-no-metric": (
        lambda: {"scheduler": _median(mode="max")},
        {},
        "MedianStoppingRule has no metric",
    ),
    "asha-metric-on-both": (
        lambda: {"scheduler": _asha(metric="score", mode="max"), "metric": "acc"},
        {},
        "metric is set both on AsyncHyperBandScheduler (metric='score') and on TuneConfig "
        "(metric='acc')",
    ),
    "median-mode-on-both": (
        lambda: {"scheduler": _median(metric="score", mode="max"), "mode": "min"},
        {},
        "mode is set both on MedianStoppingRule (mode='max') and on TuneConfig (mode='min')",
    ),
    "optuna-no-metric": (
        lambda: {"search_alg": _optuna(mode="min")},
        {"x": tune.uniform(0, 1)},
        "OptunaSearch needs a metric",
    ),
    "optuna-no-mode": (
        lambda: {"search_alg": _optuna(), "metric": "score"},
        {"x": tune.uniform(0, 1)},
        "OptunaSearch needs a mode",
    ),
    "optuna-metric-on-both": (
        lambda: {"search_alg": _optuna(metric="score", mode="max"), "metric": "acc"},
        {"x": tune.uniform(0, 1)},
        "metric is set both on OptunaSearch (metric='score') and on TuneConfig (metric='acc')",
    ),
    "optuna-grid-in-param-space": (
        lambda: {"search_alg": _optuna(metric="score", mode="max")},
        GRID,
        "grid_search at 'lr'",
    ),
    "limited-optuna-no-metric": (
        lambda: {"search_alg": _limited(_optuna(mode="max"))},
        {"x": tune.uniform(0, 1)},
        "OptunaSearch needs a metric",
    ),
    "repeated-optuna-metric-on-both": (
        lambda: {"search_alg": _repeated(_optuna(metric="score", mode="max")), "metric": "acc"},
        {"x": tune.uniform(0, 1)},
        "on OptunaSearch (metric='score')",
    ),
    "hyperopt-no-mode": (
        lambda: {"search_alg": _hyperopt(metric="score")},
        {"x": tune.uniform(0, 1)},
        "HyperOptSearch needs a mode",
    ),
    "hyperopt-metric-on-both": (
        lambda: {"search_alg": _hyperopt(metric="score", mode="max"), "metric": "acc"},
        {"x": tune.uniform(0, 1)},
        "on HyperOptSearch (metric='score') and on TuneConfig (metric='acc')",
    ),
    "hyperopt-grid-in-param-space": (
        lambda: {"search_alg": _hyperopt(metric="score", mode="max")},
        GRID,
        "grid_search at 'lr'",
    ),
}


@pytest.mark.parametrize(
    ("tune_kwargs", "space", "shown"), list(SCHEDULING_AT_FIT.values()), ids=list(SCHEDULING_AT_FIT)
)
def test_scheduler_and_searcher_settings_fail_before_any_trial(
    storage: str, tune_kwargs: Callable[[], dict[str, Any]], space: dict[str, Any], shown: str
) -> None:
    names = tune_kwargs.__code__.co_names
    if "_optuna" in names:
        pytest.importorskip("optuna")
    if "_hyperopt" in names:
        pytest.importorskip("hyperopt")
    tuner = Tuner(
        train_fn,
        param_space=space,
        tune_config=TuneConfig(backend="local", **tune_kwargs()),
        run_config=RunConfig(name="bad", storage_path=storage),
    )
    with pytest.raises(ConfigError, match=re.escape(shown)) as info:
        tuner.fit()
    assert isinstance(info.value, ValueError)
    _no_trial_started(storage)
