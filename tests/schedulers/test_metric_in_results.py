"""A result without the scheduler's metric, or with a value that is not a number.

The trial's first result is checked: a missing or non-numeric metric fails *that* trial
with a :class:`~atune.errors.MetricError` naming the metric and the scheduler, and the
other trials run on. A later result without a usable value is skipped by the scheduler
(CONTINUE). Never a ``KeyError``/``TypeError`` from the scheduler's internals (Ray Tune's
``metric_op * "low"``). Local backend, no Ray.
"""

from __future__ import annotations

from typing import Any

import pytest

import atune as tune
from atune.errors import MetricError
from atune.schedulers import ASHAScheduler, MedianStoppingRule, TrialScheduler


def reports(config: dict[str, Any]) -> None:
    for result in config["reports"]:
        tune.report(result)


def _asha() -> TrialScheduler:
    return ASHAScheduler(metric="score", mode="max", max_t=10, grace_period=1)


def _median() -> TrialScheduler:
    return MedianStoppingRule(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        grace_period=1,
        min_samples_required=1,
    )


SCHEDULERS = {"ASHA": _asha, "MedianStoppingRule": _median}
GOOD = [{"score": 1.0}, {"score": 2.0}, {"score": 3.0}]


def _fit(storage: str, scheduler: TrialScheduler, bad: list[dict[str, Any]]) -> Any:
    return tune.Tuner(
        reports,
        param_space={"reports": tune.grid_search([GOOD, bad])},
        tune_config=tune.TuneConfig(backend="local", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()


@pytest.mark.parametrize("make", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ([{"acc": 0.5}, {"acc": 0.6}], "reported a result without the metric 'score'"),
        ([{"score": "low"}, {"score": "lower"}], "'score' that {} expects as str 'low'"),
        ([{"score": None}], "'score' that {} expects as NoneType None"),
        ([{"score": [1.0]}], "'score' that {} expects as list [1.0]"),
    ],
    ids=["missing", "str", "none", "list"],
)
def test_a_bad_first_result_fails_only_that_trial_naming_the_metric(
    storage: str, make: Any, bad: list[dict[str, Any]], shown: str
) -> None:
    scheduler = make()
    results = _fit(storage, scheduler, bad)
    assert results.num_errors == 1 and results.num_terminated == 1
    (error,) = results.errors
    assert isinstance(error, MetricError) and isinstance(error, ValueError)
    assert not isinstance(error, (KeyError, TypeError))
    assert shown.format(type(scheduler).__name__) in str(error)
    assert type(scheduler).__name__ in str(error)
    good = next(r for r in results if r.error is None)
    assert good.metrics["score"] == 3.0  # the other trial ran on


@pytest.mark.parametrize("make", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
@pytest.mark.parametrize(
    "later",
    [{"acc": 0.5}, {"score": "low"}, {"score": None}, {"score": True}],
    ids=["missing", "str", "none", "bool"],
)
def test_a_bad_later_result_is_skipped_by_the_scheduler(
    storage: str, make: Any, later: dict[str, Any]
) -> None:
    results = _fit(storage, make(), [{"score": 5.0}, later, {"score": 6.0}])
    assert results.num_errors == 0 and results.num_terminated == 2
    bad = next(r for r in results if r.config["reports"][1] == later)
    assert bad.metrics["training_iteration"] == 3  # it ran to its end
    assert bad.metrics["score"] == 6.0
