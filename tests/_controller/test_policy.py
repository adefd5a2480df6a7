"""The execution defaults, decided by a pure function (no Ray, no backend)."""

from __future__ import annotations

from typing import Any

import pytest

from atune._controller._policy import (
    UNBOUNDED_LIVE_TRIALS,
    ExecutionDefaults,
    execution_defaults,
    live_trial_limit,
)
from atune.execution._resources import to_units

CPU = 1_000_000


def _defaults(**kw: Any) -> ExecutionDefaults:
    args: dict[str, Any] = {
        "is_function": True,
        "reuse_actors": None,
        "checkpoint_at_end": None,
        "static_resources": True,
        "capacity": {"CPU": 8 * CPU},
        "trial_request": {"CPU": CPU},
        "max_concurrent": None,
    }
    args.update(kw)
    return execution_defaults(**args)


@pytest.mark.parametrize(
    ("is_function", "reuse_actors", "reuse"),
    [(True, None, True), (False, None, False), (True, False, False), (False, True, True)],
)
def test_reuse_defaults_to_on_for_functions_only(
    is_function: bool, reuse_actors: bool | None, reuse: bool
) -> None:
    assert _defaults(is_function=is_function, reuse_actors=reuse_actors).reuse is reuse


@pytest.mark.parametrize(
    ("is_function", "given", "at_end"),
    [(True, None, False), (False, None, True), (False, False, False), (True, True, True)],
)
def test_checkpoint_at_end_defaults_to_on_for_classes_only(
    is_function: bool, given: bool | None, at_end: bool
) -> None:
    assert _defaults(is_function=is_function, checkpoint_at_end=given).checkpoint_at_end is at_end


def test_pipelining_needs_reuse_and_one_request_for_every_trial() -> None:
    assert _defaults().pipeline
    assert not _defaults(reuse_actors=False).pipeline
    assert not _defaults(static_resources=False).pipeline
    assert not _defaults(is_function=False).pipeline  # no reuse by default for classes


def test_the_live_trial_limit_counts_in_exact_units() -> None:
    # Ten 0.1-CPU trials fit in one CPU exactly (a float division gives 9.999...).
    assert live_trial_limit(to_units({"CPU": 1.0}), to_units({"CPU": 0.1}), None) == 10
    assert live_trial_limit(to_units({"CPU": 0.3}), to_units({"CPU": 0.1}), None) == 3
    # The scarcest resource decides; a resource the cluster lacks allows one trial.
    capacity = {"CPU": 8 * CPU, "GPU": 2 * CPU}
    assert live_trial_limit(capacity, {"CPU": CPU, "GPU": CPU}, None) == 2
    assert live_trial_limit({"CPU": 8 * CPU}, {"CPU": CPU, "GPU": CPU}, None) == 1
    assert live_trial_limit(capacity, {"CPU": CPU}, 3) == 3
    assert live_trial_limit(capacity, {}, None) == UNBOUNDED_LIVE_TRIALS
    assert live_trial_limit(capacity, {"CPU": 0}, 5) == 5
    assert _defaults(max_concurrent=2).max_live_trials == 2
    assert _defaults(trial_request={"CPU": 3 * CPU}).max_live_trials == 2


def test_a_growing_cluster_allows_pending_trials_beyond_what_fits() -> None:
    # A 0-CPU head: nothing fits, yet four trials may wait for nodes (their requests are
    # the demand the autoscaler sees); max_concurrent_trials still caps the total.
    assert live_trial_limit({}, {"CPU": CPU}, None, pending=4) == 4
    assert live_trial_limit({"CPU": 2 * CPU}, {"CPU": CPU}, None, pending=4) == 6
    assert live_trial_limit({"CPU": 2 * CPU}, {"CPU": CPU}, 3, pending=4) == 3
    assert _defaults(trial_request={"CPU": 3 * CPU}, pending_trials=5).max_live_trials == 7
