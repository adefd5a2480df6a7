from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import pytest
import structlog

from atune.errors import ConfigError
from atune.stopper import (
    CombinedStopper,
    DictStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
    dict_criteria_met,
    make_stopper,
)


class _Clock:
    """A fake ``time.monotonic`` that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr("atune.stopper.time.monotonic", fake)
    return fake


class _Counting(Stopper):
    def __init__(self, stop_at: int) -> None:
        self.seen = 0
        self.stop_at = stop_at

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.seen += 1
        return self.seen >= self.stop_at

    def stop_all(self) -> bool:
        return False


def test_stopper_is_abstract() -> None:
    class Half(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

    with pytest.raises(TypeError):
        Half()  # type: ignore[abstract]


def test_noop() -> None:
    noop = NoopStopper()
    assert noop("t", {"x": 1}) is False
    assert noop.stop_all() is False


def test_function_stopper() -> None:
    stopper = FunctionStopper(lambda trial_id, result: result["x"] > 2 and trial_id == "a")
    assert stopper("a", {"x": 3}) is True
    assert stopper("b", {"x": 3}) is False
    assert stopper("a", {"x": 1}) is False
    assert stopper.stop_all() is False


def test_function_stopper_rejects_stop_all_attribute_and_stoppers() -> None:
    class Sneaky:
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return True

        def stop_all(self) -> bool:
            return True

    with pytest.raises(ConfigError, match="stop_all"):
        FunctionStopper(Sneaky())
    with pytest.raises(ConfigError, match="Stopper"):
        FunctionStopper(NoopStopper())
    with pytest.raises(ConfigError):
        FunctionStopper(42)  # type: ignore[arg-type]


def test_maximum_iteration_counts_results_per_trial() -> None:
    stopper = MaximumIterationStopper(max_iter=3)
    assert [stopper("a", {"training_iteration": 100}) for _ in range(3)] == [False, False, True]
    assert stopper("b", {}) is False
    assert stopper.stop_all() is False
    with pytest.raises(ConfigError):
        MaximumIterationStopper("3")  # type: ignore[arg-type]


def test_trial_plateau_stops_after_grace_and_window() -> None:
    stopper = TrialPlateauStopper("loss", std=0.01, num_results=3, grace_period=5)
    verdicts = [stopper("a", {"loss": v}) for v in [5.0, 4.0, 1.0, 1.0, 1.0, 1.0]]
    # the window [1, 1, 1] is flat from the 5th result on; grace ends at the 5th
    assert verdicts == [False, False, False, False, True, True]
    # trials are independent
    assert stopper("b", {"loss": 1.0}) is False


def test_trial_plateau_not_flat_or_missing() -> None:
    stopper = TrialPlateauStopper("loss", std=0.01, num_results=2, grace_period=1)
    assert stopper("a", {"loss": 1.0}) is False
    assert stopper("a", {"loss": 2.0}) is False
    assert stopper("a", {"other": 2.0}) is False  # missing value in window
    assert stopper("a", {"loss": float("nan")}) is False
    assert stopper("a", {"loss": 2.0}) is False  # window holds nan
    assert stopper("a", {"loss": 2.0}) is True


def test_trial_plateau_threshold() -> None:
    stopper = TrialPlateauStopper(
        "acc", std=0.1, num_results=2, grace_period=2, metric_threshold=0.9, mode="max"
    )
    assert [stopper("a", {"acc": 0.5}) for _ in range(3)] == [False, False, False]
    assert [stopper("b", {"acc": 0.95}) for _ in range(2)] == [False, True]
    low = TrialPlateauStopper(
        "loss", num_results=2, grace_period=0, metric_threshold=0.1, mode="min"
    )
    assert [low("a", {"loss": 0.5}) for _ in range(2)] == [False, False]
    assert [low("b", {"loss": 0.05}) for _ in range(2)] == [False, True]


def test_trial_plateau_validation() -> None:
    with pytest.raises(ConfigError, match="mode"):
        TrialPlateauStopper("m", metric_threshold=0.0)
    with pytest.raises(ConfigError, match="mode"):
        TrialPlateauStopper("m", mode="maximize")
    with pytest.raises(ConfigError, match="num_results"):
        TrialPlateauStopper("m", num_results=0)


def test_experiment_plateau_min_keeps_lowest() -> None:
    stopper = ExperimentPlateauStopper("loss", std=0.01, top=3, mode="min", patience=1)
    assert stopper("a", {"loss": 1.0}) is False
    assert stopper("b", {"loss": 1.0}) is False
    assert stopper("c", {"no_metric": 0}) is False  # ignored
    assert stopper("c", {"loss": 5.0}) is False  # top 3 = [1, 1, 5]: not flat
    assert stopper.stop_all() is False
    # top 3 = [1, 1, 1]: flat; the counter goes to 1 before the check, as in Ray Tune
    assert stopper("d", {"loss": 1.0}) is True
    assert stopper.stop_all() is True
    assert stopper("e", {"loss": 0.0}) is False  # top 3 = [0, 1, 1]: the plateau breaks
    assert stopper.has_plateaued() is False


def test_experiment_plateau_counter_and_reset() -> None:
    stopper = ExperimentPlateauStopper("acc", std=0.01, top=2, mode="max", patience=2)
    assert stopper("a", {"acc": 0.5}) is False
    assert stopper("a", {"acc": 0.5}) is False  # flat, counter 1
    assert stopper("a", {"acc": 0.9}) is False  # top [0.5, 0.9] not flat, counter 0
    assert stopper("b", {"acc": 0.9}) is False  # top [0.9, 0.9] flat, counter 1
    assert stopper("b", {"acc": 0.1}) is True  # still flat, counter 2 >= patience
    assert stopper.stop_all() is True
    assert stopper("c", {"acc": 0.2}) is True  # once plateaued, every trial is told to stop


def test_experiment_plateau_patience_zero_stops_at_plateau() -> None:
    stopper = ExperimentPlateauStopper("loss", top=2)
    assert stopper("a", {"loss": 3.0}) is False
    assert stopper("b", {"loss": 3.0}) is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "avg"},
        {"top": 1},
        {"top": 2.5},
        {"patience": -1},
        {"std": 0.0},
        {"std": "0.1"},
    ],
)
def test_experiment_plateau_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ExperimentPlateauStopper("m", **kwargs)


def test_timeout_budget_starts_at_first_check(clock: _Clock) -> None:
    stopper = TimeoutStopper(timedelta(seconds=10))
    clock.now += 100  # time before the first check does not count
    assert stopper.stop_all() is False
    clock.now += 6
    assert stopper.stop_all() is False
    assert stopper("t", {}) is False
    clock.now += 4
    assert stopper.stop_all() is True


def test_timeout_restarts_clock_after_unpickle(clock: _Clock) -> None:
    stopper = TimeoutStopper(10)
    stopper.stop_all()
    clock.now += 6
    assert stopper.stop_all() is False
    restored = pickle.loads(pickle.dumps(stopper))
    clock.now += 1000  # downtime is not counted
    assert restored.stop_all() is False
    clock.now += 3.9
    assert restored.stop_all() is False
    clock.now += 0.2
    assert restored.stop_all() is True


def test_timeout_validation() -> None:
    with pytest.raises(ConfigError, match="str"):
        TimeoutStopper("10")  # type: ignore[arg-type]


def test_combined_asks_every_stopper() -> None:
    first, second = _Counting(stop_at=1), _Counting(stop_at=5)
    combined = CombinedStopper(first, second)
    assert combined("t", {}) is True
    assert second.seen == 1  # no short-circuit
    assert combined.stoppers == (first, second)
    assert combined.stop_all() is False
    with pytest.raises(ConfigError, match="dict"):
        CombinedStopper(NoopStopper(), {"a": 1})  # type: ignore[arg-type]


def test_combined_stop_all(clock: _Clock) -> None:
    combined = CombinedStopper(NoopStopper(), TimeoutStopper(0))
    assert combined.stop_all() is True


def test_dict_criteria_met() -> None:
    criteria = {"acc": 0.6, "info/it": 5}
    assert dict_criteria_met(criteria, {"acc": 0.6}) is True
    assert dict_criteria_met(criteria, {"acc": 0.5, "info/it": 4}) is False
    assert dict_criteria_met(criteria, {"acc": 0.5, "info/it": 5}) is True
    assert dict_criteria_met(criteria, {"acc": None}) is False
    assert dict_criteria_met(criteria, {}) is False
    with pytest.raises(TypeError, match="'acc'"):
        dict_criteria_met(criteria, {"acc": "high"})


def test_dict_stopper_flattens_result() -> None:
    stopper = DictStopper({"acc": 0.6, "info/it": 5})
    assert stopper.criteria == {"acc": 0.6, "info/it": 5}
    assert stopper("t", {"acc": 0.1, "info": {"it": 5}}) is True
    assert stopper("t", {"acc": 0.1, "info": {"it": 4}}) is False
    assert stopper("t", {"acc": 0.7, "info": {"it": 1}}) is True
    assert stopper.stop_all() is False


def test_dict_stopper_rejects_nested_criteria() -> None:
    with pytest.raises(ConfigError, match=r"'info'.*flattened"):
        DictStopper({"info": {"it": 5}})
    with pytest.raises(ConfigError):
        DictStopper({1: 5})  # type: ignore[dict-item]


def test_dict_stopper_warns_once_per_missing_key() -> None:
    stopper = DictStopper({"acc": 0.6, "loss": 0.1})
    with structlog.testing.capture_logs() as logs:
        stopper("t", {"x": 1})
        stopper("t", {"x": 1})
        stopper("u", {"acc": 0.1})
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert sorted(entry["criterion"] for entry in warnings) == ["acc", "loss"]


def test_make_stopper_forms() -> None:
    assert make_stopper(None) is None
    assert make_stopper({}) is None
    assert make_stopper([]) is None
    noop = NoopStopper()
    assert make_stopper(noop) is noop
    dict_stopper = make_stopper({"acc": 1})
    assert isinstance(dict_stopper, DictStopper)
    assert dict_stopper.criteria == {"acc": 1}
    function_stopper = make_stopper(lambda trial_id, result: True)
    assert isinstance(function_stopper, FunctionStopper)
    assert function_stopper("t", {}) is True
    combined = make_stopper([noop, MaximumIterationStopper(2)])
    assert isinstance(combined, CombinedStopper)
    assert len(combined.stoppers) == 2


def test_make_stopper_errors() -> None:
    with pytest.raises(ConfigError, match="int"):
        make_stopper(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\['dict'\]"):
        make_stopper([NoopStopper(), {"a": 1}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="instance"):
        make_stopper(NoopStopper)  # type: ignore[arg-type]


def test_make_stopper_time_budget(clock: _Clock) -> None:
    alone = make_stopper(None, time_budget_s=5)
    assert isinstance(alone, TimeoutStopper)
    combined = make_stopper({"acc": 1}, time_budget_s=timedelta(seconds=5))
    assert isinstance(combined, CombinedStopper)
    assert [type(s) for s in combined.stoppers] == [DictStopper, TimeoutStopper]
    assert make_stopper(None, time_budget_s=0) is None


def test_builtin_stoppers_pickle() -> None:
    stoppers: list[Stopper] = [
        NoopStopper(),
        MaximumIterationStopper(3),
        TrialPlateauStopper("m"),
        ExperimentPlateauStopper("m"),
        TimeoutStopper(5),
        DictStopper({"a": 1}),
        CombinedStopper(NoopStopper(), MaximumIterationStopper(1)),
        FunctionStopper(_module_level_fn),
    ]
    for stopper in stoppers:
        stopper("t", {"m": 1.0, "a": 0})
        restored = pickle.loads(pickle.dumps(stopper))
        assert type(restored) is type(stopper)
    counted = MaximumIterationStopper(2)
    counted("t", {})
    assert pickle.loads(pickle.dumps(counted))("t", {}) is True  # state survives


def _module_level_fn(trial_id: str, result: dict[str, Any]) -> bool:
    return False


def test_dict_stopper_reads_nested_and_top_level_criteria_alike() -> None:
    stopper = DictStopper({"info/it": 3, "acc": 0.9})
    assert not stopper("t", {"info": {"it": 2}, "acc": 0.5})
    assert stopper("t", {"info": {"it": 3}, "acc": 0.5})
    assert stopper("t", {"info": {"it": 0}, "acc": 0.95})
    # A top-level key holding a dict is not a value to compare: its leaves are.
    assert not DictStopper({"acc": 1})("t", {"acc": {"top1": 5}, "x": 1})
