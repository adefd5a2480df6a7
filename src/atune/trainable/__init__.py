"""The trainable runtime: the class API, the function API and checkpoints.

This layer imports neither Ray nor the controller: a trainable written against it runs
under any backend, and standalone.
"""

from atune.trainable._checkpoint import Checkpoint
from atune.trainable._function import FunctionTrainable, wrap_function
from atune.trainable._session import TuneContext, get_checkpoint, get_context, report
from atune.trainable._trainable import Trainable
from atune.trainable._wrappers import with_parameters, with_resources

__all__ = [
    "Checkpoint",
    "FunctionTrainable",
    "Trainable",
    "TuneContext",
    "get_checkpoint",
    "get_context",
    "report",
    "with_parameters",
    "with_resources",
    "wrap_function",
]
