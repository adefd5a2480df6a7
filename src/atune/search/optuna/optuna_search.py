"""``OptunaSearch``: Optuna's samplers (TPE by default) as an atune searcher.

Ray Tune's ``ray.tune.search.optuna.OptunaSearch`` with the same arguments, plus:

* **Reproducible and restorable.** Without a ``sampler``, every ``ask`` gets a fresh
  ``TPESampler`` seeded from ``(seed, number of asks so far)``. A run is then a function of
  the seed and the order in which trials were told, and the searcher's state is plain
  data (:meth:`OptunaSearch.get_state`: every Optuna trial with its parameters,
  distributions, values and intermediate values, the trials asked but not told, the
  enqueued points not yet used, the seed and the ask counter). ``Tuner.restore`` rebuilds
  the study from it and asks again exactly where the interrupted run stood, so no config is
  suggested twice. With a ``sampler`` of your own, the study is rebuilt from its trials,
  but the sampler starts afresh (its internal state is not data).
* **Bad input** is a :class:`~atune.errors.ConfigError` (a ``ValueError``) naming the
  parameter: a ``grid_search`` in the space names its key; a missing metric or mode
  names the parameter to set; a metric set both here and in ``TuneConfig`` to different
  values names both.
* Results without the metric, or with NaN, are not reported as intermediate values (Ray
  Tune raises ``KeyError``); a final NaN is told as ``FAIL``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import TrialState

from atune._flatten import flatten_dict, unflatten_dict
from atune._log import get_logger
from atune.errors import ConfigError
from atune.search.optuna._convert import convert_search_space
from atune.search.searcher import Searcher

__all__ = ["OptunaSearch"]

_log = get_logger(__name__)
_STATE_VERSION = 1
_DIRECTIONS = {"min": "minimize", "max": "maximize"}
_FINISHED_STATES = {
    "COMPLETE": TrialState.COMPLETE,
    "PRUNED": TrialState.PRUNED,
    "FAIL": TrialState.FAIL,
}

DefineByRun = Callable[[optuna.Trial], "dict[str, Any] | None"]


class OptunaSearch(Searcher):
    """Suggest configs with an Optuna study (TPE unless ``sampler`` is given).

    Args:
        space: The search space: a dict of Optuna distributions (nested dicts are joined
            with ``/``), a dict of atune domains (converted with the table in
            :mod:`atune.search.optuna._convert`), or a *define-by-run* function
            ``fn(trial)`` that calls ``trial.suggest_*`` and returns None or a dict of
            constants to add to the config. None: the Tuner's ``param_space`` is
            converted.
        metric: The result key to optimise, or a list of keys (multi-objective).
        mode: ``"min"``/``"max"``, or a list of them matching ``metric``.
        points_to_evaluate: Configs (possibly partial) to try first, in order.
        sampler: An Optuna sampler. Default: ``TPESampler`` seeded as described in the
            module docstring. Passing both ``sampler`` and ``seed`` ignores ``seed``.
        study_name: The study's name (default ``"optuna"``).
        storage: An Optuna storage object (default: in memory). A restored experiment
            continues in a fresh in-memory study rebuilt from the saved state.
        seed: Seed of the default sampler; None draws one (recorded in the state, so a
            restored run still continues exactly).
        evaluated_rewards: The known results of ``points_to_evaluate`` (one per point):
            the points are then added as finished trials instead of being run. Needs a
            dict space.

    Raises:
        ConfigError: a ``grid_search`` or an unsupported domain in ``space``, a bad
            ``mode``, or ``evaluated_rewards`` of another length than the points.
        TypeError: ``space`` is neither a dict nor a function, or ``evaluated_rewards``
            with a define-by-run space.
    """

    def __init__(
        self,
        space: dict[str, Any] | DefineByRun | list[Any] | None = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        study_name: str | None = None,
        storage: Any = None,
        seed: int | None = None,
        evaluated_rewards: list[Any] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self._space: dict[str, BaseDistribution] | DefineByRun | None = _space_of(space)
        points = list(points_to_evaluate or [])
        for point in points:
            if not isinstance(point, dict):
                raise ConfigError(
                    f"each of points_to_evaluate must be a dict, got {point!r}", value=point
                )
        self._points = [flatten_dict(p) for p in points]
        if evaluated_rewards is not None:
            if callable(self._space):
                raise TypeError(
                    "OptunaSearch: evaluated_rewards needs a dict space, not a define-by-run "
                    "function (the points' distributions are unknown)"
                )
            if len(evaluated_rewards) != len(points):
                raise ConfigError(
                    f"evaluated_rewards has {len(evaluated_rewards)} values for "
                    f"{len(points)} points_to_evaluate; give one per point",
                    value=evaluated_rewards,
                )
        self._rewards = None if evaluated_rewards is None else list(evaluated_rewards)
        if sampler is not None and seed is not None:
            _log.warning("OptunaSearch: both sampler and seed were given; seed is ignored")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ConfigError(f"seed must be an int or None, got {seed!r}", value=seed)
        self._user_sampler = sampler
        self._seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**32))
        self._study_name = study_name or "optuna"
        self._storage = storage
        self._study: optuna.Study | None = None
        self._asks = 0
        self._ot_trials: dict[str, optuna.Trial] = {}
        self._reported: dict[str, int] = {}
        self._init_args: dict[str, Any] | None = None
        if not callable(self._space) and sampler is None and storage is None:
            self._init_args = {
                "space": None
                if self._space is None
                else {k: distribution_to_json(d) for k, d in self._space.items()},
                "metric": metric,
                "mode": mode,
                "points_to_evaluate": self._points or None,
                "study_name": study_name,
                "seed": self._seed,
                "evaluated_rewards": self._rewards,
            }
        if self._space is not None and self._metric and self._mode:
            self._setup_study()

    def init_args(self) -> dict[str, Any] | None:
        """Constructor arguments as JSON data, for ``Tuner.restore``; None when some are
        code or objects (a define-by-run space, a sampler, a storage)."""
        return self._init_args

    @classmethod
    def from_init_args(cls, space: dict[str, str] | None = None, **kwargs: Any) -> OptunaSearch:
        """Build the searcher that :meth:`init_args` described."""
        dists = None if space is None else {k: json_to_distribution(v) for k, v in space.items()}
        return cls(space=dists, **kwargs)

    # ------------------------------------------------------------------ set-up
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Take ``TuneConfig``'s metric/mode (where not set here) and, without a space of
        its own, the Tuner's ``param_space``.

        Returns:
            True if ``param_space`` became the space; False if this searcher has its own.

        Raises:
            ConfigError: metric or mode set here and in ``TuneConfig`` to different
                values; no metric or no mode anywhere; no space anywhere; a
                ``grid_search`` in ``param_space`` (naming its key).
        """
        for name, mine, theirs in (("metric", self._metric, metric), ("mode", self._mode, mode)):
            if mine is not None and theirs is not None and mine != theirs:
                raise ConfigError(
                    f"{name} is set both on OptunaSearch ({name}={mine!r}) and on TuneConfig "
                    f"({name}={theirs!r}); set it in one place",
                    value=theirs,
                )
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        accepted = False
        if self._space is None:
            self._space = convert_search_space(config)
            accepted = True
        if not self._space:
            raise ConfigError(
                "OptunaSearch has no search space: pass OptunaSearch(space=...) or search "
                "domains in the Tuner's param_space",
                value=config,
            )
        if not self._metric:
            raise ConfigError(
                "OptunaSearch needs a metric: set OptunaSearch(metric=...) or "
                "TuneConfig(metric=...)"
            )
        if not self._mode:
            raise ConfigError(
                "OptunaSearch needs a mode: set OptunaSearch(mode=...) or TuneConfig(mode=...)"
            )
        Searcher.__init__(self, self._metric, self._mode)  # validates the pair
        self._setup_study()
        return accepted

    def _directions(self) -> list[Any]:
        modes: list[Any] = self._mode if isinstance(self._mode, list) else [self._mode]
        for m in modes:
            if m not in _DIRECTIONS:
                raise ConfigError(f"OptunaSearch: mode must be 'min' or 'max', got {m!r}", value=m)
        return [_DIRECTIONS[m] for m in modes]

    def _new_study(self, storage: Any) -> optuna.Study:
        return optuna.create_study(
            storage=storage,
            sampler=self._sampler(),
            pruner=optuna.pruners.NopPruner(),
            study_name=self._study_name,
            load_if_exists=True,
            directions=self._directions(),
        )

    def _setup_study(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = self._new_study(self._storage)
        self._asks = 0
        self._ot_trials, self._reported = {}, {}
        if self._rewards is not None:
            for point, reward in zip(self._points, self._rewards, strict=True):
                self.add_evaluated_point(point, reward)
        else:
            for point in self._points:
                self._study.enqueue_trial(point)

    def _sampler(self) -> optuna.samplers.BaseSampler:
        if self._user_sampler is not None:
            return self._user_sampler
        seed = int(np.random.SeedSequence([self._seed, self._asks]).generate_state(1)[0])
        return optuna.samplers.TPESampler(seed=seed)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (for analysis: ``best_trials``, plots).

        Raises:
            RuntimeError: the searcher has no metric, mode or space yet.
        """
        if self._study is None:
            raise RuntimeError(
                "OptunaSearch has no study yet: it needs a space, a metric and a mode "
                "(given here or through the Tuner)"
            )
        return self._study

    def get_pareto_front(self) -> list[dict[str, Any]]:
        """The Pareto-optimal finished trials (Optuna's ``study.best_trials``).

        Returns:
            One dict per trial: ``config`` (the suggested parameters, nested) and
            ``metrics`` (metric name to value), in trial order.
        """
        names = self._metric if isinstance(self._metric, list) else [self._metric]
        return [
            {
                "config": unflatten_dict(dict(t.params)),
                "metrics": dict(zip(names, t.values or [], strict=False)),
            }
            for t in self.study.best_trials
        ]

    # ------------------------------------------------------------- suggestions
    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        """Ask the study for a config (the same one again for a repeated ``trial_id``).

        Raises:
            RuntimeError: no space, metric or mode was set.
            TypeError: a define-by-run function returned something other than a dict/None.
        """
        study = self.study
        ot_trial = self._ot_trials.get(trial_id)
        constants: dict[str, Any] = {}
        if ot_trial is None:
            study.sampler = self._sampler()
            space = self._space
            if callable(space):
                ot_trial = study.ask()
                returned = space(ot_trial)
                if returned is not None and not isinstance(returned, dict):
                    raise TypeError(
                        "OptunaSearch: a define-by-run function must return None or a dict "
                        f"of constants, got {type(returned).__name__}: {returned!r}"
                    )
                constants = flatten_dict(returned or {})
            else:
                ot_trial = study.ask(fixed_distributions=space)
            self._asks += 1
            self._ot_trials[trial_id] = ot_trial
        return unflatten_dict({**ot_trial.params, **constants})

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report the metric as an intermediate value at step ``training_iteration``.

        Skipped for multi-objective studies, for results without the metric or the step,
        with a NaN or non-numeric value, or for a step already reported.
        """
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or isinstance(self._metric, list):
            return
        value: Any = result.get(str(self._metric))
        step: Any = result.get("training_iteration")
        if not _is_number(value) or math.isnan(value) or not _is_number(step):
            return
        if int(step) <= self._reported.get(trial_id, -1):
            return
        ot_trial.report(float(value), int(step))
        self._reported[trial_id] = int(step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell the study: COMPLETE with the metric, PRUNED without it, FAIL on error/NaN."""
        ot_trial = self._ot_trials.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        if ot_trial is None:
            return
        value = _values(self._metric, result)
        if error or (value is not None and any(math.isnan(v) for v in value)):
            state, told = TrialState.FAIL, None
        elif value is None:
            state, told = TrialState.PRUNED, None
        else:
            state, told = TrialState.COMPLETE, value
        try:
            self.study.tell(ot_trial, told, state=state)
        except Exception as exc:  # optuna refuses a value: keep the search going
            _log.warning("OptunaSearch: could not tell a trial", trial_id=trial_id, error=str(exc))

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: Any,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Add a point evaluated elsewhere to the study as a finished trial.

        Raises:
            TypeError: the space is a define-by-run function (distributions unknown).
            RuntimeError: no space yet.
        """
        space = self._space
        if callable(space):
            raise TypeError("OptunaSearch: add_evaluated_point needs a dict space")
        if space is None:
            raise RuntimeError("OptunaSearch: add_evaluated_point needs a space")
        params = flatten_dict(parameters)
        state = TrialState.FAIL if error else TrialState.PRUNED if pruned else TrialState.COMPLETE
        values = None
        if state == TrialState.COMPLETE:
            values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        trial = optuna.trial.create_trial(
            state=state,
            values=values,
            params={k: v for k, v in params.items() if k in space},
            distributions={k: d for k, d in space.items() if k in params},
            intermediate_values=dict(enumerate(intermediate_values or [])),
        )
        self.study.add_trial(trial)

    # --------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """The study and the searcher's bookkeeping as JSON data (see the module docstring)."""
        number_of = {tid: t.number for tid, t in self._ot_trials.items()}
        trials = [_trial_to_data(t) for t in self.study.get_trials(deepcopy=False)]
        return {
            "version": _STATE_VERSION,
            "seed": self._seed,
            "asks": self._asks,
            "live": number_of,
            "reported": dict(self._reported),
            "trials": trials,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the study from :meth:`get_state` output (after ``set_search_properties``).

        Raises:
            ConfigError: ``state`` is not an OptunaSearch state.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ConfigError(f"not an OptunaSearch state: {state!r}", value=state)
        if self._study is None:
            raise RuntimeError("OptunaSearch.set_state: call set_search_properties first")
        if self._storage is not None:
            _log.warning("OptunaSearch: the restored study continues in memory, not in storage")
        if self._user_sampler is not None:
            _log.warning(
                "OptunaSearch: restoring with a sampler of your own; the study is rebuilt "
                "from its trials but the sampler starts afresh"
            )
        self._seed = int(state["seed"])
        study = self._new_study(None)
        by_number: dict[int, optuna.Trial] = {}
        for data in state["trials"]:
            trial = _trial_from_data(study, data)
            if trial is not None:
                by_number[int(data["number"])] = trial
        self._study = study
        self._asks = int(state["asks"])
        self._ot_trials = {tid: by_number[int(n)] for tid, n in state["live"].items()}
        self._reported = {tid: int(s) for tid, s in state["reported"].items()}


def _space_of(space: Any) -> dict[str, BaseDistribution] | DefineByRun | None:
    if space is None or (isinstance(space, (dict, list)) and not space):
        return None
    if isinstance(space, dict):
        # Optuna distributions pass through; atune domains are converted (a grid_search
        # raises there, naming its key); constants belong in param_space.
        converted = convert_search_space(space)
        if not converted:
            raise ConfigError(
                f"OptunaSearch: space holds no Optuna distribution or atune domain: {space!r}",
                value=space,
            )
        return converted
    if isinstance(space, list):
        return convert_search_space(dict(space))
    if callable(space):
        return space  # type: ignore[no-any-return]
    raise TypeError(
        "OptunaSearch: space must be a dict, a define-by-run function or None, got "
        f"{type(space).__name__}: {space!r}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _values(metric: Any, result: dict[str, Any] | None) -> list[float] | None:
    if not result:
        return None
    names = metric if isinstance(metric, list) else [metric]
    values = [result.get(name) for name in names]
    if any(not _is_number(v) for v in values):
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def _num(x: float) -> Any:
    """A float as JSON: non-finite values as strings."""
    return x if math.isfinite(x) else repr(float(x))


def _unnum(x: Any) -> float:
    return float(x)


def _trial_to_data(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    data: dict[str, Any] = {"number": t.number, "state": t.state.name}
    if t.state == TrialState.WAITING:
        data["fixed_params"] = t.system_attrs.get("fixed_params", {})
        return data
    data["distributions"] = {k: distribution_to_json(d) for k, d in t.distributions.items()}
    data["params"] = {k: _num(t.distributions[k].to_internal_repr(v)) for k, v in t.params.items()}
    data["values"] = None if t.values is None else [_num(v) for v in t.values]
    data["intermediate"] = [[step, _num(v)] for step, v in sorted(t.intermediate_values.items())]
    return data


def _trial_from_data(study: optuna.Study, data: dict[str, Any]) -> optuna.Trial | None:
    """Add one saved trial to ``study`` (in number order); the Trial if it is running."""
    state = data["state"]
    if state == "WAITING":
        study.enqueue_trial(data["fixed_params"], skip_if_exists=False)
        return None
    dists = {k: json_to_distribution(v) for k, v in data["distributions"].items()}
    params = {k: dists[k].to_external_repr(_unnum(v)) for k, v in data["params"].items()}
    intermediate = {int(s): _unnum(v) for s, v in data["intermediate"]}
    if state in _FINISHED_STATES:
        values = data["values"]
        study.add_trial(
            optuna.trial.create_trial(
                state=_FINISHED_STATES[state],
                values=None if values is None else [_unnum(v) for v in values],
                params=params,
                distributions=dists,
                intermediate_values=intermediate,
            )
        )
        return None
    # Asked but not told: ask it again with the same parameters, in its place.
    study.enqueue_trial(params, skip_if_exists=False)
    trial = study.ask(fixed_distributions=dists)
    for step, value in intermediate.items():
        trial.report(value, step)
    return trial
