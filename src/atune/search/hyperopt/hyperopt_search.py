"""``HyperOptSearch``: HyperOpt's Tree-structured Parzen Estimator as an atune searcher.

Ray Tune's ``ray.tune.search.hyperopt.HyperOptSearch`` with the same arguments, plus:

* **Reproducible and restorable.** Each suggestion draws from a generator seeded from
  ``(random_state_seed, number of draws so far)``, so a run is a function of the seed and
  of the order in which trials were told. The searcher's state is plain data
  (:meth:`HyperOptSearch.get_state`: every HyperOpt trial with its parameter values, state
  and loss, the trials suggested but not told, how many ``points_to_evaluate`` were used,
  the seed and the draw counter); ``Tuner.restore`` rebuilds HyperOpt's ``Trials`` from it
  and continues exactly where the interrupted run stood. Ray Tune pickles the
  ``Trials`` object instead.
* **Bad input fails before any trial** with a :class:`~atune.errors.ConfigError` (a
  ``ValueError``) naming the parameter: a ``grid_search`` or ``sample_from`` in the space
  (naming its key), a point of ``points_to_evaluate`` the space cannot express, a missing
  metric or mode, a metric set both here and in ``TuneConfig`` to different values; wrong
  types are a ``TypeError``. Ray Tune asserts, or fails at the first suggestion.
* A final result without a numeric metric, or with NaN, is told as a failed trial (with a
  warning naming the metric) instead of raising inside the controller.
"""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any, Literal

import numpy as np
from hyperopt import Domain, Trials, base, tpe
from hyperopt.pyll import Apply, rec_eval

from atune._log import get_logger
from atune.errors import ConfigError
from atune.search._codec import decode_space, encode_space
from atune.search.hyperopt._convert import (
    Converted,
    convert_search_space,
    has_domains,
    point_to_vals,
)
from atune.search.searcher import Searcher

__all__ = ["HyperOptSearch"]

_log = get_logger(__name__)
_STATE_VERSION = 1
_STATES = {
    "new": base.JOB_STATE_NEW,
    "done": base.JOB_STATE_DONE,
    "error": base.JOB_STATE_ERROR,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}


