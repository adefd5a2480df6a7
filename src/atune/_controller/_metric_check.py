"""The metric check: a trial's first result must hold every metric the experiment scores.

With ``TuneConfig(metric=...)``, a scheduler's or a searcher's metric, a trial whose first
result lacks that metric, or holds a value that is not a real number (a ``str``, a
``bool``, ``None``, a list), fails with a :class:`~atune.errors.MetricError` that names the
metric, the value's type and the keys the trial reported. Only that trial fails, without
retries; the others go on. NaN and infinities are real numbers and pass.

What is checked, compared with Ray Tune:

* Metric names are looked up in the result flattened with ``/``, so ``"val/loss"`` finds
  ``{"val": {"loss": 1.0}}``. Keys filled in automatically (``training_iteration``,
  ``time_this_iter_s``, ...) count as reported, as in Ray Tune. ``"_metric"`` (the key of a
  bare number returned by a function) is never required, as in Ray Tune.
* ``TUNE_DISABLE_STRICT_METRIC_CHECKING=1`` allows a missing metric, as in Ray Tune; a
  value of the wrong type still fails (Ray Tune has no such check; its schedulers and
  searchers then fail later, on the comparison).
* Ray Tune checks every result; atune checks the first result of each trial only, so the
  check costs nothing per result after that.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from atune._flatten import flatten_dict
from atune.errors import MetricError
from atune.execution._protocol import ErrorInfo

__all__ = ["check_metrics", "required_metrics", "strict_metric_checking"]

_DEFAULT_METRIC = "_metric"
_KEYS_SHOWN = 40


def strict_metric_checking() -> bool:
    """False when ``TUNE_DISABLE_STRICT_METRIC_CHECKING`` is ``1`` (read at ``fit()``)."""
    return os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0").strip() != "1"


def required_metrics(
    metric: str | None, scheduler: Any, search: Any
) -> tuple[tuple[str, str], ...]:
    """The ``(metric, who expects it)`` pairs of an experiment, in Ray Tune's order.

    Args:
        metric: ``TuneConfig.metric``.
        scheduler: The trial scheduler (its ``metric`` attribute, if any).
        search: The search algorithm; a searcher's metric is found on it or on the
            searcher it wraps (``.searcher``). A list of metrics requires each.
    """
    found: list[tuple[str, str]] = []

    def add(name: Any, where: str) -> None:
        names = name if isinstance(name, (list, tuple)) else [name]
        for item in names:
            wanted = isinstance(item, str) and item and item != _DEFAULT_METRIC
            if wanted and all(item != known for known, _ in found):
                found.append((item, where))

    add(metric, "TuneConfig(metric=...)")
    add(getattr(scheduler, "metric", None), type(scheduler).__name__)
    # Wrappers (SearchGenerator, ConcurrencyLimiter) pass the metric through: the searcher
    # they wrap, the innermost, is named as the one that expects it.
    chain = [search]
    while getattr(chain[-1], "searcher", None) is not None:
        chain.append(chain[-1].searcher)
    for owner in chain:
        add(getattr(owner, "metric", None), type(chain[-1]).__name__)
    return tuple(found)


def check_metrics(
    trial_id: str,
    result: dict[str, Any],
    required: tuple[tuple[str, str], ...],
    *,
    strict: bool = True,
) -> ErrorInfo | None:
    """The error that fails the trial when ``result`` does not hold ``required``, else None.

    Args:
        trial_id: The trial, for the message.
        result: The trial's first result, as reported (nested dicts allowed).
        required: ``(metric, who expects it)`` pairs, from :func:`required_metrics`.
        strict: False allows a missing metric (the value's type is checked regardless).
    """
    flat = flatten_dict(result)
    for metric, where in required:
        if metric not in flat:
            if not strict:
                continue
            message = (
                f"trial {trial_id} reported a result without the metric {metric!r} that "
                f"{where} expects; it reported {_keys(flat)}. Include {metric!r} in every "
                "report(), or set TUNE_DISABLE_STRICT_METRIC_CHECKING=1 to allow results "
                "without it"
            )
            return _error(message, metric, trial_id)
        value = flat[metric]
        if not _is_real(value):
            message = (
                f"trial {trial_id} reported the metric {metric!r} that {where} expects as "
                f"{type(value).__name__} {_short(value)}, not a real number; it reported "
                f"{_keys(flat)}. Report a number (int, float, or a NumPy scalar)"
            )
            return _error(message, metric, trial_id)
    return None


def _is_real(value: Any) -> bool:
    """A real number (NaN and infinities included), not a bool, str or container."""
    if value is None or isinstance(value, (bool, str, bytes, dict, list, tuple, set)):
        return False
    if type(value).__name__ == "bool_":  # numpy.bool_ is not a number either
        return False
    if isinstance(value, numbers.Real):
        return True
    try:  # a 0-d array or tensor holding one number
        float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def _keys(flat: dict[str, Any]) -> str:
    keys = sorted(str(key) for key in flat)
    shown = ", ".join(keys[:_KEYS_SHOWN])
    more = f", ... ({len(keys) - _KEYS_SHOWN} more)" if len(keys) > _KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _error(message: str, metric: str, trial_id: str) -> ErrorInfo:
    return ErrorInfo.from_exception(MetricError(message, metric=metric, trial_id=trial_id))
