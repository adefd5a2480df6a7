"""The controller core, driven by hand: messages in, events and commands out, no Ray, no I/O.

Every message goes through :meth:`Run.send`, which also checks that each derived event
carries the time stamp of the message that caused it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from atune._controller._core import (
    _BATCH_BYTES,
    _BATCH_RESULTS,
    _BATCH_SECONDS,
    ControllerCore,
    CorePolicy,
)
from atune._controller._messages import (
    CapacityChanged,
    Command,
    Finish,
    Launch,
    Message,
    Release,
    RunnerFailed,
    Save,
    StopAll,
    Train,
    TrainReturned,
)
from atune._controller._run import Phase
from atune._trial import Trial
from atune.events import (
    ActorFreed,
    CheckpointSaved,
    Event,
    ExperimentFinished,
    ExperimentStarted,
    ResultReported,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
    TrialStarted,
)
from atune.execution._protocol import ErrorInfo, TrainBudget, TrainOutcome
from atune.execution.placement_groups import PlacementGroupFactory
from atune.schedulers import TrialScheduler
from atune.search import BasicVariantGenerator, grid_search
from atune.stopper import DictStopper, FunctionStopper, Stopper
from atune.storage._layout import checkpoint_name

T = TypeVar("T")

ERR = ErrorInfo(type_name="builtins.ValueError", message="boom", traceback="Traceback: boom")
# The budgets of a call: batched (FIFO, no stopper or a dict stopper) or one result at a time.
BATCH = TrainBudget(max_results=_BATCH_RESULTS, max_seconds=_BATCH_SECONDS, max_bytes=_BATCH_BYTES)
ONE = TrainBudget(max_results=1)


# ------------------------------------------------------------------------------ helpers
def of(items: list[Any], kind: type[T], trial_id: str | None = None) -> list[T]:
    """The items of type ``kind`` (for one trial, if given), in order."""
    return [
        item
        for item in items
        if isinstance(item, kind)
        and (trial_id is None or getattr(item, "trial_id", None) == trial_id)
    ]


def res(iteration: int, **metrics: Any) -> dict[str, Any]:
    """A result as a trainable reports it."""
    return {"training_iteration": iteration, **metrics}


class RecordingSearch(BasicVariantGenerator):
    """The real default search, noting what the core tells it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.completed: list[tuple[str, dict[str, Any] | None, bool]] = []

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.results.append((trial_id, result))
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.completed.append((trial_id, result, error))
        super().on_trial_complete(trial_id, result, error)


