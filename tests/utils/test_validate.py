"""``validate_save_restore``: passes for a correct trainable, names the fault otherwise."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import atune as tune
from atune.utils import validate_save_restore


class Counter(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.value = config.get("start", 0)

    def step(self) -> dict[str, Any]:
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint: Any) -> None:
        with open(os.path.join(checkpoint, "state.json")) as f:
            self.value = json.load(f)["value"]


class DictCounter(Counter):
    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:  # type: ignore[override]
        return {"value": self.value}

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.value = checkpoint["value"]


class NoCheckpointing(tune.Trainable):
    def step(self) -> dict[str, Any]:
        return {"x": 1}


class ForgetsIteration(Counter):
    def step(self) -> dict[str, Any]:
        return {"value": 0, "training_iteration": 1}


def test_passes_for_a_trainable_that_round_trips() -> None:
    assert validate_save_restore(Counter) is True
    assert validate_save_restore(DictCounter, config={"start": 10}) is True


def test_fails_for_a_trainable_without_checkpointing() -> None:
    with pytest.raises(NotImplementedError, match="save_checkpoint"):
        validate_save_restore(NoCheckpointing)


def test_names_the_wrong_iteration() -> None:
    with pytest.raises(AssertionError, match="training_iteration=1"):
        validate_save_restore(ForgetsIteration)
