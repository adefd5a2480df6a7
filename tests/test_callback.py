"""``Callback``: Ray Tune's full hook set, async hooks, state across restore, misspellings."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest

import atune as tune
from atune.errors import TuneError
from atune.storage._layout import JOURNAL_FILE


class _Recorder(tune.Callback):
    """Records ``(hook, trial_id)`` for every hook, in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.setup_info: dict[str, Any] = {}
        self.steps: list[tuple[str, int]] = []

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self.setup_info = info
        self.calls.append(("setup", None))

    def on_step_begin(self, iteration: int, trials: Any, **info: Any) -> None:
        self.steps.append(("begin", iteration))

    def on_step_end(self, iteration: int, trials: Any, **info: Any) -> None:
        self.steps.append(("end", iteration))

    def _hook(name: str) -> Any:  # type: ignore[misc]
        def hook(self: _Recorder, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.calls.append((name, trial.trial_id))

        hook.__name__ = name
        return hook

    on_trial_start = _hook("on_trial_start")
    on_trial_restore = _hook("on_trial_restore")
    on_trial_result = _hook("on_trial_result")
    on_checkpoint = _hook("on_checkpoint")
    on_trial_save = _hook("on_trial_save")
    on_trial_complete = _hook("on_trial_complete")
    on_trial_recover = _hook("on_trial_recover")
    on_trial_error = _hook("on_trial_error")

    def on_experiment_end(self, trials: Any, **info: Any) -> None:
        self.calls.append(("on_experiment_end", None))


class _FailsOnceAfterACheckpoint(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.marker = Path(config["marker"])

    def step(self) -> dict[str, Any]:
        if self.iteration == 1 and not self.marker.exists():
            self.marker.write_text("failed once")
            raise RuntimeError("first attempt fails after its checkpoint")
        return {"score": self.iteration, "done": self.iteration >= 2}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass


def _run(storage: str, trainable: Any, callbacks: list[tune.Callback], **config: Any) -> Any:
    return tune.Tuner(
        trainable,
        param_space=config.pop("param_space", {}),
        tune_config=tune.TuneConfig(backend="local", **config.pop("tune", {})),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=callbacks, **config),
    ).fit()


def test_every_hook_fires_in_order_with_a_retry_from_a_checkpoint(
    storage: str, tmp_path: Path
) -> None:
    recorder = _Recorder()
    results = _run(
        storage,
        _FailsOnceAfterACheckpoint,
        [recorder],
        param_space={"marker": str(tmp_path / "marker")},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        failure_config=tune.FailureConfig(max_failures=1),
    )
    assert results.num_errors == 0
    hooks = [name for name, _ in recorder.calls]
    assert hooks[0] == "setup" and hooks[-1] == "on_experiment_end"
    assert hooks[1:-1] == [
        "on_trial_start",
        "on_trial_result",
        "on_checkpoint",
        "on_trial_save",
        "on_trial_recover",
        "on_trial_start",
        "on_trial_restore",  # the retry resumed from checkpoint_000000
        "on_trial_result",
        "on_checkpoint",
        "on_trial_save",
        "on_trial_result",
        "on_checkpoint",
        "on_trial_save",
        "on_trial_complete",
    ]
    assert recorder.setup_info["num_samples"] == 1
    assert recorder.setup_info["total_num_samples"] == 1
    # Step hooks bracket every controller step; the counter grows by one per step.
    begins = [i for kind, i in recorder.steps if kind == "begin"]
    ends = [i for kind, i in recorder.steps if kind == "end"]
    assert begins == list(range(len(begins))) and ends == [i + 1 for i in begins]


def test_a_trial_that_fails_for_good_gets_on_trial_error(storage: str) -> None:
    def fails(config: dict[str, Any]) -> None:
        raise ValueError("no")

    recorder = _Recorder()
    results = _run(storage, fails, [recorder])
    assert results.num_errors == 1
    hooks = [name for name, _ in recorder.calls]
    assert "on_trial_error" in hooks and "on_trial_recover" not in hooks


async def test_async_hooks_run_in_order_without_stalling_the_experiment(storage: str) -> None:
    everything_done = asyncio.Event()

    class _Blocks(tune.Callback):
        """Its first hook waits until every trial completed: only a free controller gets there."""

        def __init__(self) -> None:
            self.results: list[tuple[str, int]] = []

        async def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            await everything_done.wait()
            self.results.append((trial.trial_id, result["i"]))

        def on_experiment_end(self, trials: Any, **info: Any) -> None:
            self.results.append(("end", len(trials)))

    class _Counts(tune.Callback):
        def __init__(self) -> None:
            self.completed = 0

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.completed += 1
            if self.completed == 2:
                everything_done.set()

    def reports(config: dict[str, Any]) -> None:
        for i in range(3):
            tune.report({"i": i})

    blocking = _Blocks()
    results = await tune.Tuner(
        reports,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[blocking, _Counts()]),
    ).fit()
    assert results.num_errors == 0
    # fit() returned only after the async hooks ran, each trial's results in order.
    assert blocking.results[-1] == ("end", 2)
    per_trial: dict[str, list[int]] = {}
    for trial_id, i in blocking.results[:-1]:
        per_trial.setdefault(trial_id, []).append(i)
    assert list(per_trial.values()) == [[0, 1, 2], [0, 1, 2]]


