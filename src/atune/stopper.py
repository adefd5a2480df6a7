"""Stoppers: decide from results when a trial, or the whole experiment, should stop.

This is Ray Tune's ``ray.tune.stopper`` with the same classes and semantics. A
:class:`Stopper` is asked twice over: ``stopper(trial_id, result)`` after each result of a
trial ("stop this trial?") and ``stopper.stop_all()`` on every controller step ("stop the
experiment?"). When ``stop_all()`` is true, the searcher is finished and every unfinished
trial is stopped as TERMINATED.

``RunConfig(stop=...)`` accepts a dict of criteria, a function, a :class:`Stopper` or a list
of Stoppers; :func:`make_stopper` turns any of them into one Stopper.

Stoppers are kept in the experiment state, so they must pickle; the built-in ones do.
Apart from :class:`TimeoutStopper`, which reads the monotonic clock, every built-in stopper
decides from the results it has seen alone. ``result["done"]`` is not a stopper's business:
the controller ends a trial that reports it.
"""

from __future__ import annotations

import abc
import bisect
import math
import numbers
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, cast

from atune._flatten import flatten_dict
from atune._log import get_logger
from atune.errors import ConfigError

__all__ = [
    "CombinedStopper",
    "DictStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "Stopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
    "dict_criteria_met",
    "flatten_for_criteria",
    "make_stopper",
]

logger = get_logger(__name__)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_float(value: object) -> float | None:
    """``value`` as a finite float, or None if it is missing, not a number, NaN or inf."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Stopper(abc.ABC):
    """Base class of stoppers: per-trial ``__call__`` and experiment-wide ``stop_all``.

    Subclasses implement both methods. They must pickle, since the stopper is saved with
    the experiment state and restored by ``Tuner.restore``.
    """

    @abc.abstractmethod
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return True if the trial ``trial_id`` should stop after ``result``.

        Args:
            trial_id: The trial that reported.
            result: The reported result, as the trial returned it (nested, not flattened).
        """

    @abc.abstractmethod
    def stop_all(self) -> bool:
        """Return True if the whole experiment should stop now."""


class NoopStopper(Stopper):
    """Never stops anything; the default when ``RunConfig(stop=None)``."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return False."""
        return False

    def stop_all(self) -> bool:
        """Return False."""
        return False


class FunctionStopper(Stopper):
    """Wraps a function ``fn(trial_id, result) -> bool`` as a per-trial stopper.

    Args:
        function: Called with each result; a truthy return stops that trial.

    Raises:
        ConfigError: If ``function`` is not callable, is already a :class:`Stopper`, or has
            a ``stop_all`` attribute without subclassing :class:`Stopper` (its ``stop_all``
            would silently be ignored).
    """

    def __init__(self, function: Callable[[str, dict[str, Any]], bool]) -> None:
        if not self.is_valid_function(function):
            raise ConfigError(
                f"FunctionStopper needs a plain function, got {type(function).__name__}; "
                "pass a Stopper directly as the stop argument.",
                value=function,
            )
        self._fn = function

    @classmethod
    def is_valid_function(cls, fn: object) -> bool:
        """Return True if ``fn`` is a callable to wrap (callable, not a Stopper).

        Raises:
            ConfigError: If ``fn`` has a ``stop_all`` attribute but is not a Stopper.
        """
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise ConfigError(
                f"The stop object {fn!r} has a stop_all attribute but does not subclass "
                "atune.stopper.Stopper; subclass Stopper so that stop_all is used.",
                value=fn,
            )
        return is_function

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return the wrapped function's verdict as a bool."""
        return bool(self._fn(trial_id, result))

    def stop_all(self) -> bool:
        """Return False: a function only stops single trials."""
        return False


