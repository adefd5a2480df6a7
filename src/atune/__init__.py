"""atune: asyncio-first, event-driven hyperparameter tuning with Ray Tune's Trainable API.

Port a Ray Tune program by changing ``from ray import tune`` to ``import atune as tune``.
``tuner.fit()`` works in a plain script; ``await tuner.fit()`` runs inside any asyncio
application without blocking it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes
from atune._version import __version__ as __version__

# The public names, once: type checkers read these imports; at run time each name is
# imported on first use (atune._lazy derives __getattr__, __dir__ and __all__ from this
# block), so a Ray worker that only needs the trainable runtime (``tune.report``) does not
# pay for the search, results and progress modules. Add a public name here and nowhere else.
if TYPE_CHECKING:
    from atune._load import load_results as load_results
    from atune._run import Run as Run
    from atune.callback import Callback as Callback
    from atune.config import (
        CheckpointConfig as CheckpointConfig,
        FailureConfig as FailureConfig,
        RunConfig as RunConfig,
        TuneConfig as TuneConfig,
    )
    from atune.errors import TuneError as TuneError
    from atune.execution.placement_groups import PlacementGroupFactory as PlacementGroupFactory
    from atune.progress_reporter import (
        CLIReporter as CLIReporter,
        JupyterNotebookReporter as JupyterNotebookReporter,
        ProgressReporter as ProgressReporter,
    )
    from atune.result import Result as Result, ResultGrid as ResultGrid
    from atune.search.sample import (
        choice as choice,
        grid_search as grid_search,
        lograndint as lograndint,
        loguniform as loguniform,
        qlograndint as qlograndint,
        qloguniform as qloguniform,
        qrandint as qrandint,
        qrandn as qrandn,
        quniform as quniform,
        randint as randint,
        randn as randn,
        sample_from as sample_from,
        uniform as uniform,
    )
    from atune.stopper import Stopper as Stopper
    from atune.trainable import (
        Checkpoint as Checkpoint,
        Trainable as Trainable,
        TuneContext as TuneContext,
        get_checkpoint as get_checkpoint,
        get_context as get_context,
        report as report,
        with_parameters as with_parameters,
        with_resources as with_resources,
    )
    from atune.tuner import Tuner as Tuner

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
    "progress_reporter",
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

__getattr__, __dir__, __all__ = lazy_attributes(__name__, _SUBMODULES, extra=["__version__"])