async def test_an_async_hook_that_raises_aborts_fit_with_tune_error(storage: str) -> None:
    class _Raises(tune.Callback):
        async def on_trial_result(self, *args: Any, **info: Any) -> None:
            raise RuntimeError("async hook failed on purpose")

    def reports(config: dict[str, Any]) -> None:
        for i in range(1000):
            tune.report({"i": i})

    with pytest.raises(TuneError, match="async hook failed on purpose"):
        await tune.Tuner(
            reports,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[_Raises()]),
        ).fit()


async def test_on_experiment_end_runs_when_fit_is_cancelled(storage: str) -> None:
    class _Cancels(tune.Callback):
        def __init__(self, scope: anyio.CancelScope) -> None:
            self.scope = scope
            self.ended = False

        def on_trial_result(self, *args: Any, **info: Any) -> None:
            self.scope.cancel()

        def on_experiment_end(self, trials: Any, **info: Any) -> None:
            self.ended = True

    def endless(config: dict[str, Any]) -> None:
        while True:
            tune.report({"x": 1})

    with anyio.CancelScope() as scope:
        callback = _Cancels(scope)
        await tune.Tuner(
            endless,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[callback]),
        ).fit()
    assert scope.cancelled_caught and callback.ended


def test_a_misspelt_hook_warns_once_at_class_creation() -> None:
    with pytest.warns(UserWarning, match=r"on_trial_reslt.*'on_trial_result'") as caught:

        class _Typo(tune.Callback):
            def on_trial_reslt(self, *args: Any, **info: Any) -> None:
                pass

            def on_my_own_thing(self) -> None:  # not close to any hook: no warning
                pass

    assert len(caught) == 1


# ------------------------------------------------------------ state across restore
ITERATIONS = 6


def _checkpointing(config: dict[str, Any]) -> None:
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            start = json.load(f)["i"]
    for i in range(start + 1, ITERATIONS + 1):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": i}, f)
            tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))


class _Counter(tune.Callback):
    def __init__(self, stop_after: int | None = None, scope: Any = None) -> None:
        self.seen = 0
        self.stop_after = stop_after
        self.scope = scope

    def on_trial_result(self, *args: Any, **info: Any) -> None:
        self.seen += 1
        if self.seen == self.stop_after:
            self.scope.cancel()

    def get_state(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]


async def test_callback_state_is_journaled_and_handed_back_on_restore(storage: str) -> None:
    with anyio.CancelScope() as scope:
        first = _Counter(stop_after=3, scope=scope)
        await tune.Tuner(
            _checkpointing,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(
                name="exp", storage_path=storage, verbose=0, callbacks=[first]
            ),
        ).fit()
    assert scope.cancelled_caught
    path = Path(storage) / "exp"
    journal = (path / JOURNAL_FILE).read_text()
    assert '"callback_state_saved"' in journal and '"seen":3' in journal

    again = _Counter()
    results = await tune.Tuner.restore(str(path), _checkpointing, callbacks=[again]).fit()
    assert results.num_errors == 0
    assert results[0].metrics["i"] == ITERATIONS
    # 3 results before the interruption, then the rest after resuming from checkpoint 3.
    assert again.seen == ITERATIONS


async def test_a_get_state_that_is_not_json_data_fails_clearly(storage: str) -> None:
    class _Opaque(tune.Callback):
        def get_state(self) -> dict[str, Any]:
            return {"lock": object()}

    def quick(config: dict[str, Any]) -> None:
        tune.report({"x": 1})

    with pytest.raises(TuneError, match=r"_Opaque\.get_state\(\) must return JSON data"):
        await tune.Tuner(
            quick,
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[_Opaque()]),
        ).fit()
