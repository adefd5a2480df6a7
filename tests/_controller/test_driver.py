"""The driver's shutdown: what happens to calls that return while an experiment stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import atune as tune
from atune._controller import _driver
from atune._controller._core import Command, Message
from atune.errors import TuneError


def _two_reports(config: dict[str, Any]) -> None:
    tune.report({"score": config["x"]})
    tune.report({"score": config["x"] + 1})


class _StopsTheExperiment(tune.Callback):
    """On trial 0's first result: let trial 1's call return, then fail the experiment."""

    def __init__(self, gate: asyncio.Future[None]) -> None:
        self.gate = gate

    def on_trial_result(
        self, iteration: int, trials: Any, trial: Any, result: Any, **_: Any
    ) -> None:
        if trial.trial_id.endswith("00000"):
            self.gate.set_result(None)
            raise RuntimeError("callback failed on purpose")


async def test_a_call_that_returns_while_the_experiment_stops_is_dropped_quietly(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trial 1's call returns in the same loop cycle as the driver stops reading (its
    # awaited future is already done, so the cancellation reaches it one cycle late): its
    # message must not land in a closed stream and turn the error into BrokenResourceError.
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    execute = _driver.Driver._execute

    async def gated(self: _driver.Driver, command: Command) -> list[Message]:
        messages = await execute(self, command)
        if command.trial_id.endswith("00001"):  # type: ignore[union-attr]
            await gate
        return messages

    monkeypatch.setattr(_driver.Driver, "_execute", gated)
    tuner = tune.Tuner(
        _two_reports,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            name="race", storage_path=storage, callbacks=[_StopsTheExperiment(gate)]
        ),
    )
    with pytest.raises(TuneError, match="callback failed on purpose") as raised:
        await tuner.fit()
    assert "BrokenResourceError" not in repr(raised.value)