class RecordingScheduler(TrialScheduler):
    """A per-result scheduler (no batching) that logs its hooks and can stop a trial."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.calls: list[tuple[str, str]] = []

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.calls.append(("add", trial.trial_id))

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        self.calls.append(("result", trial.trial_id))
        if self.stop_at is not None and result["training_iteration"] >= self.stop_at:
            return self.STOP
        return self.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self.calls.append(("complete", trial.trial_id))


def make_core(
    tmp_path: Path,
    *,
    num_samples: int = 1,
    space: dict[str, Any] | None = None,
    max_live_trials: int = 1,
    is_function: bool = True,
    search: BasicVariantGenerator | None = None,
    scheduler: TrialScheduler | None = None,
    stopper: Stopper | None = None,
    **policy: Any,
) -> ControllerCore:
    """A core over a real ``BasicVariantGenerator`` (seeded), one CPU per trial."""
    search = search if search is not None else BasicVariantGenerator(random_state=0)
    search.set_search_properties(None, None, space or {"lr": 0.1}, num_samples)
    return ControllerCore(
        CorePolicy(
            experiment_path=str(tmp_path),
            trainable_name="fn",
            is_function=is_function,
            resources_for=lambda config: PlacementGroupFactory([{"CPU": 1}]),
            max_live_trials=max_live_trials,
            **policy,
        ),
        search,
        scheduler=scheduler,
        stopper=stopper,
    )


class Run:
    """Feeds one core by hand with increasing time stamps; keeps everything it said."""

    def __init__(self, core: ControllerCore) -> None:
        self.core = core
        self.events: list[Event] = []
        self.commands: list[Command] = []
        self._clock = itertools.count(1)

    def send(self, message: Message) -> tuple[list[Event], list[Command]]:
        events, commands = self.core.handle(message)
        assert all(event.ts == message.ts for event in events), (message, events)
        self.events += events
        self.commands += commands
        return events, commands

    def _ts(self) -> float:
        return float(next(self._clock))

    def start(self) -> tuple[list[Event], list[Command]]:
        return self.send(ExperimentStarted(ts=self._ts(), name="exp", path="/exp"))

    def started(self, trial_id: str, attempt: int = 0) -> tuple[list[Event], list[Command]]:
        return self.send(TrialStarted(ts=self._ts(), trial_id=trial_id, attempt=attempt))

    def returned(
        self,
        trial_id: str,
        *results: dict[str, Any],
        returned: bool = False,
        error: ErrorInfo | None = None,
    ) -> tuple[list[Event], list[Command]]:
        outcome = TrainOutcome(results=list(results), returned=returned, error=error)
        return self.send(TrainReturned(ts=self._ts(), trial_id=trial_id, outcome=outcome))

    def saved(self, trial_id: str, index: int, iteration: int) -> tuple[list[Event], list[Command]]:
        return self.send(
            CheckpointSaved(
                ts=self._ts(),
                trial_id=trial_id,
                dir_name=checkpoint_name(index),
                training_iteration=iteration,
            )
        )

    def failed(self, trial_id: str, retryable: bool = True) -> tuple[list[Event], list[Command]]:
        return self.send(
            RunnerFailed(ts=self._ts(), trial_id=trial_id, error=ERR, retryable=retryable)
        )

    def freed(
        self, trial_id: str, action: Literal["stopped", "cached", "killed"] = "stopped"
    ) -> tuple[list[Event], list[Command]]:
        return self.send(ActorFreed(ts=self._ts(), trial_id=trial_id, action=action))

    def stop_all(self) -> tuple[list[Event], list[Command]]:
        return self.send(StopAll(ts=self._ts(), reason="time_budget"))

    @property
    def trial_ids(self) -> list[str]:
        return [event.trial_id for event in of(self.events, TrialCreated)]


def run_trial(run: Run, trial_id: str, iterations: int) -> list[Command]:
    """Start a launched trial, report ``iterations`` results one per call (the first from
    the launch's own train), let the function return and free its runner; return the
    commands of that last step."""
    (launch,) = of(run.commands, Launch, trial_id)
    _, commands = run.started(trial_id)
    assert commands == []  # the launch trains: nothing to do until it returns
    for i in range(1, iterations + 1):
        _, commands = run.returned(trial_id, res(i))
        assert commands == [Train(trial_id=trial_id, budget=launch.budget)]
    events, commands = run.returned(trial_id, returned=True)
    assert [e.reason for e in of(events, TrialCompleted)] == ["returned"]
    assert of(commands, Release, trial_id) == [Release(trial_id=trial_id)]
    _, commands = run.freed(trial_id)
    return commands


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(make_core(tmp_path))


# ---------------------------------------------------------------------- trial creation
def test_experiment_started_creates_at_most_max_live_trials(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, space={"x": grid_search([1, 2, 3, 4, 5])}, max_live_trials=2))
    events, commands = run.start()
    assert isinstance(events[0], ExperimentStarted)
    created = of(events, TrialCreated)
    assert [e.config for e in created] == [{"x": 1}, {"x": 2}]
    assert [e.trial_id for e in created] == ["00000_00000", "00000_00001"]
    assert created[0].trial_name == "fn_00000_00000"
    assert created[0].resources == [{"CPU": 1.0}]
    assert commands == [
        Launch(trial_id="00000_00000", budget=BATCH),
        Launch(trial_id="00000_00001", budget=BATCH),
    ]
    assert [t.status for t in run.core.get_trials()] == ["PENDING", "PENDING"]


_CPU = 1_000_000  # one CPU in the allocator's units


def test_a_capacity_change_recomputes_the_live_trial_limit_and_fills(tmp_path: Path) -> None:
    space = {"x": grid_search([1, 2, 3, 4, 5, 6])}
    core = make_core(tmp_path, space=space, max_live_trials=1, trial_request={"CPU": _CPU})
    run = Run(core)
    run.start()
    assert len(of(run.commands, Launch)) == 1
    # The cluster grew to 3.5 CPUs: room for three one-CPU trials, so two more start.
    events, commands = run.send(CapacityChanged(ts=7.0, capacity={"CPU": 3 * _CPU + _CPU // 2}))
    assert core.max_live_trials == 3
    assert [e.config for e in of(events, TrialCreated)] == [{"x": 2}, {"x": 3}]
    assert [c.trial_id for c in of(commands, Launch)] == ["00000_00001", "00000_00002"]
    # It shrank to one CPU: no trial is stopped, but none starts while three are live.
    events, commands = run.send(CapacityChanged(ts=8.0, capacity={"CPU": _CPU}))
    assert core.max_live_trials == 1
    assert (events, commands) == ([], [])
    run_trial(run, "00000_00000", 1)
    assert not of(run.commands, Launch, "00000_00003")


def test_on_a_growing_cluster_the_recomputed_limit_keeps_the_pending_trials(
    tmp_path: Path,
) -> None:
    space = {"x": grid_search([1, 2, 3, 4, 5, 6, 7, 8])}
    # A 0-CPU head with two trials allowed to wait for nodes: two start (and wait).
    core = make_core(
        tmp_path, space=space, max_live_trials=2, trial_request={"CPU": _CPU}, pending_trials=2
    )
    run = Run(core)
    run.start()
    assert len(of(run.commands, Launch)) == 2
    # A 2-CPU node joined: two trials fit, and two more may wait for the next node.
    _, commands = run.send(CapacityChanged(ts=5.0, capacity={"CPU": 2 * _CPU}))
    assert core.max_live_trials == 4
    assert [c.trial_id for c in of(commands, Launch)] == ["00000_00002", "00000_00003"]


def test_a_capacity_change_respects_max_concurrent_trials(tmp_path: Path) -> None:
    space = {"x": grid_search([1, 2, 3, 4])}
    core = make_core(
        tmp_path,
        space=space,
        max_live_trials=1,
        trial_request={"CPU": _CPU // 2},
        max_concurrent_trials=2,
    )
    run = Run(core)
    run.start()
    _, commands = run.send(CapacityChanged(ts=5.0, capacity={"CPU": 8 * _CPU}))
    assert core.max_live_trials == 2
    assert len(of(commands, Launch)) == 1


def test_without_a_trial_request_a_capacity_change_keeps_the_limit(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=3, max_live_trials=1))
    run.start()
    events, commands = run.send(CapacityChanged(ts=5.0, capacity={"CPU": 8 * _CPU}))
    assert (events, commands, run.core.max_live_trials) == ([], [], 1)


def test_ending_a_trial_makes_room_for_the_next(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=3, max_live_trials=2))
    run.start()
    first, second = run.trial_ids
    commands = run_trial(run, first, 1)
    third = run.trial_ids[2]
    # The slot frees when the trial ends (TrialCompleted), before its runner is freed.
    assert of(run.commands, Launch, third) == [Launch(trial_id=third, budget=BATCH)]
    assert not of(commands, Launch)
    run_trial(run, second, 1)
    run_trial(run, third, 1)
    assert len(run.trial_ids) == 3


def test_trial_names_come_from_the_creators(tmp_path: Path) -> None:
    core = make_core(
        tmp_path,
        trial_name_creator=lambda trial: f"t{trial.config['lr']}",
        trial_dirname_creator=lambda trial: f"dir {trial.trial_name}/x",
    )
    events, _ = Run(core).start()
    (created,) = of(events, TrialCreated)
    assert created.trial_name == "t0.1"
    assert created.dirname == "dir_t0.1_x"  # path-unsafe characters replaced


# -------------------------------------------------------------------------- training
def test_trial_started_issues_no_command_and_leaves_the_trial_busy(run: Run) -> None:
    _, commands = run.start()
    (trial_id,) = run.trial_ids
    assert commands == [Launch(trial_id=trial_id, budget=BATCH)]
    events, commands = run.started(trial_id)
    assert events == [TrialStarted(ts=2.0, trial_id=trial_id)]
    assert commands == []  # the launch's own train is running
    trial = run.core.trials[trial_id]
    assert trial.status == "RUNNING"
    assert run.core.run_of(trial_id).phase is Phase.LAUNCHING  # its first batch is outstanding
    # The launch's results arrive as its TrainReturned; then training goes on.
    events, commands = run.returned(trial_id, res(1))
    assert [e.result for e in of(events, ResultReported)] == [res(1)]
    assert commands == [Train(trial_id=trial_id, budget=BATCH)]


def test_results_are_reported_then_training_continues(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    run = Run(make_core(tmp_path, search=search))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, commands = run.returned(trial_id, res(1, loss={"a": 3}), res(2, loss={"a": 2}))
    assert [e.result for e in of(events, ResultReported)] == [
        res(1, loss={"a": 3}),
        res(2, loss={"a": 2}),
    ]
    assert [type(c) for c in commands] == [Train]
    trial = run.core.trials[trial_id]
    assert trial.last_result == res(2, loss={"a": 2})
    assert trial.num_results == 2
    # The searcher hears flattened results.
    assert search.results == [
        (trial_id, {"training_iteration": 1, "loss/a": 3}),
        (trial_id, {"training_iteration": 2, "loss/a": 2}),
    ]


def test_done_in_a_result_completes_the_trial(run: Run) -> None:
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, commands = run.returned(trial_id, res(1), res(2, done=True), res(3))
    assert [e.result["training_iteration"] for e in of(events, ResultReported)] == [1, 2]
    assert of(events, TrialCompleted) == [TrialCompleted(ts=3.0, trial_id=trial_id, reason="done")]
    assert commands == [Release(trial_id=trial_id)]
    trial = run.core.trials[trial_id]
    assert trial.status == "TERMINATED"
    assert trial.end_reason == "done"


def test_returning_function_completes_the_trial(run: Run) -> None:
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1))
    events, commands = run.returned(trial_id, returned=True)
    assert of(events, TrialCompleted) == [
        TrialCompleted(ts=4.0, trial_id=trial_id, reason="returned")
    ]
    assert commands == [Release(trial_id=trial_id)]
    assert run.core.trials[trial_id].last_result == {**res(1), "done": True}


def test_a_finished_trial_keeps_a_compact_last_result(run: Run) -> None:
    run.start()
    (trial_id,) = run.trial_ids
    trial = run.core.trials[trial_id]
    run.started(trial_id)
    reported = res(1, config=dict(trial.config))
    reported["".join(["sc", "ore"])] = 0.5  # a key built at run time is not interned
    run.returned(trial_id, reported)
    run.returned(trial_id, returned=True)
    final = trial.last_result
    assert final == {**reported, "done": True}
    assert final["config"] is trial.config  # equal, so the trial's own object
    key = next(k for k in final if k == "score")
    assert key is sys.intern("score")  # names shared by every trial's result


def test_a_config_that_cannot_be_compared_is_kept_as_reported(tmp_path: Path) -> None:
    class Elementwise:  # compares like a numpy array: no single truth value
        def __eq__(self, other: object) -> bool:
            raise ValueError("the truth value of an array is ambiguous")

    run = Run(make_core(tmp_path, space={"w": Elementwise()}))
    run.start()
    (trial_id,) = run.trial_ids
    trial = run.core.trials[trial_id]
    run.started(trial_id)
    copy = Elementwise()  # as a result from another process holds a copy of the config
    reported = res(1, config={"w": copy})
    run.returned(trial_id, reported)
    run.returned(trial_id, returned=True)
    assert trial.status == "TERMINATED" and trial.last_result["done"] is True
    assert trial.last_result["config"]["w"] is copy


def test_trials_with_equal_requests_share_one_resources_object(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=3, max_live_trials=3))
    run.start()
    first, second, third = (run.core.trials[t].resources for t in run.trial_ids)
    assert first is second is third


# -------------------------------------------------------------------------- stoppers
def test_dict_stopper_stops_at_the_matching_iteration(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, stopper=DictStopper({"training_iteration": 3})))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1), res(2))
    events, commands = run.returned(trial_id, res(3), res(4))
    reported = of(events, ResultReported)
    assert [e.result for e in reported] == [{**res(3), "done": True}]
    assert [e.reason for e in of(events, TrialCompleted)] == ["stopper"]
    assert commands == [Release(trial_id=trial_id)]


def test_dict_stopper_ends_the_batch_at_the_stopping_result(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    run = Run(make_core(tmp_path, search=search, stopper=DictStopper({"training_iteration": 2})))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, commands = run.returned(trial_id, res(1), res(2), res(3))
    assert [type(e) for e in events] == [ResultReported, ResultReported, TrialCompleted]
    assert [e.result for e in of(events, ResultReported)] == [res(1), {**res(2), "done": True}]
    assert of(events, TrialCompleted) == [
        TrialCompleted(ts=3.0, trial_id=trial_id, reason="stopper")
    ]
    assert commands == [Release(trial_id=trial_id)]
    assert run.core.trials[trial_id].num_results == 2
    assert [r["training_iteration"] for _, r in search.results] == [1]


def test_stopper_sees_nested_results_including_done(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def stop(trial_id: str, result: dict[str, Any]) -> bool:
        seen.append(result)
        return bool(result["info"]["loss"] < 0.5)

    run = Run(make_core(tmp_path, num_samples=2, stopper=FunctionStopper(stop)))
    run.start()
    first = run.trial_ids[0]
    run.started(first)
    events, _ = run.returned(first, res(1, info={"loss": 0.4}))
    assert [e.reason for e in of(events, TrialCompleted)] == ["stopper"]
    second = run.trial_ids[1]
    run.started(second)
    run.returned(second, res(1, info={"loss": 0.9}, done=True))
    assert [r["info"]["loss"] for r in seen] == [0.4, 0.9]


def test_function_stopper_disables_batching(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, stopper=FunctionStopper(lambda trial_id, result: False)))
    _, commands = run.start()
    (trial_id,) = run.trial_ids
    assert commands == [Launch(trial_id=trial_id, budget=ONE)]
    run.started(trial_id)
    _, commands = run.returned(trial_id, res(1))
    assert commands == [Train(trial_id=trial_id, budget=ONE)]


def test_fifo_and_dict_stopper_batch_results(tmp_path: Path) -> None:
    criteria = {"training_iteration": 3, "info/loss": 0.1}
    run = Run(make_core(tmp_path, stopper=DictStopper(criteria), checkpoint_frequency=2))
    _, commands = run.start()
    (trial_id,) = run.trial_ids
    (launch,) = commands
    assert isinstance(launch, Launch)
    assert launch.budget.max_results > 1
    assert launch.budget.stop_criteria == criteria
    assert launch.budget.checkpoint_frequency == 0  # functions checkpoint themselves
    run.started(trial_id)
    _, commands = run.returned(trial_id, res(1))
    assert commands == [Train(trial_id=trial_id, budget=launch.budget)]


def test_per_result_scheduler_disables_batching(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, scheduler=RecordingScheduler()))
    _, commands = run.start()
    (trial_id,) = run.trial_ids
    assert commands == [Launch(trial_id=trial_id, budget=ONE)]
    run.started(trial_id)
    _, commands = run.returned(trial_id, res(1))
    assert commands == [Train(trial_id=trial_id, budget=ONE)]


class _PlateauStopper(Stopper):
    """Stops the reporting trial and the whole experiment once ``loss`` reaches 0."""

    def __init__(self) -> None:
        self.plateau = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.plateau = self.plateau or result.get("loss") == 0
        return self.plateau

    def stop_all(self) -> bool:
        return self.plateau


def test_stop_all_is_checked_even_when_the_result_stops_its_trial(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=5, max_live_trials=2, stopper=_PlateauStopper()))
    run.start()
    first, second = run.trial_ids
    run.started(first)
    run.started(second)
    run.returned(second, res(1, loss=1))
    events, commands = run.returned(first, res(1, loss=0))
    assert [(e.trial_id, e.reason) for e in of(events, TrialCompleted)] == [(first, "stopper")]
    assert not of(events, TrialCreated)
    # The other trial is busy training: it ends when its call returns, and keeps the reason
    # it was stopped for first (its own result would also have met the stopper).
    events, _ = run.returned(second, res(2, loss=1))
    assert [(e.trial_id, e.reason) for e in of(events, TrialCompleted)] == [(second, "stop_all")]
    run.freed(first)
    events, commands = run.freed(second)
    assert commands == [Finish()]
    assert len(run.trial_ids) == 2


def test_scheduler_stop_ends_the_trial_without_telling_the_searcher(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    scheduler = RecordingScheduler(stop_at=2)
    run = Run(make_core(tmp_path, search=search, scheduler=scheduler))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1))
    events, _ = run.returned(trial_id, res(2))
    assert [e.reason for e in of(events, TrialCompleted)] == ["scheduler"]
    assert of(events, ResultReported)[0].result["done"] is True
    assert [r["training_iteration"] for _, r in search.results] == [1]
    assert search.completed == [(trial_id, {**res(2), "done": True}, False)]
    assert scheduler.calls == [
        ("add", trial_id),
        ("result", trial_id),
        ("result", trial_id),
        ("complete", trial_id),
    ]


# ---------------------------------------------------------------------------- errors
def test_error_without_retries_ends_the_trial_in_error(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    run = Run(make_core(tmp_path, num_samples=2, search=search))
    run.start()
    first = run.trial_ids[0]
    run.started(first)
    events, commands = run.returned(first, res(1), error=ERR)
    assert of(events, ResultReported)[0].result == res(1)
    (errored,) = of(events, TrialErrored)
    assert errored == TrialErrored(
        ts=3.0,
        trial_id=first,
        error_type="builtins.ValueError",
        message="boom",
        traceback="Traceback: boom",
        attempt=0,
        will_retry=False,
    )
    assert commands[0] == Release(trial_id=first, kill=True)
    trial = run.core.trials[first]
    assert trial.status == "ERROR"
    assert trial.error == ERR
    assert search.completed == [(first, None, True)]
    # The experiment goes on with the next trial.
    assert commands[1:] == [Launch(trial_id=run.trial_ids[1], budget=BATCH)]


def test_retries_resume_from_the_latest_checkpoint(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    scheduler = RecordingScheduler()
    run = Run(make_core(tmp_path, max_failures=2, search=search, scheduler=scheduler))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, _ = run.returned(trial_id, res(1, checkpoint_dir_name=checkpoint_name(0)))
    (saved,) = of(events, CheckpointSaved)
    assert (saved.dir_name, saved.training_iteration) == (checkpoint_name(0), 1)
    trial = run.core.trials[trial_id]
    checkpoint = str(Path(trial.path) / checkpoint_name(0))

    for attempt in range(3):
        events, commands = run.returned(trial_id, error=ERR)
        (errored,) = of(events, TrialErrored)
        assert errored.attempt == attempt
        assert errored.will_retry is (attempt < 2)
        if attempt == 2:
            assert trial.status == "ERROR"
            assert commands == [Release(trial_id=trial_id, kill=True)]
            break
        # The failed runner is killed before the retry launches (backing off after the
        # first retry: no result came in between).
        assert commands == [
            Release(trial_id=trial_id, kill=True),
            Launch(
                trial_id=trial_id, budget=ONE, checkpoint=checkpoint, delay_s=[0.0, 1.0][attempt]
            ),
        ]
        assert trial.status == "PENDING"
        assert trial.attempt == attempt + 1
        run.freed(trial_id, "killed")
        events, commands = run.started(trial_id, attempt=attempt + 1)
        assert [e.attempt for e in of(events, TrialStarted)] == [attempt + 1]
        assert commands == []  # the relaunch trains; its outcome (an error) comes next
        assert run.core.run_of(trial_id).busy

    assert len(of(run.commands, Launch, trial_id)) == 3  # max_failures + 1 attempts
    assert trial.num_failures == 3
    assert search.completed == [(trial_id, None, True)]  # not told about the retries
    assert [call for call, _ in scheduler.calls] == [
        "add", "result", "error", "add", "error", "add", "error"
    ]  # fmt: skip


def test_retried_class_trial_trains_before_it_checkpoints_again(tmp_path: Path) -> None:
    # The failed attempt's last result (iteration 4) is stale after restoring
    # iteration 2: the restarted trial must train, not save (and not loop on saves).
    run = Run(make_core(tmp_path, is_function=False, checkpoint_frequency=2, max_failures=1))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    assert run.returned(trial_id, res(1), res(2))[1] == [Save(trial_id=trial_id, index=0)]
    run.saved(trial_id, 0, 2)
    assert run.returned(trial_id, res(3), res(4))[1] == [Save(trial_id=trial_id, index=1)]
    _, commands = run.failed(trial_id)
    budget = TrainBudget(
        max_results=_BATCH_RESULTS,
        max_seconds=_BATCH_SECONDS,
        checkpoint_frequency=2,
        max_bytes=_BATCH_BYTES,
    )
    assert commands == [
        Release(trial_id=trial_id, kill=True),
        Launch(
            trial_id=trial_id,
            budget=budget,
            checkpoint=str(Path(run.core.trials[trial_id].path) / checkpoint_name(0)),
        ),
    ]
    run.freed(trial_id, "killed")
    _, commands = run.started(trial_id, attempt=1)
    assert commands == []  # trains within the launch: no Save of the stale iteration 4
    _, commands = run.returned(trial_id, res(3))
    assert commands == [Train(trial_id=trial_id, budget=budget)]
    # Indices are never reused, even the one whose save failed.
    assert run.returned(trial_id, res(4))[1] == [Save(trial_id=trial_id, index=2)]


def test_non_retryable_failure_never_retries(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, max_failures=2))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, commands = run.failed(trial_id, retryable=False)
    assert [e.will_retry for e in of(events, TrialErrored)] == [False]
    assert commands == [Release(trial_id=trial_id, kill=True)]
    assert run.core.trials[trial_id].status == "ERROR"


def test_failure_to_start_retries_without_a_release(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, max_failures=1))
    run.start()
    (trial_id,) = run.trial_ids
    events, commands = run.failed(trial_id)  # no runner was ever alive
    assert [e.will_retry for e in of(events, TrialErrored)] == [True]
    assert commands == [Launch(trial_id=trial_id, budget=BATCH)]


def test_fail_fast_stops_the_other_trials(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=5, max_live_trials=3, fail_fast=True))
    run.start()
    failing, training, launching = run.trial_ids
    run.started(failing)
    run.started(training)
    events, commands = run.returned(failing, error=ERR)
    assert [e.will_retry for e in of(events, TrialErrored)] == [False]
    assert not of(events, TrialCompleted)  # the others are busy: they end when they return
    assert commands == [Release(trial_id=failing, kill=True)]
    events, commands = run.returned(training, res(1))
    assert of(events, TrialCompleted) == [
        TrialCompleted(ts=5.0, trial_id=training, reason="fail_fast")
    ]
    assert commands == [Release(trial_id=training)]
    events, commands = run.started(launching)
    assert not of(events, TrialCompleted)  # busy with the launch's train
    assert commands == []
    events, commands = run.returned(launching, res(1))
    assert [e.result for e in of(events, ResultReported)] == [res(1)]
    assert [e.reason for e in of(events, TrialCompleted)] == ["fail_fast"]
    assert commands == [Release(trial_id=launching)]
    for trial_id in (failing, training):
        assert not run.freed(trial_id, "killed")[1]
    events, commands = run.freed(launching)
    assert of(events, ExperimentFinished) == [
        ExperimentFinished(ts=10.0, num_trials=3, num_errors=1)
    ]
    assert commands == [Finish()]
    assert run.core.fatal_error is None


def test_fail_fast_raise_records_the_fatal_error(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=2, fail_fast="raise"))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, error=ERR)
    assert run.core.fatal_error == ERR
    _, commands = run.freed(trial_id, "killed")
    assert commands == [Finish()]
    assert len(run.trial_ids) == 1


# ----------------------------------------------------------------------- checkpoints
def test_checkpoint_frequency_saves_every_nth_iteration(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, is_function=False, checkpoint_frequency=2))
    _, commands = run.start()
    (trial_id,) = run.trial_ids
    assert of(commands, Launch)[0].budget.checkpoint_frequency == 2
    assert run.started(trial_id)[1] == []
    saves: list[Save] = []
    for i in range(1, 6):
        _, commands = run.returned(trial_id, res(i))
        if i % 2:
            assert [type(c) for c in commands] == [Train]
            continue
        saves += of(commands, Save)
        assert len(commands) == 1
        events, commands = run.saved(trial_id, saves[-1].index, i)
        assert [type(e) for e in events] == [CheckpointSaved]
        assert [type(c) for c in commands] == [Train]
    assert saves == [Save(trial_id=trial_id, index=0), Save(trial_id=trial_id, index=1)]
    assert [c.dir_name for c in run.core.trials[trial_id].checkpoints] == [
        checkpoint_name(0),
        checkpoint_name(1),
    ]


def test_checkpoint_at_end_saves_before_completing(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, is_function=False, checkpoint_at_end=True))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1))
    events, commands = run.returned(trial_id, res(2, done=True))
    assert not of(events, TrialCompleted)
    assert commands == [Save(trial_id=trial_id, index=0)]
    events, commands = run.saved(trial_id, 0, 2)
    assert [e.reason for e in of(events, TrialCompleted)] == ["done"]
    assert commands == [Release(trial_id=trial_id)]


def test_checkpoint_at_end_does_not_save_twice(tmp_path: Path) -> None:
    run = Run(
        make_core(
            tmp_path,
            is_function=False,
            checkpoint_at_end=True,
            checkpoint_frequency=2,
            stopper=DictStopper({"training_iteration": 2}),
        )
    )
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    _, commands = run.returned(trial_id, res(1), res(2))
    assert commands == [Save(trial_id=trial_id, index=0)]
    events, commands = run.saved(trial_id, 0, 2)
    assert [e.reason for e in of(events, TrialCompleted)] == ["stopper"]
    assert commands == [Release(trial_id=trial_id)]


def test_due_checkpoint_is_taken_from_the_stopping_result(tmp_path: Path) -> None:
    run = Run(
        make_core(
            tmp_path,
            is_function=False,
            checkpoint_frequency=3,
            stopper=DictStopper({"training_iteration": 3}),
        )
    )
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    _, commands = run.returned(trial_id, res(1), res(2), res(3))
    assert commands == [Save(trial_id=trial_id, index=0)]
    events, _ = run.saved(trial_id, 0, 3)
    assert [e.reason for e in of(events, TrialCompleted)] == ["stopper"]


def test_function_checkpoints_advance_the_class_index(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1, checkpoint_dir_name=checkpoint_name(4)))
    assert run.core.trials[trial_id].next_checkpoint_index == 5


# ------------------------------------------------------------------------- the end
def test_experiment_finishes_exactly_once_after_every_runner_is_freed(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=2, max_live_trials=2))
    run.start()
    first, second = run.trial_ids
    assert run_trial(run, first, 2) == []
    assert not of(run.events, ExperimentFinished)
    commands = run_trial(run, second, 3)
    assert commands == [Finish()]
    last_freed = of(run.events, ActorFreed)[-1]
    assert of(run.events, ExperimentFinished) == [
        ExperimentFinished(ts=last_freed.ts, num_trials=2, num_errors=0)
    ]
    # Late messages (a stale time budget) change nothing.
    events, commands = run.stop_all()
    assert (events, commands) == ([], [])
    assert len(of(run.commands, Finish)) == 1


def test_experiment_waits_for_the_last_runner(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    _, commands = run.returned(trial_id, returned=True)
    assert Finish() not in commands
    _, commands = run.freed(trial_id)
    assert commands == [Finish()]


def test_time_budget_ends_busy_trials_when_they_return(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=3, max_live_trials=2))
    run.start()
    training, launching = run.trial_ids
    run.started(training)
    events, commands = run.stop_all()
    assert (events, commands) == ([], [])  # both are busy
    events, commands = run.returned(training, res(1))
    assert of(events, TrialCompleted) == [
        TrialCompleted(ts=4.0, trial_id=training, reason="time_budget")
    ]
    assert commands == [Release(trial_id=training)]
    events, commands = run.started(launching)
    assert (of(events, TrialCompleted), commands) == ([], [])  # training in its launch
    events, commands = run.returned(launching)
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert commands == [Release(trial_id=launching)]
    run.freed(training)
    events, commands = run.freed(launching)
    assert [e.num_trials for e in of(events, ExperimentFinished)] == [2]
    assert commands == [Finish()]


def test_results_produced_before_a_time_budget_stop_are_all_kept(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    run = Run(make_core(tmp_path, num_samples=2, max_live_trials=2, search=search))
    run.start()
    training, launching = run.trial_ids
    run.started(training)
    assert run.stop_all() == ([], [])  # both are busy
    events, commands = run.returned(training, res(1), res(2), res(3))
    assert [type(e) for e in events] == [ResultReported] * 3 + [TrialCompleted]
    assert [e.result for e in of(events, ResultReported)] == [res(1), res(2), res(3)]
    assert events[-1] == TrialCompleted(ts=4.0, trial_id=training, reason="time_budget")
    assert commands == [Release(trial_id=training)]
    trial = run.core.trials[training]
    assert trial.num_results == 3
    assert trial.last_result == {**res(3), "done": True}
    assert [r["training_iteration"] for t, r in search.results if t == training] == [1, 2, 3]
    # The same for a trial stopped while it was still launching.
    assert run.started(launching)[1] == []
    events, commands = run.returned(launching, res(1), res(2))
    assert [type(e) for e in events] == [ResultReported] * 2 + [TrialCompleted]
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert commands == [Release(trial_id=launching)]


def test_abandoned_call_keeps_its_drained_results_without_a_release(tmp_path: Path) -> None:
    # The driver abandons a call that outlives the time budget: it kills the runner
    # (ActorFreed) and then hands over the results produced so far.
    run = Run(make_core(tmp_path))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.stop_all()
    assert run.freed(trial_id, "killed") == (
        [ActorFreed(ts=4.0, trial_id=trial_id, action="killed")],
        [],
    )
    events, commands = run.returned(trial_id, res(1), res(2))
    assert [type(e) for e in events] == [
        ResultReported,
        ResultReported,
        TrialCompleted,
        ExperimentFinished,
    ]
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert commands == [Finish()]  # no Release: the runner is gone


def test_time_budget_skips_the_final_checkpoint(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, is_function=False, checkpoint_at_end=True))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.stop_all()
    events, commands = run.returned(trial_id, res(1))
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert commands == [Release(trial_id=trial_id)]


# ------------------------------------------------------------------------ determinism
@contextmanager
def no_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every clock read fail inside the block."""

    def forbidden() -> float:
        raise AssertionError("the core read a clock")

    with monkeypatch.context() as patch:
        for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"):
            patch.setattr(time, name, forbidden)
        yield


def test_core_reads_no_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(
        make_core(
            tmp_path,
            num_samples=3,
            max_live_trials=2,
            is_function=False,
            checkpoint_frequency=1,
            max_failures=1,
            stopper=DictStopper({"training_iteration": 3}),
        )
    )
    with no_clock(monkeypatch):
        run.start()
        first, second = run.trial_ids
        run.started(first)
        run.returned(first, res(1))
        run.saved(first, 0, 1)
        run.returned(first, error=ERR)
        run.freed(first, "killed")
        run.started(first, attempt=1)
        run.started(second)
        run.stop_all()
        run.returned(first, res(2))
        run.returned(second, res(1))
        for trial_id in (first, second):
            run.freed(trial_id)
    assert len(of(run.commands, Finish)) == 1


def test_same_messages_give_same_events(tmp_path: Path) -> None:
    def play(path: Path) -> list[Event]:
        run = Run(make_core(path, space={"lr": grid_search([1, 2])}, num_samples=2))
        run.start()
        for trial_id in ("00000_00000", "00000_00001", "00000_00002", "00000_00003"):
            run_trial(run, trial_id, 2)
        return run.events

    assert play(tmp_path) == play(tmp_path)


# ------------------------------------------------------------------------- pipelining
def test_pipelining_queues_one_trial_behind_each_running_trial(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=4, max_live_trials=1, pipeline=True))
    _, commands = run.start()
    first, second = run.trial_ids
    assert [(c.trial_id, c.after) for c in of(commands, Launch)] == [(first, None), (second, first)]
    assert run.core.run_of(second).queued_on == first
    run.started(first)
    events, commands = run.returned(first, res(1), returned=True)
    assert [e.reason for e in of(events, TrialCompleted)] == ["returned"]
    # The queued trial now counts as live; the next one is queued behind it.
    third = of(events, TrialCreated)[0].trial_id
    assert [(c.trial_id, c.after) for c in of(commands, Launch)] == [(third, second)]
    assert run.core.run_of(second).queued_on is None


