"""atune: asyncio-first, event-driven hyperparameter tuning with Ray Tune's Trainable API.

Port a Ray Tune program by changing ``from ray import tune`` to ``import atune as tune``.
``tuner.fit()`` works in a plain script; ``await tuner.fit()`` runs inside any asyncio
application without blocking it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes
from atune._version import __version__

# Public names are imported on first use: a Ray worker that only needs the trainable
# runtime (``tune.report``) does not pay for the search, results and progress modules.
_LAZY: dict[str, str] = {
    "Callback": "atune.callback",
    "Checkpoint": "atune.trainable",
    "CheckpointConfig": "atune.config",
    "FailureConfig": "atune.config",
    "PlacementGroupFactory": "atune.execution.placement_groups",
    "Result": "atune.result",
    "ResultGrid": "atune.result",
    "RunConfig": "atune.config",
    "Stopper": "atune.stopper",
    "Trainable": "atune.trainable",
    "TuneConfig": "atune.config",
    "TuneContext": "atune.trainable",
    "TuneError": "atune.errors",
    "Tuner": "atune.tuner",
    "choice": "atune.search.sample",
    "get_checkpoint": "atune.trainable",
    "get_context": "atune.trainable",
    "grid_search": "atune.search.sample",
    "load_results": "atune._load",
    "lograndint": "atune.search.sample",
    "loguniform": "atune.search.sample",
    "qlograndint": "atune.search.sample",
    "qloguniform": "atune.search.sample",
    "qrandint": "atune.search.sample",
    "qrandn": "atune.search.sample",
    "quniform": "atune.search.sample",
    "randint": "atune.search.sample",
    "randn": "atune.search.sample",
    "report": "atune.trainable",
    "sample_from": "atune.search.sample",
    "uniform": "atune.search.sample",
    "with_parameters": "atune.trainable",
    "with_resources": "atune.trainable",
}

if TYPE_CHECKING:
    from atune._load import load_results
    from atune.callback import Callback
    from atune.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
    from atune.errors import TuneError
    from atune.execution.placement_groups import PlacementGroupFactory
    from atune.result import Result, ResultGrid
    from atune.search.sample import (
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
    from atune.stopper import Stopper
    from atune.trainable import (
        Checkpoint,
        Trainable,
        TuneContext,
        get_checkpoint,
        get_context,
        report,
        with_parameters,
        with_resources,
    )
    from atune.tuner import Tuner


__all__ = [
    "Callback",
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "PlacementGroupFactory",
    "Result",
    "ResultGrid",
    "RunConfig",
    "Stopper",
    "Trainable",
    "TuneConfig",
    "TuneContext",
    "TuneError",
    "Tuner",
    "__version__",
    "choice",
    "get_checkpoint",
    "get_context",
    "grid_search",
    "load_results",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "report",
    "sample_from",
    "uniform",
    "with_parameters",
    "with_resources",
]

# Modules reachable as attributes of the package, as on ``ray.tune`` after ``import ray.tune``
# (``tune.stopper.CombinedStopper``, ``tune.search.ConcurrencyLimiter``, ...); each is
# imported on first look-up.
_SUBMODULES = (
    "callback",
    "config",
    "context",
    "error",
    "errors",
    "events",
    "execution",
    "result",
    "result_grid",
    "schedulers",
    "search",
    "stopper",
    "trainable",
    "tune_config",
    "tuner",
    "utils",
)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__, _SUBMODULES)
