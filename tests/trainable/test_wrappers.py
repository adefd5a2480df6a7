"""``with_parameters``: the wrapper pickles small, and trials still get the objects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import ray
from ray import cloudpickle

import atune as tune

_50_MB = 50 * 1024 * 1024
_SMALL = 64 * 1024  # a pickle of the wrapper: code and a handle, never the data


def _uses_data(config: dict[str, Any], data: np.ndarray) -> None:
    tune.report({"checksum": float(data[:10].sum()), "nbytes": int(data.nbytes)})


class _UsesData(tune.Trainable):
    def setup(self, config: dict[str, Any], data: Any = None) -> None:  # type: ignore[override]
        self.data = data

    def step(self) -> dict[str, Any]:
        return {"nbytes": int(self.data.nbytes), "done": True}


@pytest.fixture(scope="module")
def big_array() -> np.ndarray:
    return np.ones(_50_MB // 8, dtype=np.float64)


@pytest.mark.parametrize("trainable", [_uses_data, _UsesData], ids=["function", "class"])
def test_the_wrapper_pickles_small_and_loads_back(trainable: Any, big_array: np.ndarray) -> None:
    wrapped = tune.with_parameters(trainable, data=big_array)
    payload = cloudpickle.dumps(wrapped)
    assert len(payload) < _SMALL
    loaded = cloudpickle.loads(payload)
    if ray.is_initialized():  # an earlier test of the session started Ray: refs travelled
        assert np.array_equal(loaded._atune_parameters["data"], big_array)
    else:  # a reference to this process's objects: the same array, no copy
        assert loaded._atune_parameters["data"] is big_array


def test_the_class_that_runs_a_wrapped_function_pickles_small(big_array: np.ndarray) -> None:
    from atune.tuner import as_trainable_class

    cls = as_trainable_class(tune.with_parameters(_uses_data, data=big_array))
    assert len(cloudpickle.dumps(cls)) < _SMALL


def test_the_in_process_backend_hands_trials_the_object_itself(
    storage: str, big_array: np.ndarray
) -> None:
    seen: list[Any] = []

    def keeps(config: dict[str, Any], data: np.ndarray) -> None:
        seen.append(data)
        tune.report({"x": 1})

    results = tune.Tuner(
        tune.with_parameters(keeps, data=big_array),
        param_space={"i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results.num_errors == 0
    assert len(seen) == 2 and all(data is big_array for data in seen)


def _uses_two(config: dict[str, Any], data: np.ndarray, extra: int = 0) -> None:
    tune.report({"extra": extra})


def test_with_parameters_still_composes_and_keeps_the_original(big_array: np.ndarray) -> None:
    first = tune.with_parameters(_uses_two, data=big_array)
    second = tune.with_parameters(first, extra=3)
    assert dict(second._atune_parameters) == {"data": big_array, "extra": 3}
    assert set(first._atune_parameters) == {"data"}
    assert not hasattr(_uses_two, "_atune_parameters")


@pytest.mark.ray
def test_with_ray_the_wrapper_pickles_as_object_store_refs(big_array: np.ndarray) -> None:
    wrapped = tune.with_parameters(_uses_data, data=big_array)
    payload = cloudpickle.dumps(wrapped)
    assert len(payload) < _SMALL
    assert len(cloudpickle.dumps(wrapped)) < _SMALL  # put once, the refs reused

    @ray.remote(num_cpus=0)
    def nbytes_in_a_worker(blob: bytes) -> int:
        fn = cloudpickle.loads(blob)
        return int(fn._atune_parameters["data"].nbytes)

    assert ray.get(nbytes_in_a_worker.remote(payload)) == big_array.nbytes
