"""The trainable runtime: the class API, the function API and checkpoints.

This layer imports neither Ray nor the controller: a trainable written against it runs
under any backend, and standalone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes

# The public names, once (see atune._lazy): imported on first use, so that a module that
# needs one light piece (``Checkpoint``, ``TrialInfo``) does not load the function runtime
# and its greenlets; the controller's core imports none of it.
if TYPE_CHECKING:
    from atune.trainable._checkpoint import Checkpoint as Checkpoint
    from atune.trainable._function import (
        FunctionTrainable as FunctionTrainable,
        wrap_function as wrap_function,
    )
    from atune.trainable._session import (
        TuneContext as TuneContext,
        get_checkpoint as get_checkpoint,
        get_context as get_context,
        report as report,
    )
    from atune.trainable._trainable import Trainable as Trainable
    from atune.trainable._wrappers import (
        with_parameters as with_parameters,
        with_resources as with_resources,
    )

__getattr__, __dir__, __all__ = lazy_attributes(__name__)