def test_no_pipelining_without_the_policy_with_a_function_stopper_or_a_final_save(
    tmp_path: Path,
) -> None:
    for core in (
        make_core(tmp_path, num_samples=4, max_live_trials=1, pipeline=False),
        make_core(
            tmp_path,
            num_samples=4,
            max_live_trials=1,
            pipeline=True,
            stopper=FunctionStopper(lambda trial_id, result: False),
        ),
        make_core(
            tmp_path,
            num_samples=4,
            max_live_trials=1,
            pipeline=True,
            is_function=False,
            checkpoint_at_end=True,
        ),
    ):
        _, commands = Run(core).start()
        assert [c.after for c in of(commands, Launch)] == [None]


def test_a_dict_stopper_keeps_pipelining_on(tmp_path: Path) -> None:
    # The runner evaluates the same criteria, so it lets the queued launch in.
    stopper = DictStopper({"training_iteration": 2})
    core = make_core(
        tmp_path,
        num_samples=4,
        max_live_trials=1,
        pipeline=True,
        is_function=False,
        stopper=stopper,
    )
    run = Run(core)
    _, commands = run.start()
    first, second = run.trial_ids
    assert [(c.trial_id, c.after) for c in of(commands, Launch)] == [(first, None), (second, first)]
    run.started(first)
    events, commands = run.returned(first, res(1), res(2))
    assert [e.reason for e in of(events, TrialCompleted)] == ["stopper"]
    third = of(events, TrialCreated)[0].trial_id
    assert [(c.trial_id, c.after) for c in of(commands, Launch)] == [(third, second)]