class MaximumIterationStopper(Stopper):
    """Stops a trial after it has reported ``max_iter`` results.

    It counts the results it sees per trial and does not read ``training_iteration``.
    The counts are stopper state, saved and restored with the experiment.

    Args:
        max_iter: Number of results after which a trial stops.

    Raises:
        ConfigError: If ``max_iter`` is not a number.
    """

    def __init__(self, max_iter: int) -> None:
        if not _is_number(max_iter):
            raise ConfigError(f"max_iter must be a number, got {max_iter!r}.", value=max_iter)
        self._max_iter = max_iter
        self._iter: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Count this result; return True once the trial has reported ``max_iter`` times."""
        self._iter[trial_id] = self._iter.get(trial_id, 0) + 1
        return self._iter[trial_id] >= self._max_iter

    def stop_all(self) -> bool:
        """Return False."""
        return False


class TrialPlateauStopper(Stopper):
    """Stops a trial whose metric has stopped moving.

    After a trial has reported at least ``grace_period`` results and at least
    ``num_results`` values of ``metric``, it is stopped when the standard deviation of its
    last ``num_results`` values is below ``std``. With ``metric_threshold`` set, the latest
    value must also be at or past the threshold (``<=`` it for ``mode="min"``, ``>=`` for
    ``"max"``). A window holding a missing, non-numeric, NaN or infinite value never counts
    as a plateau.

    Args:
        metric: Result key to watch (top level of the result).
        std: Standard deviation below which the metric counts as flat.
        num_results: Number of latest values in the window.
        grace_period: Minimum number of results before a trial can be stopped.
        metric_threshold: Optional bound the latest value must have reached.
        mode: ``"min"`` or ``"max"``; required with ``metric_threshold``.

    Raises:
        ConfigError: If ``mode`` is not None, ``"min"`` or ``"max"``; if
            ``metric_threshold`` is given without a mode; if ``num_results < 1``.
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: float | None = None,
        mode: str | None = None,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ConfigError(f"mode must be 'min', 'max' or None, got {mode!r}.", value=mode)
        if metric_threshold is not None and mode is None:
            raise ConfigError(
                "TrialPlateauStopper with a metric_threshold needs mode='min' or 'max'.",
                value=mode,
            )
        if not isinstance(num_results, int) or num_results < 1:
            raise ConfigError(
                f"num_results must be an int >= 1, got {num_results!r}.", value=num_results
            )
        self._metric = metric
        self._std = std
        self._num_results = num_results
        self._grace_period = grace_period
        self._metric_threshold = metric_threshold
        self._mode = mode
        self._iter: dict[str, int] = {}
        self._windows: dict[str, list[float | None]] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Record this result's metric; return True if the trial has plateaued."""
        value = _finite_float(result.get(self._metric))
        window = self._windows.setdefault(trial_id, [])
        window.append(value)
        del window[: -self._num_results]
        self._iter[trial_id] = self._iter.get(trial_id, 0) + 1
        if self._iter[trial_id] < self._grace_period or len(window) < self._num_results:
            return False
        if self._metric_threshold is not None:
            if value is None:
                return False
            if self._mode == "min" and value > self._metric_threshold:
                return False
            if self._mode == "max" and value < self._metric_threshold:
                return False
        if any(v is None for v in window):
            return False
        return statistics.pstdev(float(v) for v in window if v is not None) < self._std

    def stop_all(self) -> bool:
        """Return False."""
        return False


class ExperimentPlateauStopper(Stopper):
    """Stops the experiment when the best values of a metric across trials stop moving.

    It keeps the ``top`` best values of ``metric`` seen across all trials. Once it holds
    ``top`` values whose standard deviation is ``<= std``, a counter goes up on every
    result (and resets to 0 when that stops holding); the experiment stops when the
    plateau holds and the counter has reached ``patience``. Once that happens every
    trial's next result is also answered with True. Results without a finite numeric
    ``metric`` are ignored.

    Args:
        metric: Result key to watch (top level of the result).
        std: Standard deviation at or below which the top values count as flat.
        top: How many best values to keep; must be > 1.
        mode: ``"min"`` or ``"max"``: which values are best.
        patience: Results to wait, with the plateau holding, before stopping.

    Raises:
        ConfigError: If ``mode`` is not ``"min"``/``"max"``, ``top`` is not an int > 1,
            ``patience`` is not an int >= 0, or ``std`` is not a positive number.
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.001,
        top: int = 10,
        mode: str = "min",
        patience: int = 0,
    ) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}.", value=mode)
        if not isinstance(top, int) or isinstance(top, bool) or top <= 1:
            raise ConfigError(f"top must be an int greater than 1, got {top!r}.", value=top)
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
            raise ConfigError(f"patience must be an int >= 0, got {patience!r}.", value=patience)
        if not _is_number(std) or std <= 0:
            raise ConfigError(f"std must be a positive number, got {std!r}.", value=std)
        self._metric = metric
        self._std = std
        self._top = top
        self._mode = mode
        self._patience = patience
        self._iterations = 0
        self._top_values: list[float] = []

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Record this result's metric; return :meth:`stop_all`."""
        value = _finite_float(result.get(self._metric))
        if value is not None:
            bisect.insort(self._top_values, value)
            if self._mode == "min":
                del self._top_values[self._top :]
            else:
                del self._top_values[: -self._top]
            self._iterations = self._iterations + 1 if self.has_plateaued() else 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """Return True if ``top`` values are held and their standard deviation is <= std."""
        return (
            len(self._top_values) == self._top and statistics.pstdev(self._top_values) <= self._std
        )

    def stop_all(self) -> bool:
        """Return True when the plateau holds and ``patience`` results have passed."""
        return self.has_plateaued() and self._iterations >= self._patience


