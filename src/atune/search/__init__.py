"""Search spaces and search algorithms (Ray Tune's ``ray.tune.search``).

* Sampling primitives and domains: :mod:`atune.search.sample` (``uniform``, ``choice``,
  ``grid_search``, ... and ``Float``/``Integer``/``Categorical``/``Function``).
* :class:`BasicVariantGenerator`: the default random and grid search.
* :class:`Searcher`: the extension point for optimizers; :class:`ConcurrencyLimiter`
  wraps one, :class:`Repeater` repeats its configs, :class:`SearchGenerator` runs one for
  the controller. Optuna lives in ``atune.search.optuna`` (the ``optuna`` extra),
  HyperOpt in ``atune.search.hyperopt`` (the ``hyperopt`` extra).
* :class:`SearchAlgorithm`, :class:`Suggestion` and :data:`FINISHED`: the protocol the
  controller consumes; :func:`validate_param_space` checks a space early, at ``Tuner(...)``.
"""

from __future__ import annotations

from atune.search._algorithm import FINISHED, SearchAlgorithm, Suggestion
from atune.search._variant import validate_param_space
from atune.search.basic_variant import BasicVariantGenerator
from atune.search.concurrency_limiter import ConcurrencyLimiter
from atune.search.repeater import Repeater
from atune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from atune.search.searcher import Searcher, SearchGenerator

__all__ = [
    "FINISHED",
    "BasicVariantGenerator",
    "Categorical",
    "ConcurrencyLimiter",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "Repeater",
    "SearchAlgorithm",
    "SearchGenerator",
    "Searcher",
    "Suggestion",
    "choice",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
    "validate_param_space",
]
