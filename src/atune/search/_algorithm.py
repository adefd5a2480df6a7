"""The search-algorithm protocol that the controller consumes.

The controller talks to exactly one :class:`SearchAlgorithm` per experiment:
:class:`~atune.search.BasicVariantGenerator` (the default: random and grid search over
``param_space``) or :class:`~atune.search.SearchGenerator`, which adapts a user-facing
:class:`~atune.search.Searcher` (Optuna, a custom optimizer, ...).

Call order, all from the controller's one task (no locking needed):

1. ``set_search_properties(metric, mode, param_space, num_samples)`` once, before anything
   else. It validates the space and may raise :class:`~atune.errors.ConfigError`.
2. ``set_state(state)`` when the experiment is being restored (after step 1).
3. Repeatedly ``next_trial(trial_id)``. It returns a :class:`Suggestion` (the id is now a
   live trial and must not be passed again), ``None`` (nothing now, e.g. a concurrency
   limit or a searcher waiting for results: ask again after the next event, with the same
   id or a new one) or :data:`FINISHED` (no more trials, ever; later calls keep returning
   it).
4. ``on_trial_result(trial_id, result)`` with each *flattened* result (``"a/b"`` keys) of
   a live trial, unless the scheduler decided STOP on it. The controller may skip this
   call, and batch results, when ``needs_intermediate_results`` is False.
5. ``on_trial_complete(trial_id, result, error)`` exactly once per suggested trial: with the
   flattened last result when it finished, ``error=True`` when it failed for good, and
   ``result=None`` when it was removed before reporting.
6. ``get_state()`` whenever the experiment is snapshotted: a JSON-able dict that
   ``set_state`` accepts in a later process.

Everything here is synchronous and cheap; nothing blocks on I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Final, Literal

import msgspec

__all__ = ["FINISHED", "SearchAlgorithm", "Suggestion"]

FINISHED: Final = "FINISHED"
"""Returned by ``next_trial`` (and ``Searcher.suggest``) when the search is over."""


class Suggestion(msgspec.Struct, frozen=True, kw_only=True):
    """One trial's config, as handed out by a search algorithm.

    Attributes:
        config: The fully resolved config passed to the trainable. Values the user put in
            ``param_space`` that are not search domains (datasets, object refs, callables)
            are the very same objects, not copies.
        experiment_tag: ``"{index}_{key}={value},..."``, used in the trial's directory
            name; see ``BasicVariantGenerator`` and ``SearchGenerator`` for the exact form.
        evaluated_params: The values the search chose (sampled, grid or suggested), keyed
            by ``"/"``-joined config path; Ray Tune's ``Trial.evaluated_params``, which
            progress displays use as parameter columns.
    """

    config: dict[str, Any]
    experiment_tag: str
    evaluated_params: dict[str, Any] = {}


class SearchAlgorithm(ABC):
    """Hands out trial configs and hears how the trials went (see the module docstring).

    Attributes:
        needs_intermediate_results: Whether ``on_trial_result`` has any effect. When False
            the controller may skip calling it and batch result processing.
    """

    needs_intermediate_results: bool = True

    @abstractmethod
    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        param_space: dict[str, Any],
        num_samples: int,
    ) -> bool:
        """Give the algorithm the experiment's metric, mode, search space and sample count.

        Args:
            metric: The metric to optimise, or None.
            mode: ``"min"``, ``"max"`` or None.
            param_space: The Tuner's ``param_space`` (may hold domains, grids, constants).
            num_samples: ``TuneConfig.num_samples``; ``-1`` means until stopped.

        Returns:
            True if the algorithm took ``param_space`` as its space; False if it keeps a
            space of its own (``param_space`` then only contributes constants).

        Raises:
            ConfigError: The space, the sample count or the algorithm's options are invalid.
        """

    @abstractmethod
    def next_trial(self, trial_id: str) -> Suggestion | Literal["FINISHED"] | None:
        """Return the next trial's config, ``None`` (not now) or ``FINISHED`` (never again).

        Args:
            trial_id: The id the trial will have if a Suggestion is returned.
        """

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:  # noqa: B027
        """Hear one flattened intermediate result of a live trial. Default: ignore it."""

    def on_trial_complete(  # noqa: B027
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Hear that a trial ended (see the module docstring). Default: ignore it."""

    @property
    @abstractmethod
    def total_samples(self) -> int | None:
        """How many trials the algorithm will hand out in all; None when unbounded/unknown."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Return the algorithm's progress as JSON-able data, for experiment restore."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from ``get_state()`` output; call after ``set_search_properties``."""