def test_a_scheduler_stop_switches_pipelining_off(tmp_path: Path) -> None:
    scheduler = RecordingScheduler(stop_at=1)
    scheduler.supports_buffered_results = True  # batches, but stops trials the runner cannot see
    run = Run(
        make_core(tmp_path, num_samples=4, max_live_trials=1, pipeline=True, scheduler=scheduler)
    )
    run.start()
    first, _second = run.trial_ids
    run.started(first)
    events, commands = run.returned(first, res(1))
    assert [e.reason for e in of(events, TrialCompleted)] == ["scheduler"]
    # The queued trial takes over the slot; no further trial is queued behind it.
    assert not of(commands, Launch) and len(run.trial_ids) == 2


def test_a_failing_host_hands_its_queued_trial_on(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=3, max_live_trials=1, pipeline=True))
    run.start()
    first, second = run.trial_ids
    run.started(first)
    run.returned(first, res(1), error=ERR)
    assert run.core.trials[first].status == "ERROR"
    assert run.core.run_of(second).queued_on is None and run.core.run_of(first).successor is None


# ----------------------------------------------------------------------- metric check
LOSS = (("loss", "TuneConfig(metric=...)"),)


def _metric_error(events: list[Event]) -> TrialErrored:
    (errored,) = of(events, TrialErrored)
    assert errored.error_type == "atune.errors.MetricError"
    assert not errored.will_retry  # the same code would report the same result
    return errored