class TimeoutStopper(Stopper):
    """Stops the experiment once a time budget is spent.

    This is the one built-in stopper that reads a clock (``time.monotonic()``). The
    budget is spent between ``stop_all()`` calls, starting at the first call, so it
    includes the start-up of the first trials. After unpickling (``Tuner.restore``) the
    clock restarts at the next call: time spent while the experiment was not running is
    not counted, while the budget already spent stays spent.

    Args:
        timeout: The budget, in seconds or as a :class:`datetime.timedelta`.

    Raises:
        ConfigError: If ``timeout`` is neither a number nor a timedelta.
    """

    def __init__(self, timeout: float | timedelta) -> None:
        if isinstance(timeout, timedelta):
            seconds = timeout.total_seconds()
        elif _is_number(timeout):
            seconds = float(timeout)
        else:
            raise ConfigError(
                f"timeout must be a number of seconds or a timedelta, got "
                f"{type(timeout).__name__}.",
                value=timeout,
            )
        self._timeout_seconds = seconds
        self._budget = seconds
        self._last_check: float | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return False: the timeout stops the experiment, not single trials."""
        return False

    def stop_all(self) -> bool:
        """Spend the time since the last call; return True once the budget is gone."""
        now = time.monotonic()
        if self._last_check is not None:
            self._budget -= now - self._last_check
        self._last_check = now
        if self._budget <= 0:
            logger.info("time budget spent, stopping all trials", timeout_s=self._timeout_seconds)
            return True
        return False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_last_check"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._last_check = None


class CombinedStopper(Stopper):
    """Stops when any of its stoppers would: OR of ``__call__`` and OR of ``stop_all``.

    Every stopper is asked every time (no short-circuit), so each stateful stopper sees
    every result.

    Args:
        *stoppers: The stoppers to combine.

    Raises:
        ConfigError: If one of ``stoppers`` is not a :class:`Stopper`.
    """

    def __init__(self, *stoppers: Stopper) -> None:
        for stopper in stoppers:
            if not isinstance(stopper, Stopper):
                raise ConfigError(
                    f"CombinedStopper takes Stopper objects, got {type(stopper).__name__}.",
                    value=stopper,
                )
        self._stoppers = stoppers

    @property
    def stoppers(self) -> tuple[Stopper, ...]:
        """The combined stoppers, in order."""
        return self._stoppers

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return True if any stopper says to stop the trial."""
        verdicts = [stopper(trial_id, result) for stopper in self._stoppers]
        return any(verdicts)

    def stop_all(self) -> bool:
        """Return True if any stopper says to stop the experiment."""
        verdicts = [stopper.stop_all() for stopper in self._stoppers]
        return any(verdicts)


def dict_criteria_met(criteria: Mapping[str, Any], flat_result: Mapping[str, Any]) -> bool:
    """Return True if any ``flat_result[key] >= value`` for ``key, value`` in ``criteria``.

    Keys missing from the result, or reported as None, are skipped. This is pure, so the
    execution layer can evaluate dict criteria inside the worker.

    Args:
        criteria: Flattened stopping criteria (``{"a/b": 3}``).
        flat_result: A flattened result.

    Raises:
        TypeError: If a reported value cannot be compared with its criterion.
    """
    for key, target in criteria.items():
        reported = flat_result.get(key)
        if reported is None:
            continue
        try:
            met = reported >= target
        except TypeError as exc:
            raise TypeError(
                f"Stopping criterion {key!r}: cannot compare the reported value "
                f"{reported!r} with {target!r}."
            ) from exc
        if met:
            return True
    return False


