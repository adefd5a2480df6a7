"""The execution defaults of one experiment, as a pure function of its configuration.

``fit()`` settles four things before the first trial, from what the user configured and
what the cluster has; :func:`execution_defaults` decides them all, with no I/O, so each
rule is tested on its own:

* **reuse** (``TuneConfig.reuse_actors``): as given; unset means on for a function
  trainable (its runner is reset cheaply between trials) and off for a class, as in
  Ray Tune.
* **checkpoint at end** (``CheckpointConfig.checkpoint_at_end``): as given; unset means
  on for a class trainable and off for a function (which checkpoints itself), as in
  Ray Tune.
* **pipelining**: queue the next trial on a running trial's runner, so it starts there
  with no round trip between trials. Only with reuse, and only when every trial asks
  for the same resources (a per-config resource callable could give the next trial a
  request the runner does not hold).
* **live-trial limit**: how many trials may be live at once, :func:`live_trial_limit`
  of the cluster's capacity, one trial's request and ``max_concurrent_trials``. The
  core recomputes it with the same function when the capacity changes. On a cluster
  that can grow, ``pending_trials`` more may be live, waiting for the nodes they ask
  for (``TUNE_MAX_PENDING_TRIALS_PG``, :mod:`atune.execution._growth`): their requests
  are the demand the autoscaler sees.

Resource amounts are in the allocator's integer units
(:data:`~atune.execution._resources.UNITS_PER_RESOURCE` per unit), so the count is
exact: ten trials of 0.1 CPU fit in one CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "UNBOUNDED_LIVE_TRIALS",
    "ExecutionDefaults",
    "execution_defaults",
    "live_trial_limit",
    "retry_delay",
]

#: The limit when a trial asks for nothing countable (every amount zero).
UNBOUNDED_LIVE_TRIALS = 1_000_000


@dataclass(frozen=True)
class ExecutionDefaults:
    """What :func:`execution_defaults` decided (see the module docstring).

    Attributes:
        reuse: Runners are cached and reset for the next trial.
        checkpoint_at_end: A class trainable saves a checkpoint when it ends on a result.
        pipeline: The next trial may be queued on a running trial's runner.
        max_live_trials: Trials live at once at the start (at least 1).
    """

    reuse: bool
    checkpoint_at_end: bool
    pipeline: bool
    max_live_trials: int


def live_trial_limit(
    capacity: Mapping[str, int],
    request: Mapping[str, int],
    max_concurrent: int | None,
    pending: int = 0,
) -> int:
    """How many copies of ``request`` fit in ``capacity`` at once, capped and at least 1.

    Args:
        capacity: The cluster's total, in allocator units.
        request: One trial's request (the sum of its bundles), in allocator units.
        max_concurrent: ``TuneConfig.max_concurrent_trials``; None or 0 for no cap.
        pending: Trials allowed beyond what fits, to wait for a growing cluster
            (0 on a fixed cluster).

    Returns:
        The smallest ``capacity[key] // request[key]`` over the requested resources
        (a resource the cluster lacks counts as zero), plus ``pending``, capped at
        ``max_concurrent``, and never below 1: a request that fits nowhere still gets
        one trial, whose launch then fails with the allocator's
        ``InfeasibleResourcesError`` (or waits for the cluster to grow).
    """
    counts = [capacity.get(key, 0) // amount for key, amount in request.items() if amount > 0]
    limit = min(counts) + pending if counts else UNBOUNDED_LIVE_TRIALS
    if max_concurrent:
        limit = min(limit, max_concurrent)
    return max(1, limit)


def execution_defaults(
    *,
    is_function: bool,
    reuse_actors: bool | None,
    checkpoint_at_end: bool | None,
    static_resources: bool,
    capacity: Mapping[str, int],
    trial_request: Mapping[str, int],
    max_concurrent: int | None,
    pending_trials: int = 0,
) -> ExecutionDefaults:
    """Decide the experiment's execution defaults (see the module docstring).

    Args:
        is_function: The trainable is a wrapped function (not a ``Trainable`` class).
        reuse_actors: ``TuneConfig.reuse_actors`` (None: unset).
        checkpoint_at_end: ``CheckpointConfig.checkpoint_at_end`` (None: unset).
        static_resources: Every trial asks for the same resources.
        capacity: The cluster's total at the start, in allocator units.
        trial_request: One trial's request, in allocator units.
        max_concurrent: ``TuneConfig.max_concurrent_trials``.
        pending_trials: Trials beyond what fits that may wait for a growing cluster.

    Returns:
        The decided :class:`ExecutionDefaults`.
    """
    reuse = is_function if reuse_actors is None else bool(reuse_actors)
    at_end = (not is_function) if checkpoint_at_end is None else bool(checkpoint_at_end)
    return ExecutionDefaults(
        reuse=reuse,
        checkpoint_at_end=at_end,
        pipeline=reuse and static_resources,
        max_live_trials=live_trial_limit(capacity, trial_request, max_concurrent, pending_trials),
    )


_RETRY_DELAY_CAP_S = 30.0


def retry_delay(failure_streak: int) -> float:
    """How long a retry waits after ``failure_streak`` failed attempts in a row.

    The first retry starts at once (a transient fault costs nothing); after that the wait
    doubles from one second, capped at 30 s: 0, 1, 2, 4, 8, 16, 30, 30, ... seconds. A
    result resets the streak. Ray Tune retries at once every time; with
    ``max_failures=-1`` and an error that always recurs, that spins as fast as trials can
    start. The wait holds no resources: it happens before the retry asks for them.
    """
    if failure_streak <= 1:
        return 0.0
    return min(_RETRY_DELAY_CAP_S, 2.0 ** (failure_streak - 2))
