"""Logger callbacks (Ray Tune's ``ray.tune.logger``).

* :class:`LoggerCallback`: the base class of per-trial loggers; its ``log_trial_*``
  methods run in a worker thread, in event order, so a slow logger never blocks the
  event loop.
* :class:`TBXLoggerCallback`: TensorBoard event files in each trial directory (needs the
  ``tensorboard`` extra: ``pip install "atune[tensorboard]"``).

JSON (``result.json``) and CSV (``progress.csv``) results are always written by atune
itself; they need no callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atune._lazy import lazy_attributes

if TYPE_CHECKING:
    from atune.logger.logger import LoggerCallback as LoggerCallback
    from atune.logger.tensorboardx import TBXLoggerCallback as TBXLoggerCallback

__getattr__, __dir__, __all__ = lazy_attributes(__name__, ("logger", "tensorboardx"))
