"""atune: asyncio-first, event-driven hyperparameter tuning with Ray Tune's Trainable API.

Port a Ray Tune program by changing ``from ray import tune`` to ``import atune as tune``.
``tuner.fit()`` works in a plain script; ``await tuner.fit()`` runs inside any asyncio
application without blocking it.
"""

from atune._version import __version__
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
