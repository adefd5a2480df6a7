from __future__ import annotations
import pytest
import atune as tune
from atune import Tuner, TuneConfig, RunConfig

HELPER = 3
import sys


def helper(i):
    return i * HELPER

def f(config):
    for i in range(3):
        tune.report({"score": helper(i)})

@pytest.mark.ray
async def test_probe(storage):
    import time, ray.cloudpickle
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    t0 = time.time()
    r = await Tuner(f, tune_config=TuneConfig(backend="ray"), run_config=RunConfig(storage_path=storage)).fit()
    print("t", time.time() - t0, [e.error_message for e in r.errors])
    assert r[0].metrics["score"] == 6
    t0 = time.time()
    r = await Tuner(f, tune_config=TuneConfig(backend="ray"), run_config=RunConfig(storage_path=storage)).fit()
    print("t", time.time() - t0, [e.error_message for e in r.errors])
