"""Ray Tune's ``tests/test_function_api.py``, asserted against atune's function trainables.

Upstream drives the wrapped trainable by hand (``wrap_function``, ``save``/``restore``)
or runs ``tune.run``; here every behaviour goes through ``Tuner`` as a user would.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import atune as tune
from _checkpointing import read_json_checkpoint as _read, report_json
from atune.errors import ConfigError


def _fit(trainable: Any, storage: str, space: dict[str, Any] | None = None, **rc: Any) -> Any:
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, **rc),
    ).fit()


def _nothing(config: dict[str, Any]) -> None:
    pass


@pytest.mark.parametrize(
    "checkpoint_config",
    [tune.CheckpointConfig(checkpoint_frequency=1), tune.CheckpointConfig(checkpoint_at_end=True)],
)
def test_class_only_checkpoint_options_refused_for_functions(
    storage: str, checkpoint_config: tune.CheckpointConfig
) -> None:
    with pytest.raises(ValueError) as info:
        tune.Tuner(_nothing, run_config=tune.RunConfig(checkpoint_config=checkpoint_config))
    assert isinstance(info.value, ConfigError)


def test_checkpoint_reported_at_the_end_is_the_result_checkpoint(storage: str) -> None:
    def train(config: dict[str, Any]) -> None:
        for i in range(10):
            tune.report({"test": i})
        report_json({"test": 10}, {"hello": 1}, "ckpt.log")

    result = _fit(train, storage)[0]
    assert os.path.exists(os.path.join(result.checkpoint.path, "ckpt.log"))


def test_last_of_many_checkpoints_is_kept_with_num_to_keep(storage: str) -> None:
    def train(config: dict[str, Any]) -> None:
        for i in range(10):
            report_json({"test": i}, {"i": i}, "ckpt.log")
        report_json({"test": 10}, {"end": True}, "ckpt.log2")

    result = _fit(train, storage, checkpoint_config=tune.CheckpointConfig(num_to_keep=3))[0]
    assert os.path.exists(os.path.join(result.checkpoint.path, "ckpt.log2"))


def _fail_once_at_five(config: dict[str, Any]) -> None:
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        start = _read(checkpoint)["i"] + 1
    for i in range(start, 10):
        if i == 5 and not checkpoint:
            raise RuntimeError("try to fail me")
        report_json({"test": i}, {"i": i})


def test_retry_resumes_from_the_last_checkpoint(storage: str) -> None:
    result = _fit(_fail_once_at_five, storage, failure_config=tune.FailureConfig(max_failures=3))[0]
    assert result.error is None
    assert os.path.exists(os.path.join(result.checkpoint.path, "data.json"))
    # Five rows before the failure and five after the retry: none lost, none repeated.
    assert list(result.metrics_dataframe["test"]) == list(range(10))


def test_session_is_enabled_only_inside_a_trial(storage: str) -> None:
    def train(config: dict[str, Any]) -> dict[str, Any]:
        active = tune.get_context().get_trial_id() is not None
        return {"active": active}

    result = _fit(train, storage)[0]
    assert result.metrics["active"] is True


class _Data:
    def __init__(self) -> None:
        self.data = [0] * 500_000


@pytest.mark.ray
def test_with_parameters_passes_objects_that_trials_change_locally(storage: str) -> None:
    data = _Data()
    data.data[100] = 1

    def train(config: dict[str, Any], data: _Data) -> None:
        data.data[101] = 2  # a trial's change stays in the trial
        tune.report({"metric": len(data.data), "hundred": data.data[100], "seen": data.data[101]})

    grid = tune.Tuner(
        tune.with_parameters(train, data=data),
        # Ray: each trial gets its own copy from the object store (in-process trials of
        # the local backend would share the very object).
        tune_config=tune.TuneConfig(num_samples=2, backend="ray"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert data.data[101] == 0
    for result in grid:
        assert result.metrics["metric"] == 500_000
        assert result.metrics["hundred"] == 1
        assert result.metrics["seen"] == 2
        assert os.path.basename(result.path).startswith("train_")


def _report_length(config: dict[str, Any], data: Any = None) -> None:
    tune.report({"metric": len(data)})


def test_with_parameters_wrapper_pickles_small() -> None:
    import numpy as np
    from ray import cloudpickle  # what ships a trainable to Ray's workers

    trainable = tune.with_parameters(_report_length, data=np.random.rand(2 * 1024 * 1024))
    assert len(cloudpickle.dumps(trainable)) < 100 * 1024


def test_returned_value_becomes_the_default_metric(storage: str) -> None:
    def train(config: dict[str, Any]) -> int:
        return int(config["a"])

    grid = _fit(train, storage, {"a": tune.grid_search([4, 8])})
    assert sorted(r.metrics["_metric"] for r in grid) == [4, 8]


def test_returned_dict_is_the_result(storage: str) -> None:
    def train(config: dict[str, Any]) -> dict[str, Any]:
        return {"m": config["a"]}

    grid = _fit(train, storage, {"a": tune.grid_search([4, 8])})
    assert sorted(r.metrics["m"] for r in grid) == [4, 8]


def test_yielded_values_become_the_default_metric(storage: str) -> None:
    def train(config: dict[str, Any]) -> Any:
        for i in range(10):
            yield config["a"] + i

    grid = _fit(train, storage, {"a": tune.grid_search([4, 8])})
    assert sorted(r.metrics["_metric"] for r in grid) == [4 + 9, 8 + 9]


def test_yielded_dicts_are_results(storage: str) -> None:
    def train(config: dict[str, Any]) -> Any:
        for i in range(10):
            yield {"m": config["a"] + i}

    grid = _fit(train, storage, {"a": tune.grid_search([4, 8])})
    assert sorted(r.metrics["m"] for r in grid) == [4 + 9, 8 + 9]
