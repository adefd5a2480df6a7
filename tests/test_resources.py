"""Resources, actor reuse and ``with_parameters`` on a real (shared, 2-CPU) Ray."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atune as tune
from _events import EventLog
from atune.events import ActorFreed, TrialStarted

pytestmark = pytest.mark.ray


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# ------------------------------------------------------------------------ actor reuse
class QuadraticTrainable(tune.Trainable):
    """The seed page's reuse example; ``setup`` appends a line to a file per call."""

    def setup(self, config: dict[str, Any]) -> None:
        self.config = config
        with open(config["setup_log"], "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1)  # the expensive setup that reuse avoids
        self.max_steps = 5
        self.step_count = 0

    def step(self) -> dict[str, Any]:
        h1 = self.config["hparam1"]
        h2 = self.config["hparam2"]
        metrics: dict[str, Any] = {"loss": (h1 - 3) ** 2 + (h2 - 5) ** 2}
        self.step_count += 1
        if self.step_count > self.max_steps:
            metrics["done"] = True
        return metrics

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.config = new_config
        self.step_count = 0
        return True


def test_reuse_runs_setup_once_for_ten_trials(storage: str, tmp_path: Path) -> None:
    setup_log = tmp_path / "setup.log"
    events = EventLog()
    results = tune.Tuner(
        QuadraticTrainable,
        param_space={
            "hparam1": tune.uniform(-10, 10),
            "hparam2": tune.uniform(-10, 10),
            "setup_log": str(setup_log),
        },
        tune_config=tune.TuneConfig(num_samples=10, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            callbacks=[events],
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    ).fit()
    assert len(results) == 10 and results.num_errors == 0
    assert all(r.metrics["training_iteration"] == 6 for r in results)
    assert _count_lines(setup_log) == 1  # counted across processes, through the file
    started = [e for e in events.events if isinstance(e, TrialStarted)]
    assert sum(e.reused for e in started) == 9
    freed = [e.action for e in events.events if isinstance(e, ActorFreed)]
    assert freed.count("cached") == 10  # the last one is stopped when fit() ends


class DecliningReset(QuadraticTrainable):
    def reset_config(self, new_config: dict[str, Any]) -> bool:
        return False


def test_reset_config_false_falls_back_to_a_fresh_actor(storage: str, tmp_path: Path) -> None:
    setup_log = tmp_path / "setup.log"
    results = tune.Tuner(
        DecliningReset,
        param_space={"hparam1": 1.0, "hparam2": 2.0, "setup_log": str(setup_log)},
        tune_config=tune.TuneConfig(num_samples=3, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    ).fit()
    assert results.num_errors == 0 and results.num_terminated == 3
    assert _count_lines(setup_log) == 3  # a fresh actor (and setup) per trial


def _pid_trainable(config: dict[str, Any]) -> None:
    tune.report({"pid": os.getpid()})


def test_function_trainables_are_reused_by_default(storage: str) -> None:
    results = tune.Tuner(
        _pid_trainable,
        tune_config=tune.TuneConfig(num_samples=6, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert results.num_errors == 0
    assert len({r.metrics["pid"] for r in results}) <= 2


# ---------------------------------------------------------------- placement groups
def _distributed_trainable(config: dict[str, Any]) -> None:
    import ray

    pg = ray.util.get_current_placement_group()

    @ray.remote(num_cpus=0.25)
    def child() -> int:
        return os.getpid()

    child_pid = ray.get(child.remote())  # runs inside this trial's own bundles
    table = ray.util.placement_group_table(pg)
    tune.report(
        {
            "num_bundles": len(pg.bundle_specs),
            "bundles": [dict(b) for b in pg.bundle_specs],
            "pg_state": table["state"],
            "child_pid": child_pid,
            "resources": tune.get_context().get_trial_resources().bundles,
        }
    )


def test_five_bundle_placement_group(storage: str) -> None:
    pgf = tune.PlacementGroupFactory(
        [{"CPU": 0.5}, {"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}]
    )
    results = tune.Tuner(
        tune.with_resources(_distributed_trainable, pgf),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    (result,) = list(results)
    assert result.error is None, result.error
    assert result.metrics["num_bundles"] == 5
    assert result.metrics["bundles"] == pgf.bundles
    assert result.metrics["pg_state"] == "CREATED"
    assert result.metrics["child_pid"] != result.metrics["pid"]
    assert result.metrics["resources"] == pgf.bundles


def _resources_trainable(config: dict[str, Any]) -> None:
    tune.report({"ok": 1})


@pytest.mark.timeout(60)  # no hang: Ray Tune leaves such trials PENDING forever
def test_infeasible_requests_fail_fast_and_others_finish(storage: str) -> None:
    results = tune.Tuner(
        tune.with_resources(_resources_trainable, lambda config: config["resources"]),
        param_space={
            "resources": tune.grid_search([{"CPU": 64}, {"CPU": 1}, {"GPU": 1}, {"CPU": 0.5}])
        },
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert results.num_errors == 2 and results.num_terminated == 2
    messages = [str(r.error) for r in results if r.error is not None]
    assert "'CPU': 64.0" in messages[0] and "'CPU': 2.0" in messages[0]
    assert "'GPU': 1.0" in messages[1] and "capacity" in messages[1]


class _ClassWithDefaultResources(tune.Trainable):
    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> Any:
        return {"CPU": 0.5}

    def step(self) -> dict[str, Any]:
        return {"resources": self.trial_resources.bundles, "done": True}


def test_default_resource_request_of_a_class(storage: str) -> None:
    (result,) = list(
        tune.Tuner(
            _ClassWithDefaultResources,
            run_config=tune.RunConfig(
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            ),
        ).fit()
    )
    assert result.metrics["resources"] == [{"CPU": 0.5}]


# ----------------------------------------------------------------- with_parameters
def _data_trainable(config: dict[str, Any], data: np.ndarray) -> None:
    tune.report({"checksum": float(data.sum()), "nbytes": int(data.nbytes), "i": config["i"]})


def test_with_parameters_puts_a_50mb_array_once(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    data = np.arange(50 * 1024 * 1024 // 8, dtype=np.float64)
    puts: list[Any] = []
    real_put = ray.put

    def counting_put(value: Any, *args: Any, **kwargs: Any) -> Any:
        puts.append(value)
        return real_put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", counting_put)
    results = tune.Tuner(
        tune.with_parameters(_data_trainable, data=data),
        param_space={"i": tune.grid_search(list(range(8)))},
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert results.num_errors == 0 and len(results) == 8
    assert sum(1 for value in puts if value is data) == 1
    assert {r.metrics["checksum"] for r in results} == {float(data.sum())}
    assert {r.metrics["nbytes"] for r in results} == {50 * 1024 * 1024}


class _ClassWithParameters(tune.Trainable):
    def setup(self, config: dict[str, Any], offset: int = 0) -> None:  # type: ignore[override]
        self.offset = offset

    def step(self) -> dict[str, Any]:
        return {"value": self.offset + self.config["x"], "done": True}


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_with_parameters_for_classes(storage: str, backend: str) -> None:
    (result,) = list(
        tune.Tuner(
            tune.with_parameters(_ClassWithParameters, offset=100),
            param_space={"x": 5},
            tune_config=tune.TuneConfig(backend=backend),  # type: ignore[arg-type]
            run_config=tune.RunConfig(
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            ),
        ).fit()
    )
    assert result.metrics["value"] == 105
