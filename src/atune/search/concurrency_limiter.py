"""``ConcurrencyLimiter``: cap how many of a searcher's trials run at once.

Ray Tune's ``ray.tune.search.ConcurrencyLimiter``, with its semantics.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from atune.errors import ConfigError
from atune.search.searcher import Searcher

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter(Searcher):
    """Wrap a searcher so that at most ``max_concurrent`` of its trials are live.

    While the limit is reached, ``suggest`` returns None (the controller asks again after
    a trial completes). A trial is live from the suggestion until ``on_trial_complete``.

    If the wrapped searcher limits concurrency itself (its ``set_max_concurrency`` returns
    True), this wrapper only forwards calls.

    With ``batch=True`` completions are held back until every live trial of the batch has
    completed; then all of them are forwarded to the searcher together and suggestions
    resume. Use it for searchers that propose a batch at a time.

    ``save``/``restore`` act on the wrapped searcher (as in Ray Tune); ``get_state`` holds
    both the wrapper's bookkeeping and the wrapped searcher's state.

    Args:
        searcher: The searcher to wrap.
        max_concurrent: The limit, an int > 0.
        batch: Forward completions batch-wise, as described above.

    Raises:
        ConfigError: ``max_concurrent`` is not an int > 0, or ``searcher`` is not a
            :class:`Searcher`; the message names the value.
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ConfigError(
                f"max_concurrent must be an int > 0, got {max_concurrent!r}", value=max_concurrent
            )
        if max_concurrent <= 0:
            raise ConfigError(
                f"max_concurrent must be an int > 0, got {max_concurrent}", value=max_concurrent
            )
        if not isinstance(searcher, Searcher):
            raise ConfigError(
                f"ConcurrencyLimiter wraps a Searcher, got {type(searcher).__name__}; pass "
                "max_concurrent to the search algorithm itself instead",
                value=searcher,
            )
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials: set[str] = set()
        self.num_unfinished_live_trials = 0
        self.cached_results: dict[str, tuple[dict[str, Any] | None, bool]] = {}
        self._limit_concurrency = True
        self._set_searcher_max_concurrency()
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def init_args(self) -> dict[str, Any]:
        """Constructor arguments, for ``Tuner.restore`` (the searcher is recorded apart)."""
        return {
            "searcher": self.searcher,
            "max_concurrent": self.max_concurrent,
            "batch": self.batch,
        }

    def _set_searcher_max_concurrency(self) -> None:
        self._limit_concurrency = not self.searcher.set_max_concurrency(self.max_concurrent)

    @property
    def metric(self) -> Any:
        """The wrapped searcher's metric."""
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        """The wrapped searcher's mode."""
        return self.searcher.mode

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Change the limit; always True (this wrapper limits concurrency)."""
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Forward to the wrapped searcher (after re-offering it the concurrency limit)."""
        self._set_searcher_max_concurrency()
        try:
            return self.searcher.set_search_properties(metric, mode, config, **spec)
        except TypeError as exc:
            if not spec or "unexpected keyword argument" not in str(exc):
                raise
            return self.searcher.set_search_properties(metric, mode, config)

    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        """Forward to the searcher unless ``max_concurrent`` trials are live (then None).

        Raises:
            RuntimeError: ``trial_id`` is already live.
        """
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if trial_id in self.live_trials:
            raise RuntimeError(f"trial id {trial_id!r} was already suggested and is still live")
        if len(self.live_trials) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and suggestion != Searcher.FINISHED:
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Forward to the searcher."""
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Free the trial's slot and forward (batch-wise with ``batch=True``).

        Completions of trials this wrapper did not suggest are ignored while it limits.
        """
        if not self._limit_concurrency:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id not in self.live_trials:
            return
        if not self.batch:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            self.live_trials.remove(trial_id)
            self.num_unfinished_live_trials -= 1
            return
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials > 0:
            return
        for cached_id, (cached_result, cached_error) in self.cached_results.items():
            self.searcher.on_trial_complete(cached_id, result=cached_result, error=cached_error)
            self.live_trials.discard(cached_id)
        self.cached_results = {}
        self.num_unfinished_live_trials = 0

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Forward to the searcher."""
        self.searcher.add_evaluated_point(parameters, value, error, pruned, intermediate_values)

    def get_state(self) -> dict[str, Any]:
        """JSON-able state: the bookkeeping, plus the searcher's state (None if it has none)."""
        try:
            searcher_state: Any = self.searcher.get_state()
        except NotImplementedError:
            searcher_state = None
        return {
            "max_concurrent": self.max_concurrent,
            "batch": self.batch,
            "live_trials": sorted(self.live_trials),
            "num_unfinished_live_trials": self.num_unfinished_live_trials,
            "cached_results": {k: [r, e] for k, (r, e) in self.cached_results.items()},
            "limit_concurrency": self._limit_concurrency,
            "searcher": searcher_state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output, the wrapped searcher's state included.

        Raises:
            ConfigError: ``state`` lacks the keys this class writes.
        """
        try:
            self.max_concurrent = int(state["max_concurrent"])
            self.batch = bool(state["batch"])
            self.live_trials = set(state["live_trials"])
            self.num_unfinished_live_trials = int(state["num_unfinished_live_trials"])
            self.cached_results = {k: (r, bool(e)) for k, (r, e) in state["cached_results"].items()}
            self._limit_concurrency = bool(state["limit_concurrency"])
            searcher_state = state["searcher"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a ConcurrencyLimiter state: {state!r}", value=state) from exc
        if searcher_state is not None:
            self.searcher.set_state(searcher_state)

    def save(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Save the wrapped searcher (see :meth:`Searcher.save`)."""
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str | os.PathLike[str]) -> None:
        """Restore the wrapped searcher (see :meth:`Searcher.restore`)."""
        self.searcher.restore(checkpoint_path)