def test_a_first_result_without_the_metric_fails_only_that_trial(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    run = Run(
        make_core(
            tmp_path,
            num_samples=2,
            max_live_trials=2,
            max_failures=3,
            required_metrics=LOSS,
            search=search,
        )
    )
    run.start()
    bad, good = run.trial_ids
    run.started(bad)
    events, commands = run.returned(bad, res(1, acc=0.5), res(2, acc=0.6))
    errored = _metric_error(events)
    assert "'loss'" in errored.message and "TuneConfig(metric=...)" in errored.message
    assert "[acc, training_iteration]" in errored.message  # the keys it did report
    assert "TUNE_DISABLE_STRICT_METRIC_CHECKING" in errored.message
    assert not of(events, ResultReported)  # the bad result reaches no scheduler/searcher
    assert commands == [Release(trial_id=bad, kill=True)]
    assert run.core.trials[bad].status == "ERROR"
    assert search.results == [] and search.completed == [(bad, None, True)]
    # The other trial goes on.
    run.started(good)
    events, commands = run.returned(good, res(1, loss=0.5))
    assert of(events, ResultReported) and [type(c) for c in commands] == [Train]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0.5", "str '0.5'"), (True, "bool True"), (None, "NoneType None"), ([1.0], "list [1.0]")],
)
def test_a_metric_that_is_not_a_real_number_fails_the_trial(
    tmp_path: Path, value: Any, shown: str
) -> None:
    run = Run(make_core(tmp_path, required_metrics=LOSS, strict_metric_checking=False))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, _ = run.returned(trial_id, res(1, loss=value))
    errored = _metric_error(events)
    assert f"'loss' that TuneConfig(metric=...) expects as {shown}" in errored.message
    assert "not a real number" in errored.message