def flatten_for_criteria(
    criteria: Mapping[str, Any], result: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``result`` flattened as far as :func:`dict_criteria_met` needs it for ``criteria``.

    Usually every criterion is a top-level metric: then only those values are picked, with
    nothing to flatten. Otherwise (a nested criterion, or one not reported) the whole
    result is flattened.
    """
    picked = {
        key: result[key]
        for key in criteria
        if key in result and not isinstance(result[key], Mapping)
    }
    return picked if len(picked) == len(criteria) else flatten_dict(result)


class DictStopper(Stopper):
    """Ray Tune's ``stop={"key": value}``: stop a trial when any ``result[key] >= value``.

    Keys address the flattened result, so ``"info/loss"`` matches ``{"info": {"loss":
    ...}}``. The first time a result lacks a key, one warning names it (one per key).

    Args:
        criteria: Flat mapping from result key to threshold.

    Raises:
        ConfigError: If a key is not a str or a value is itself a dict.
    """

    def __init__(self, criteria: Mapping[str, Any]) -> None:
        for key, value in criteria.items():
            if not isinstance(key, str):
                raise ConfigError(f"Stopping criteria keys must be str, got {key!r}.", value=key)
            if isinstance(value, Mapping):
                raise ConfigError(
                    f"Stopping criterion {key!r} is a nested dict; criteria address the "
                    "flattened result, so write nested keys with slashes, e.g. "
                    f"{{'{key}/<subkey>': value}}.",
                    value=value,
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(
                    f"Stopping criterion {key!r} must be a number (a trial stops when "
                    f"result[{key!r}] >= it), got {value!r}.",
                    value=value,
                )
        self._criteria = dict(criteria)
        self._warned: set[str] = set()

    @property
    def criteria(self) -> dict[str, Any]:
        """The flat criteria (a copy), for evaluation elsewhere with :func:`dict_criteria_met`."""
        return dict(self._criteria)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Return True if any criterion is met by the (flattened) result."""
        flat = flatten_for_criteria(self._criteria, result)
        for key in self._criteria:
            if key not in flat and key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    "stopping criterion not found in result; it cannot stop trials "
                    "until it is reported",
                    criterion=key,
                    trial_id=trial_id,
                    available_keys=sorted(flat),
                )
        return dict_criteria_met(self._criteria, flat)

    def stop_all(self) -> bool:
        """Return False: criteria stop single trials."""
        return False


def make_stopper(
    stop: Mapping[str, Any]
    | Stopper
    | Callable[[str, dict[str, Any]], bool]
    | list[Stopper]
    | None,
    *,
    time_budget_s: float | timedelta | None = None,
) -> Stopper | None:
    """Turn ``RunConfig(stop=...)`` (and ``TuneConfig(time_budget_s=...)``) into one Stopper.

    A dict becomes a :class:`DictStopper`, a function a :class:`FunctionStopper`, a list of
    Stoppers a :class:`CombinedStopper`; a Stopper is returned as is. With
    ``time_budget_s``, a :class:`TimeoutStopper` is combined with the result.

    Args:
        stop: The ``stop`` argument of ``RunConfig``; None, ``{}`` and ``[]`` mean none.
        time_budget_s: Optional experiment time budget; None or 0 means none (as in Ray).

    Returns:
        The stopper, or None when there is nothing to stop on.

    Raises:
        ConfigError: If ``stop`` is of an unsupported type, a list holds a non-Stopper, or
            the chosen stopper rejects its input.
    """
    stopper: Stopper | None
    if stop is None:
        stopper = None
    elif isinstance(stop, Stopper):
        stopper = stop
    elif isinstance(stop, type) and issubclass(stop, Stopper):
        raise ConfigError(
            f"stop got the class {stop.__name__}; pass an instance, {stop.__name__}(...).",
            value=stop,
        )
    elif isinstance(stop, list):
        bad = [type(s).__name__ for s in stop if not isinstance(s, Stopper)]
        if bad:
            raise ConfigError(
                f"A list passed as stop must hold only Stopper objects; got {bad}.", value=stop
            )
        stopper = CombinedStopper(*stop) if stop else None
    elif isinstance(stop, Mapping):
        stopper = DictStopper(stop) if stop else None
    elif callable(stop):
        stopper = FunctionStopper(cast("Callable[[str, dict[str, Any]], bool]", stop))
    else:
        raise ConfigError(
            f"stop must be a dict, a function, a Stopper or a list of Stoppers, "
            f"got {type(stop).__name__}.",
            value=stop,
        )
    if not time_budget_s:
        return stopper
    timeout = TimeoutStopper(time_budget_s)
    return timeout if stopper is None else CombinedStopper(stopper, timeout)
