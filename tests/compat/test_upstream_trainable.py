"""Ray Tune's ``tests/test_trainable.py``: a checkpoint of every form restores.

Upstream calls ``save``/``restore`` on a Ray actor by hand; here a trial fails once after
its first checkpoint and its retry restores from that checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_json


class _Saving(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.kind = config["kind"]
        self.restored = False

    def step(self) -> dict[str, Any]:
        if self.iteration == 1 and not self.restored:
            raise RuntimeError("fail once, after the first checkpoint")
        return {"restored": self.restored}

    def save_checkpoint(self, checkpoint_dir: str) -> Any:
        if self.kind == "object":
            return {"data": 1}
        subdir = os.path.join(checkpoint_dir, "subdir")
        os.makedirs(subdir, exist_ok=True)
        path = os.path.join(subdir, "checkpoint.json")
        with open(path, "w") as f:
            json.dump({"data": 1}, f)
        return {"root": checkpoint_dir, "subdir": subdir, "checkpoint": path}.get(self.kind)

    def load_checkpoint(self, checkpoint: Any) -> None:
        if self.kind == "object":
            data = {k: v for k, v in checkpoint.items() if not k.startswith("_")}
        else:
            assert isinstance(checkpoint, str)
            with open(os.path.join(checkpoint, "subdir", "checkpoint.json")) as f:
                data = json.load(f)
        assert data == {"data": 1}
        self.restored = True


def _run(storage: str, kind: str) -> Any:
    [result] = tune.Tuner(
        _Saving,
        param_space={"kind": kind},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 2},
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()
    return result


@pytest.mark.parametrize("kind", ["object", "root"])
def test_class_checkpoint_of_each_form_restores(storage: str, kind: str) -> None:
    result = _run(storage, kind)
    assert result.error is None
    assert result.metrics["restored"] is True


@pytest.mark.parametrize("kind", ["subdir", "checkpoint"])
def test_class_checkpoint_path_inside_the_dir_is_refused(storage: str, kind: str) -> None:
    # Ray Tune >= 2.7 accepts only None, a dict or the given directory, as atune does.
    result = _run(storage, kind)
    assert isinstance(result.error, ValueError)
    assert "save_checkpoint() must return None" in str(result.error)


def _function(config: dict[str, Any]) -> None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with (
            checkpoint.as_directory() as directory,
            open(os.path.join(directory, "data.json")) as f,
        ):
            assert json.load(f) == {"checkpoint_data": 5}
        tune.report({"restored": True})
        return
    report_json({"restored": False}, {"checkpoint_data": 5})
    raise RuntimeError("fail once, after the first checkpoint")


def test_function_checkpoint_restores(storage: str) -> None:
    [result] = tune.Tuner(
        _function,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, failure_config=tune.FailureConfig(max_failures=1)
        ),
    ).fit()
    assert result.error is None
    assert result.metrics["restored"] is True