def test_nan_inf_numpy_and_nested_metrics_pass_the_check(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    required = (("val/loss", "TuneConfig(metric=...)"), ("acc", "ASHAScheduler"))
    values = [math.nan, math.inf, -math.inf, np.float32(1.5), np.int64(3), np.array(2.0), 7]
    run = Run(make_core(tmp_path, num_samples=len(values), required_metrics=required,
                        max_live_trials=len(values)))  # fmt: skip
    run.start()
    for trial_id, value in zip(run.trial_ids, values, strict=True):
        run.started(trial_id)
        events, commands = run.returned(trial_id, res(1, val={"loss": value}, acc=value))
        assert not of(events, TrialErrored), value
        assert [type(c) for c in commands] == [Train]


def test_only_the_first_result_is_checked(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, required_metrics=LOSS))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, res(1, loss=1.0))
    events, _ = run.returned(trial_id, res(2, other=1), res(3, loss="late"))
    assert len(of(events, ResultReported)) == 2 and not of(events, TrialErrored)


def test_a_missing_metric_is_allowed_when_strict_checking_is_off(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, required_metrics=LOSS, strict_metric_checking=False))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    events, _ = run.returned(trial_id, res(1, acc=1.0))
    assert of(events, ResultReported) and not of(events, TrialErrored)


