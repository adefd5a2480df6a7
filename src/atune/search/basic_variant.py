"""The default search algorithm: random and grid search over ``param_space``.

Ray Tune's ``ray.tune.search.basic_variant.BasicVariantGenerator``, with its semantics.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from atune.errors import ConfigError
from atune.search._algorithm import FINISHED, SearchAlgorithm, Suggestion
from atune.search._variant import (
    Path,
    apply_point,
    capture_rng,
    count_variants,
    experiment_tag,
    flatten_resolved_vars,
    iter_variants,
    restore_rng,
    rng_state_to_json,
    validate_param_space,
)
from atune.search.sample import RandomState

__all__ = ["BasicVariantGenerator"]

_STATE_VERSION = 1


class BasicVariantGenerator(SearchAlgorithm):
    """Resolve ``param_space`` into configs: every grid point, ``num_samples`` times.

    The trial count is the product of the grid sizes times ``num_samples``: each of the
    ``num_samples`` *samples* walks the whole grid (the first grid key, in sorted path
    order, varies fastest), so ``{"a": grid_search([1, 2])}`` with ``num_samples=2`` gives
    ``a = 1, 2, 1, 2``. Random domains are drawn afresh at every grid point unless
    ``constant_grid_search``. ``num_samples=-1`` never ends; configs are generated one at a
    time as the controller asks, never all at once. See :mod:`atune.search._variant` for how
    nested dicts/lists, constants and ``sample_from`` dependencies resolve.

    ``points_to_evaluate`` replace the first samples, one sample per point, and are all
    used even if there are more points than ``num_samples``. A partial point fixes only
    the keys it names; the rest of that sample is drawn as usual, and a point that fixes a
    grid key collapses that sample's grid on it.

    Each config's experiment tag is ``"{index}_{key}={value},..."``: ``index`` counts the
    configs from 0; the pairs are the sampled and grid leaves (not constants, not point
    values) sorted by path, named by their last path component, floats as ``%.4f``, and
    characters outside ``[a-zA-Z0-9_-]`` replaced by ``_``. With nothing sampled the tag is
    just ``"{index}"``.

    Args:
        points_to_evaluate: Configs (possibly partial) to try first.
        max_concurrent: At most this many suggested trials are live at once (0: no
            limit); ``next_trial`` returns None while the limit is reached.
        constant_grid_search: Draw the random domains once per sample and keep them for
            every grid point of that sample.
        random_state: An int seed, a numpy ``Generator``/``RandomState``, or None for
            numpy's global generator (then ``np.random.seed`` makes runs reproducible).
            With a seed the whole sequence of configs is reproducible, provided that
            ``sample_from`` functions draw their randomness from nowhere else.

    Raises:
        ConfigError: An argument has the wrong type or value; the message names it.
    """

    needs_intermediate_results = False
    CKPT_FILE_TMPL = "basic-variant-state-{}.json"

    def __init__(
        self,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: RandomState = None,
    ) -> None:
        points = list(points_to_evaluate or [])
        for point in points:
            if not isinstance(point, dict):
                raise ConfigError(
                    f"each of points_to_evaluate must be a dict, got {point!r}", value=point
                )
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ConfigError(
                f"max_concurrent must be an int >= 0, got {max_concurrent!r}",
                value=max_concurrent,
            )
        if max_concurrent < 0:
            raise ConfigError(
                f"max_concurrent must be an int >= 0, got {max_concurrent}", value=max_concurrent
            )
        self.max_concurrent = max_concurrent
        self._points = points
        self._constant_grid_search = bool(constant_grid_search)
        self._rng = _make_rng(random_state)
        self._init_args: dict[str, Any] | None = {
            "points_to_evaluate": points,
            "max_concurrent": max_concurrent,
            "constant_grid_search": self._constant_grid_search,
            # A Generator's stream is restored by set_state; any seed recreates one.
            "random_state": None if self._rng is None else 0,
        }
        if isinstance(self._rng, np.random.RandomState):
            self._init_args = None
        self._space: dict[str, Any] | None = None
        self._presets: list[dict[str, Any]] = []
        self._num_samples: int | None = 1
        self._total: int | None = None
        self._live: set[str] = set()
        self._reset_progress()

    def _reset_progress(self) -> None:
        self._handed_out = 0  # configs handed out so far; the next tag index
        self._sample = 0  # index of the sample being expanded (points first)
        self._within = 0  # configs of that sample handed out so far
        self._skip = 0  # configs of the next expansion to drop (after a restore)
        self._current: Any = None  # the sample's variant iterator, None between samples
        self._sample_start: Any = None  # RNG snapshot taken when the sample began
        self._finished = False

    def set_search_properties(
        self,
        metric: str | None,
        mode: str | None,
        param_space: dict[str, Any],
        num_samples: int,
    ) -> bool:
        """Take ``param_space`` and ``num_samples``; always returns True.

        Calling it again starts the generation over.

        Raises:
            ConfigError: The space or ``num_samples`` is invalid, or a point names a key
                that ``param_space`` lacks.
        """
        validate_param_space(param_space, num_samples=num_samples)
        space = dict(param_space or {})
        presets = [apply_point(space, point) for point in self._points]
        self._space, self._presets = space, presets
        self._num_samples = None if num_samples == -1 else num_samples
        if self._num_samples is None:
            self._total = None
        else:
            remaining = max(0, self._num_samples - len(presets))
            self._total = sum(count_variants(p) for p in presets) + remaining * count_variants(
                space
            )
        self._live.clear()
        self._reset_progress()
        return True

    @property
    def total_samples(self) -> int | None:
        """Configs this generator hands out in all; None with ``num_samples=-1``."""
        return self._total

    def next_trial(self, trial_id: str) -> Suggestion | Literal["FINISHED"] | None:
        """Return the next config, None while ``max_concurrent`` is reached, or FINISHED.

        Raises:
            RuntimeError: ``set_search_properties`` was never called.
        """
        if self._space is None:
            raise RuntimeError("BasicVariantGenerator: call set_search_properties first")
        if self._finished:
            return FINISHED
        if self.max_concurrent > 0 and len(self._live) >= self.max_concurrent:
            return None
        item = self._next_variant()
        if item is None:
            self._finished = True
            return FINISHED
        resolved, config = item
        tag = experiment_tag(self._handed_out, resolved)
        self._handed_out += 1
        self._live.add(trial_id)
        return Suggestion(
            config=config,
            experiment_tag=tag,
            evaluated_params=flatten_resolved_vars(resolved),
        )

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Free the trial's ``max_concurrent`` slot."""
        self._live.discard(trial_id)

    def _sample_spec(self, index: int) -> dict[str, Any] | None:
        if index < len(self._presets):
            return self._presets[index]
        if self._num_samples is None or index < self._num_samples:
            return self._space
        return None

    def _next_variant(self) -> tuple[dict[Path, Any], dict[str, Any]] | None:
        while True:
            if self._current is None:
                spec = self._sample_spec(self._sample)
                if spec is None:
                    return None
                self._sample_start = capture_rng(self._rng)
                self._current = iter_variants(
                    spec, constant_grid_search=self._constant_grid_search, rng=self._rng
                )
                self._within = 0
                for _ in range(self._skip):  # replay what was handed out before a restore
                    if next(self._current, None) is not None:
                        self._within += 1
                self._skip = 0
            item: tuple[dict[Path, Any], dict[str, Any]] | None = next(self._current, None)
            if item is None:
                self._current = None
                self._sample += 1
                continue
            self._within += 1
            return item

    def init_args(self) -> dict[str, Any] | None:
        """Constructor arguments that recreate this generator as data (None if impossible).

        ``Tuner.restore`` recreates the generator from these and then calls
        :meth:`set_state`, which restores the random stream itself.
        """
        return self._init_args

    def get_state(self) -> dict[str, Any]:
        """Return the progress as JSON-able data.

        Keys: ``version``; ``handed_out`` (configs handed out, the next tag index);
        ``sample`` (the sample being expanded) and ``within`` (its configs handed out);
        ``rng``, the RNG state when that sample began (None with numpy's global generator);
        ``live_trials``; ``finished``. Restoring replays the current sample from ``rng``
        and skips the ``within`` configs already handed out, so a seeded run continues
        exactly as it would have; with the global generator the rest is drawn afresh.
        """
        if self._current is None:
            sample_start, within = capture_rng(self._rng), self._skip
        else:
            sample_start, within = self._sample_start, self._within
        return {
            "version": _STATE_VERSION,
            "handed_out": self._handed_out,
            "sample": self._sample,
            "within": within,
            "rng": rng_state_to_json(sample_start),
            "live_trials": sorted(self._live),
            "finished": self._finished,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` output (after ``set_search_properties``).

        Raises:
            ConfigError: ``state`` is not a state this class wrote.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ConfigError(f"not a BasicVariantGenerator state: {state!r}", value=state)
        try:
            self._reset_progress()
            self._handed_out = int(state["handed_out"])
            self._sample = int(state["sample"])
            self._skip = int(state["within"])
            self._finished = bool(state["finished"])
            self._live = {str(t) for t in state["live_trials"]}
            restore_rng(self._rng, state["rng"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"not a BasicVariantGenerator state: {state!r} ({exc})", value=state
            ) from exc


def _make_rng(random_state: RandomState) -> np.random.Generator | np.random.RandomState | None:
    if random_state is None or isinstance(
        random_state, (np.random.Generator, np.random.RandomState)
    ):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    raise ConfigError(
        "random_state must be an int seed, a numpy Generator or RandomState, or None; "
        f"got {random_state!r}",
        value=random_state,
    )
