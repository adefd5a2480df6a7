"""``Repeater``: run each suggested config several times and report the average.

Ray Tune's ``ray.tune.search.Repeater``, with its semantics and three fixes: its groups
are part of its state (so they survive ``Tuner.restore``), a completion of a trial it
does not know is ignored (Ray Tune raises ``KeyError``), and a group whose repeats all
failed is reported to the wrapped searcher as ``error=True`` (Ray Tune reports NaN).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

from atune._log import get_logger
from atune.errors import ConfigError
from atune.search.searcher import Searcher

__all__ = ["Repeater"]

_log = get_logger(__name__)
TRIAL_INDEX = "__trial_index__"


class Repeater(Searcher):
    """Hand out each config of ``searcher`` to ``repeat`` trials; report their mean.

    The wrapped searcher is asked once per group; the group's first trial id is the one
    it knows. With ``set_index`` each trial's config gets ``"__trial_index__"``:
    ``0 .. repeat-1``. When every trial of a group has completed, the wrapped searcher
    gets ``on_trial_complete(first_id, {metric: mean})``, the mean over the repeats that
    reported the metric (NaN when none did; ``error=True`` when every repeat failed).
    Intermediate results are not forwarded. ``num_samples`` should be a multiple of
    ``repeat``: the trials of a last, incomplete group are never averaged.

    Args:
        searcher: The searcher to wrap.
        repeat: Trials per config, an int >= 1.
        set_index: Add ``"__trial_index__"`` to each config.

    Raises:
        ConfigError: ``repeat`` is not an int >= 1, or ``searcher`` is not a Searcher.
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(f"repeat must be an int >= 1, got {repeat!r}", value=repeat)
        if not isinstance(searcher, Searcher):
            raise ConfigError(
                f"Repeater wraps a Searcher, got {type(searcher).__name__}", value=searcher
            )
        self.searcher = searcher
        self.repeat = repeat
        self._set_index = bool(set_index)
        self._current: dict[str, Any] | None = None  # the open group: first id, config, ids
        self._groups: dict[str, dict[str, Any]] = {}  # first id -> {"trials", "scores", "errors"}
        self._group_of: dict[str, str] = {}  # trial id -> first id of its group
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    @property
    def metric(self) -> Any:
        """The wrapped searcher's metric."""
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        """The wrapped searcher's mode."""
        return self.searcher.mode

    def init_args(self) -> dict[str, Any]:
        """Constructor arguments, for ``Tuner.restore`` (the searcher is recorded apart)."""
        return {"searcher": self.searcher, "repeat": self.repeat, "set_index": self._set_index}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Forward to the wrapped searcher; ``num_samples`` not a multiple of ``repeat``
        is logged as a warning."""
        samples = spec.get("num_samples")
        if isinstance(samples, int) and samples % self.repeat:
            _log.warning(
                "num_samples is not a multiple of Repeater's repeat: the last group is cut short",
                num_samples=samples,
                repeat=self.repeat,
            )
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        """The open group's config again, or a new one from the wrapped searcher."""
        if self._current is None:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._current = {"first": trial_id, "config": config, "n": 0}
            self._groups[trial_id] = {"trials": [], "scores": [], "errors": 0}
        current = self._current
        first = current["first"]
        index = current["n"]
        current["n"] += 1
        self._groups[first]["trials"].append(trial_id)
        self._group_of[trial_id] = first
        if current["n"] >= self.repeat:
            self._current = None
        config = dict(current["config"])
        if self._set_index:
            config[TRIAL_INDEX] = index
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Record the repeat's score; when its group is complete, report the mean."""
        first = self._group_of.pop(trial_id, None)
        if first is None:
            return
        group = self._groups[first]
        value = (result or {}).get(self.metric) if isinstance(self.metric, str) else None
        if error:
            group["errors"] += 1
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            group["scores"].append(float(value))
        else:
            group["scores"].append(math.nan)
        done = group["errors"] + len(group["scores"])
        if done < self.repeat:
            return
        del self._groups[first]
        if group["errors"] == self.repeat:
            self.searcher.on_trial_complete(first, None, error=True)
            return
        finite = [s for s in group["scores"] if not math.isnan(s)]
        mean = sum(finite) / len(finite) if finite else math.nan
        self.searcher.on_trial_complete(first, {self.metric: mean})

    def get_state(self) -> dict[str, Any]:
        """The open group, every unfinished group and the wrapped searcher's state."""
        try:
            searcher_state: Any = self.searcher.get_state()
        except NotImplementedError:
            searcher_state = None
        return {
            "current": self._current,
            "groups": self._groups,
            "group_of": self._group_of,
            "searcher": searcher_state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output.

        Raises:
            ConfigError: not a Repeater state.
        """
        try:
            self._current = state["current"]
            self._groups = dict(state["groups"])
            self._group_of = dict(state["group_of"])
            searcher_state = state["searcher"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a Repeater state: {state!r}", value=state) from exc
        if searcher_state is not None:
            self.searcher.set_state(searcher_state)