def test_required_metrics_come_from_config_scheduler_and_searcher() -> None:
    from atune._controller._metric_check import required_metrics
    from atune.search import ConcurrencyLimiter, Searcher, SearchGenerator

    class TwoMetrics(Searcher):
        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            return None

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            pass

    scheduler = RecordingScheduler()
    scheduler.set_search_properties("loss", "min")
    search = SearchGenerator(ConcurrencyLimiter(TwoMetrics(["loss", "acc"], ["min", "max"]), 1))
    assert required_metrics("loss", scheduler, search) == (
        ("loss", "TuneConfig(metric=...)"),
        ("acc", "TwoMetrics"),
    )
    # Ray Tune's default metric of a bare returned number is never required.
    assert required_metrics("_metric", None, BasicVariantGenerator()) == ()


# ------------------------------------------------------------------ retries and stops
def test_retries_back_off_until_a_result_comes(tmp_path: Path) -> None:
    from atune._controller._policy import retry_delay

    assert [retry_delay(n) for n in range(1, 9)] == [0, 1, 2, 4, 8, 16, 30, 30]
    run = Run(make_core(tmp_path, max_failures=-1))
    run.start()
    (trial_id,) = run.trial_ids
    delays = []
    for _ in range(4):
        run.started(trial_id)
        _, commands = run.returned(trial_id, error=ERR)
        (launch,) = of(commands, Launch)
        delays.append(launch.delay_s)
        run.freed(trial_id, "killed")
    assert delays == [0, 1, 2, 4]
    run.started(trial_id)
    run.returned(trial_id, res(1), error=ERR)  # progress, then a failure: immediate again
    (launch,) = of(run.commands[-2:], Launch)
    assert launch.delay_s == 0