class HyperOptSearch(Searcher):
    """Suggest configs with HyperOpt's TPE (random search for the first points).

    Args:
        space: The search space: a dict of atune domains (converted with the table in
            :mod:`atune.search.hyperopt._convert`), a dict of HyperOpt expressions
            (``hp.uniform("lr", 0, 1)``; their labels are taken as config keys), a mix, or
            one HyperOpt expression that evaluates to a dict (a conditional space built
            with ``hp.choice``). None: the Tuner's ``param_space`` is converted.
        metric: The result key to optimise (a single one: HyperOpt has one objective).
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configs to try first, in order. Each must give a value for
            every parameter it uses (a choice by its value, not its index); each is checked
            against the space before any trial starts.
        n_initial_points: How many trials are drawn at random before TPE models the
            results (HyperOpt's ``n_startup_jobs``; None: HyperOpt's default, 20).
            ``points_to_evaluate`` count among them.
        random_state_seed: Seed of the suggestions; None draws one (recorded in the
            state, so a restored run still continues exactly).
        gamma: TPE's quantile that separates good from bad trials, in ``(0, 1]``
            (None: HyperOpt's default, 0.25).

    Raises:
        ConfigError: a ``grid_search``, ``sample_from`` or unsupported domain in ``space``,
            a bad ``mode``, a list ``metric``, a bad ``n_initial_points`` or ``gamma``.
        TypeError: an argument of the wrong type.
    """

    def __init__(
        self,
        space: dict[str, Any] | Apply | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        n_initial_points: int | None = 20,
        random_state_seed: int | None = None,
        gamma: float | None = 0.25,
    ) -> None:
        if metric is not None and not isinstance(metric, str):
            raise ConfigError(
                f"HyperOptSearch optimises one metric: metric must be a str, got {metric!r}",
                value=metric,
            )
        if mode is not None and mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", value=mode)
        super().__init__(metric=metric, mode=mode)
        points = list(points_to_evaluate or [])
        for point in points:
            if not isinstance(point, dict):
                raise TypeError(f"each of points_to_evaluate must be a dict, got {point!r}")
        _check_int("n_initial_points", n_initial_points, minimum=0)
        _check_int("random_state_seed", random_state_seed, minimum=None)
        if gamma is not None:
            if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
                raise TypeError(f"gamma must be a number in (0, 1], got {gamma!r}")
            if not 0 < gamma <= 1:
                raise ConfigError(f"gamma must be in (0, 1], got {gamma!r}", value=gamma)
        algo_args: dict[str, Any] = {"verbose": False}
        if n_initial_points is not None:
            algo_args["n_startup_jobs"] = n_initial_points
        if gamma is not None:
            algo_args["gamma"] = gamma
        self._algo = partial(tpe.suggest, **algo_args)
        self._points = points
        if random_state_seed is None:
            random_state_seed = int(np.random.default_rng().integers(2**32))
        self._seed = int(random_state_seed)
        self._converted: Converted | None = _space_of(space)
        if self._converted is None and isinstance(space, dict) and space:
            raise ConfigError(
                "HyperOptSearch: space holds no HyperOpt expression or atune domain, only "
                f"constants: {space!r}; put constants in param_space",
                value=space,
            )
        self._domain: Domain | None = None
        self._trials = Trials()
        self._docs: dict[int, dict[str, Any]] = {}
        self._point_vals: list[dict[str, Any]] = []
        self._points_used = 0
        self._asks = 0
        self._live: dict[str, int] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._init_args: dict[str, Any] | None = None
        if space is None or (isinstance(space, dict) and not _has_apply(space)):
            encoded, unrestorable = encode_space(space)
            if not unrestorable:
                self._init_args = {
                    "space": encoded,
                    "metric": metric,
                    "mode": mode,
                    "points_to_evaluate": points or None,
                    "n_initial_points": n_initial_points,
                    "random_state_seed": self._seed,
                    "gamma": gamma,
                }
        if self._converted is not None and self._metric and self._mode:
            self._setup()

    def init_args(self) -> dict[str, Any] | None:
        """Constructor arguments as JSON data, for ``Tuner.restore``; None when the space
        holds HyperOpt expressions or values that are not data."""
        return self._init_args

    @classmethod
    def from_init_args(cls, space: Any = None, **kwargs: Any) -> HyperOptSearch:
        """Build the searcher that :meth:`init_args` described."""
        return cls(space=decode_space(space), **kwargs)

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
                ``grid_search`` or ``sample_from`` in ``param_space`` (naming its key); a
                point of ``points_to_evaluate`` that the space cannot express.
        """
        for name, mine, theirs in (("metric", self._metric, metric), ("mode", self._mode, mode)):
            if mine is not None and theirs is not None and mine != theirs:
                raise ConfigError(
                    f"{name} is set both on HyperOptSearch ({name}={mine!r}) and on "
                    f"TuneConfig ({name}={theirs!r}); set it in one place",
                    value=theirs,
                )
        accepted = False
        if self._converted is None:
            self._converted = _space_of(config)
            accepted = True
        if self._converted is None:
            raise ConfigError(
                "HyperOptSearch has no search space: pass HyperOptSearch(space=...) or "
                "search domains in the Tuner's param_space",
                value=config,
            )
        metric = self._metric or metric  # type: ignore[assignment]
        mode = self._mode or mode  # type: ignore[assignment]
        if not metric:
            raise ConfigError(
                "HyperOptSearch needs a metric: set HyperOptSearch(metric=...) or "
                "TuneConfig(metric=...)"
            )
        if not mode:
            raise ConfigError(
                "HyperOptSearch needs a mode: set HyperOptSearch(mode=...) or TuneConfig(mode=...)"
            )
        if not isinstance(metric, str):
            raise ConfigError(
                f"HyperOptSearch optimises one metric: metric must be a str, got {metric!r}",
                value=metric,
            )
        Searcher.__init__(self, metric, mode)  # validates the pair
        self._setup()
        return accepted

    def _setup(self) -> None:
        assert self._converted is not None
        self._domain = Domain(lambda config: config, self._converted.space)
        self._point_vals = [
            point_to_vals(
                point, self._domain.expr, self._converted.paths, f"points_to_evaluate[{i}]"
            )
            for i, point in enumerate(self._points)
        ]
        self._trials = Trials()
        self._docs, self._live, self._configs = {}, {}, {}
        self._points_used = self._asks = 0

    @property
    def trials(self) -> Trials:
        """HyperOpt's ``Trials`` (for analysis: ``best_trial``, ``losses()``)."""
        return self._trials

    def _metric_op(self) -> float:
        """HyperOpt minimises: ``+1`` for ``"min"``, ``-1`` for ``"max"``."""
        return -1.0 if self._mode == "max" else 1.0

    # ------------------------------------------------------------- suggestions
    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        """The next config: the next of ``points_to_evaluate``, else a TPE suggestion.

        The same ``trial_id`` asked again gets the same config.

        Raises:
            RuntimeError: no space, metric or mode was set.
            TypeError: a HyperOpt expression space evaluated to something not a dict.
        """
        domain = self._domain
        if domain is None:
            raise RuntimeError(
                "HyperOptSearch has no space, metric or mode yet: give them here or "
                "through the Tuner"
            )
        if trial_id in self._configs:
            return self._configs[trial_id]
        (tid,) = self._trials.new_trial_ids(1)
        if self._points_used < len(self._point_vals):
            vals = self._point_vals[self._points_used]
            self._points_used += 1
            docs = self._trials.new_trial_docs(
                [tid], [None], [domain.new_result()], [_misc(domain, tid, vals)]
            )
        else:
            seed = int(np.random.SeedSequence([self._seed, self._asks]).generate_state(1)[0])
            self._asks += 1
            docs = self._algo([tid], domain, self._trials, seed)
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        doc = self._trials.trials[-1]
        self._docs[tid] = doc
        config = self._config_of(doc)
        self._live[trial_id] = tid
        self._configs[trial_id] = config
        return config

    def _config_of(self, doc: dict[str, Any]) -> dict[str, Any]:
        assert self._domain is not None
        memo = self._domain.memo_from_config(base.spec_from_misc(doc["misc"]))
        config = _plain(rec_eval(self._domain.expr, memo=memo, print_node_on_error=False))
        if not isinstance(config, dict):
            raise TypeError(
                "HyperOptSearch: the space must evaluate to a dict, got "
                f"{type(config).__name__}: {config!r}"
            )
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell HyperOpt the loss (``metric``, negated for ``"max"``), or a failure.

        A trial that errored, ended without a result, or whose last result has no
        numeric metric (or NaN) is told as failed; TPE counts it as the worst.
        """
        tid = self._live.pop(trial_id, None)
        self._configs.pop(trial_id, None)
        if tid is None:
            return
        value: Any = None if error or not result else result.get(str(self._metric))
        if not error and result and not _is_number(value):
            _log.warning(
                "HyperOptSearch: the last result has no numeric metric; told as failed",
                trial_id=trial_id,
                metric=self._metric,
                value=repr(value),
            )
        doc = self._docs[tid]
        if _is_number(value) and not math.isnan(value):
            doc["state"] = base.JOB_STATE_DONE
            doc["result"] = {"loss": self._metric_op() * float(value), "status": base.STATUS_OK}
        else:
            doc["state"] = base.JOB_STATE_ERROR
            doc["result"] = {"status": base.STATUS_FAIL}
        self._trials.refresh()

    # --------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """The searcher's progress as JSON data (see the module docstring)."""
        return {
            "version": _STATE_VERSION,
            "seed": self._seed,
            "asks": self._asks,
            "points_used": self._points_used,
            "live": dict(self._live),
            "trials": [_doc_to_data(doc) for doc in self._trials.trials],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild HyperOpt's trials from :meth:`get_state` output (after
        ``set_search_properties``).

        Raises:
            ConfigError: ``state`` is not a HyperOptSearch state.
            RuntimeError: the searcher has no space, metric or mode yet.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ConfigError(f"not a HyperOptSearch state: {state!r}", value=state)
        domain = self._domain
        if domain is None:
            raise RuntimeError("HyperOptSearch.set_state: call set_search_properties first")
        try:
            trials = Trials()
            docs = []
            for data in state["trials"]:
                tid = int(data["tid"])
                (doc,) = trials.new_trial_docs(
                    [tid],
                    [None],
                    [_result_from_data(data["result"])],
                    [_misc(domain, tid, data["vals"])],
                )
                doc["state"] = _STATES[data["state"]]
                docs.append(doc)
            trials.insert_trial_docs(docs)
            trials.refresh()
            self._seed = int(state["seed"])
            self._asks = int(state["asks"])
            self._points_used = int(state["points_used"])
            live = {str(k): int(v) for k, v in state["live"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"not a HyperOptSearch state: {state!r} ({exc})", value=state
            ) from exc
        self._trials = trials
        self._docs = {doc["tid"]: doc for doc in trials.trials}
        self._live = live
        self._configs = {tid: self._config_of(self._docs[n]) for tid, n in live.items()}


def _check_int(name: str, value: Any, *, minimum: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}", value=value)


def _has_apply(space: Any) -> bool:
    if isinstance(space, Apply):
        return True
    if isinstance(space, dict):
        return any(_has_apply(v) for v in space.values())
    if isinstance(space, (list, tuple)):
        return any(_has_apply(v) for v in space)
    return False


def _space_of(space: Any) -> Converted | None:
    """The converted space, or None when there is none (yet)."""
    if space is None or (isinstance(space, dict) and not space):
        return None
    if isinstance(space, Apply):
        return Converted(space, {})  # type: ignore[arg-type]
    if not isinstance(space, dict):
        raise TypeError(
            "HyperOptSearch: space must be a dict, a HyperOpt expression or None, got "
            f"{type(space).__name__}: {space!r}"
        )
    if not has_domains(space) and not _has_apply(space):
        return None
    return convert_search_space(space)


def _misc(domain: Domain, tid: int, vals: dict[str, Any]) -> dict[str, Any]:
    """A HyperOpt ``misc`` record: every label, with a value where ``vals`` has one."""
    return {
        "tid": tid,
        "cmd": domain.cmd,
        "workdir": domain.workdir,
        "idxs": {label: [tid] if label in vals else [] for label in domain.params},
        "vals": {label: [vals[label]] if label in vals else [] for label in domain.params},
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars (as HyperOpt returns them) turned into Python ones."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _num(x: Any) -> Any:
    """A number as JSON data: Python int/float, non-finite floats as strings."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else repr(x)


def _unnum(x: Any) -> Any:
    return float(x) if isinstance(x, str) else x


def _doc_to_data(doc: dict[str, Any]) -> dict[str, Any]:
    result = doc["result"]
    data_result: dict[str, Any] = {"status": result.get("status")}
    if result.get("loss") is not None:
        data_result["loss"] = _num(result["loss"])
    return {
        "tid": int(doc["tid"]),
        "state": _STATE_NAMES[doc["state"]],
        "vals": {k: _num(v[0]) for k, v in doc["misc"]["vals"].items() if v},
        "result": data_result,
    }


def _result_from_data(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"status": data["status"]}
    if "loss" in data:
        result["loss"] = _unnum(data["loss"])
    return result
