"""Restore: the search algorithm hears what happened after its last snapshot."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

from atune._controller._restore import catch_up_scheduler, catch_up_search
from atune.events import (
    Event,
    ResultReported,
    SchedulerStateSaved,
    SearcherStateSaved,
    TrialCompleted,
    TrialCreated,
    TrialErrored,
)
from atune.schedulers import FIFOScheduler, TrialScheduler
from atune.search import SearchAlgorithm, Suggestion


class Recorder(SearchAlgorithm):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set_search_properties(self, *args: Any) -> bool:
        return True

    def next_trial(self, trial_id: str) -> Suggestion | Literal["FINISHED"] | None:
        self.calls.append(("next", trial_id))
        return Suggestion(config={}, experiment_tag=trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.calls.append(("complete", trial_id, result and result.get("m/x"), error))

    @property
    def total_samples(self) -> int | None:
        return None

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass


def _created(trial_id: str) -> TrialCreated:
    return TrialCreated(
        ts=0,
        trial_id=trial_id,
        trial_name=trial_id,
        dirname=trial_id,
        config={},
        experiment_tag=trial_id,
        resources=[{"CPU": 1}],
    )


def _errored(trial_id: str, will_retry: bool) -> TrialErrored:
    return TrialErrored(
        ts=0, trial_id=trial_id, error_type="E", message="", traceback="", will_retry=will_retry
    )


def test_completions_and_creations_after_the_snapshot_are_replayed_in_order() -> None:
    events: list[Event] = [
        _created("a"),
        _created("b"),
        ResultReported(ts=0, trial_id="a", result={"m": {"x": 1.0}}),
        SearcherStateSaved(ts=0, state={}),
        ResultReported(ts=0, trial_id="b", result={"m": {"x": 2.0}}),
        TrialCompleted(ts=0, trial_id="a", reason="returned"),  # reported before the snapshot
        _created("c"),
        _errored("b", will_retry=True),
        TrialCompleted(ts=0, trial_id="b", reason="stopped"),  # stopped while failing
        _errored("c", will_retry=False),
        _created("d"),
    ]
    search = Recorder()
    catch_up_search(search, events, snapshot_at=3)
    assert search.calls == [
        ("complete", "a", 1.0, False),
        ("next", "c"),
        ("complete", "b", None, True),
        ("complete", "c", None, True),
        ("next", "d"),
    ]


class SchedulerRecorder(TrialScheduler):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("add", trial.trial_id))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self.calls.append(("result", trial.trial_id, result.get("m/x")))
        return self.STOP  # ignored: the decision was carried out live

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self.calls.append(("complete", trial.trial_id, result.get("m/x")))

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("remove", trial.trial_id))


def test_the_scheduler_hears_every_event_after_its_snapshot_as_it_did_live() -> None:
    events: list[Event] = [
        _created("a"),
        ResultReported(ts=0, trial_id="a", result={"m": {"x": 1.0}}),
        SchedulerStateSaved(ts=0, state={}),
        _created("b"),
        ResultReported(ts=0, trial_id="a", result={"m": {"x": 2.0}}),
        ResultReported(ts=0, trial_id="b", result={"m": {"x": 3.0}, "done": True}),
        TrialCompleted(ts=0, trial_id="b", reason="done"),
        _created("c"),
        ResultReported(ts=0, trial_id="c", result={"m": {"x": 4.0}, "done": True}),
        TrialCompleted(ts=0, trial_id="c", reason="scheduler"),
        _errored("a", will_retry=True),
        TrialCompleted(ts=0, trial_id="a", reason="skipped"),
    ]
    scheduler = SchedulerRecorder()
    core: Any = SimpleNamespace(
        scheduler=scheduler,
        trials={t: SimpleNamespace(trial_id=t) for t in "abc"},
        _recording=True,
        _actions=[],
    )
    catch_up_scheduler(core, events, snapshot_at=2)
    assert scheduler.calls == [
        ("add", "b"),
        ("result", "a", 2.0),
        # A result that ended its trial by itself is seen by on_trial_complete only, as
        # live; one the scheduler stopped it at was decided on by on_trial_result first.
        ("complete", "b", 3.0),
        ("add", "c"),
        ("result", "c", 4.0),
        ("complete", "c", 4.0),
        ("error", "a"),
        ("add", "a"),  # re-added for its retry, as live
        ("remove", "a"),  # skipped on restore
    ]


def _core(scheduler: TrialScheduler, trials: dict[str, Any]) -> Any:
    """The part of a ``ControllerCore`` that the scheduler catch-up uses."""
    return SimpleNamespace(scheduler=scheduler, trials=trials, _recording=True, _actions=[])


class ResultsOnly(FIFOScheduler):
    """A FIFO subclass that listens to one hook: it must still be caught up."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self.seen.append(result["m/x"])
        return self.CONTINUE


def test_a_scheduler_that_overrides_any_hook_is_caught_up_and_plain_fifo_is_skipped() -> None:
    events: list[Event] = [
        _created("a"),
        ResultReported(ts=0, trial_id="a", result={"m": {"x": 1.0}}),
        ResultReported(ts=0, trial_id="a", result={"m": {"x": 2.0}}),
    ]
    trials = {"a": SimpleNamespace(trial_id="a")}
    listening = ResultsOnly()
    catch_up_scheduler(_core(listening, trials), events, -1)
    assert listening.seen == [1.0, 2.0]
    # Plain FIFO has no hook to tell: nothing is flattened or called, whatever the events
    # hold (a trial id it could not look up proves it was not consulted).
    unknown: list[Event] = [ResultReported(ts=0, trial_id="nobody", result={"m": 1})]
    catch_up_scheduler(_core(FIFOScheduler(), {}), unknown, -1)