def test_a_trial_stopped_while_failing_ends_in_error(tmp_path: Path) -> None:
    search = RecordingSearch(random_state=0)
    scheduler = RecordingScheduler()
    run = Run(make_core(tmp_path, max_failures=-1, search=search, scheduler=scheduler))
    run.start()
    (trial_id,) = run.trial_ids
    for _ in range(3):
        run.started(trial_id)
        run.returned(trial_id, error=ERR)
        run.freed(trial_id, "killed")
    trial = run.core.trials[trial_id]
    assert trial.status == "PENDING" and trial.error is None
    # The time budget ends the experiment while the retry waits or launches; the
    # abandoned launch comes back empty.
    run.stop_all()
    events, _ = run.returned(trial_id)
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert trial.status == "ERROR" and trial.error == ERR  # the last error, kept
    assert search.completed == [(trial_id, None, True)]
    assert scheduler.calls[-1] == ("error", trial_id)
    (finished,) = of(run.events, ExperimentFinished)
    assert finished.num_errors == 1
    # The journal says the same.
    replayed = make_core(tmp_path, max_failures=-1)
    replayed.replay(run.events)
    assert replayed.trials[trial_id].status == "ERROR"
    assert replayed.trials[trial_id].error.message == "boom"


def test_a_retry_that_reported_is_not_failing_any_more(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, max_failures=-1))
    run.start()
    (trial_id,) = run.trial_ids
    run.started(trial_id)
    run.returned(trial_id, error=ERR)
    run.freed(trial_id, "killed")
    run.started(trial_id, attempt=1)
    run.stop_all()
    events, _ = run.returned(trial_id, res(1))
    assert [e.reason for e in of(events, TrialCompleted)] == ["time_budget"]
    assert run.core.trials[trial_id].status == "TERMINATED"


# ------------------------------------------------------ the trial record and its run phases
def test_a_trial_moves_through_explicit_phases(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, is_function=False, checkpoint_frequency=2))
    run.start()
    (trial_id,) = run.trial_ids

    def phase() -> Phase:
        return run.core.run_of(trial_id).phase

    assert phase() is Phase.LAUNCHING
    run.started(trial_id)
    assert phase() is Phase.LAUNCHING  # the launch's own first batch is outstanding
    run.returned(trial_id, res(1))
    assert phase() is Phase.TRAINING
    _, commands = run.returned(trial_id, res(2))
    assert of(commands, Save) and phase() is Phase.SAVING
    run.saved(trial_id, 0, 2)
    assert phase() is Phase.TRAINING
    _, commands = run.returned(trial_id, res(3, done=True))
    assert of(commands, Release) and phase() is Phase.RELEASING
    run.freed(trial_id)
    assert phase() is Phase.ENDED and run.core.finished


def test_the_trial_record_holds_only_what_events_set(tmp_path: Path) -> None:
    # The live trials and the ones a replay of the journal rebuilds are the same records:
    # nothing the core keeps to drive a trial (phase, runner, pipelining) is on ``Trial``.
    run = Run(make_core(tmp_path, num_samples=2, max_live_trials=2, max_failures=1))
    run.start()
    first, second = run.trial_ids
    run.started(first)
    run.started(second)
    run.returned(first, res(1), error=ERR)  # retried
    run.freed(first, "killed")
    run.started(first, attempt=1)
    run.returned(first, res(2), returned=True)
    run.returned(second, res(1))  # still running
    replayed = make_core(tmp_path, num_samples=2, max_live_trials=2)
    replayed.apply_journal(run.events)
    live, again = run.core.get_trials(), replayed.get_trials()
    assert [dataclasses.asdict(t) for t in live] == [dataclasses.asdict(t) for t in again]


def test_callbacks_and_schedulers_get_a_read_only_view_of_the_trials(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=2))
    run.start()
    view = run.core.get_trials()
    assert not isinstance(view, list)
    assert not hasattr(view, "append")
    with pytest.raises(TypeError):
        view[0] = view[0]  # type: ignore[index]
    (first,) = run.trial_ids
    assert [t.trial_id for t in view] == [first]
    run.started(first)
    run.returned(first, res(1), returned=True)
    assert [t.trial_id for t in view] == run.trial_ids and len(view) == 2  # it follows


def test_a_replay_starts_every_trial_from_a_fresh_run_record(tmp_path: Path) -> None:
    run = Run(make_core(tmp_path, num_samples=2, max_live_trials=2))
    run.start()
    first, second = run.trial_ids
    run.started(first)
    run.started(second)
    run.returned(first, res(1), returned=True)
    run.freed(first)
    run.stop_all()  # ``second`` is busy: its stop is decided, not carried out yet
    assert run.core.stopping(second)
    core = make_core(tmp_path, num_samples=2, max_live_trials=2)
    core.replay(run.events)
    assert core.run_of(first).phase is Phase.ENDED
    assert core.run_of(second).phase is Phase.PENDING and not core.stopping(second)
    _, commands = core.handle(ExperimentStarted(ts=99.0, name="exp", path="/exp"))
    assert of(commands, Launch, second) and core.run_of(second).phase is Phase.LAUNCHING
