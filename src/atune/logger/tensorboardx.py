"""``TBXLoggerCallback``: TensorBoard event files per trial (Ray Tune's, via tensorboardX).

Needs the ``tensorboard`` extra (``pip install "atune[tensorboard]"``, which installs
``tensorboardX``). What is written, as in Ray Tune:

* One ``events.out.tfevents.*`` file per trial start, in the trial directory
  (``trial.path``); point ``tensorboard --logdir`` at the experiment directory.
* Each result, flattened with ``/`` (``{"a": {"b": 1}}`` -> ``a/b``), under the tag
  prefix ``ray/tune/`` (kept from Ray Tune so existing dashboards and tag filters work):
  every finite number as a scalar, a non-empty list or 1-, 2-D array as a histogram, a
  3-D array as an image (CHW) and a 4-D one as a batch of images (NCHW). The step is
  ``timesteps_total`` when the result has it, else ``training_iteration``. The keys
  ``config``, ``pid``, ``timestamp``, ``time_total_s`` and ``training_iteration`` are
  not logged.
* When the trial ends, its config (flattened; strings, booleans, numbers, lists and
  None) as TensorBoard HParams with the last result's scalars as metrics.

Writes go through tensorboardX's own writer thread and are flushed after each result; the
callback's methods run in a worker thread (:class:`~atune.logger.LoggerCallback`).
"""

from __future__ import annotations

import logging
import math
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from atune._extras import require
from atune._flatten import flatten_dict
from atune.logger.logger import LoggerCallback

require("tensorboardX", "tensorboard", "atune.logger.TBXLoggerCallback")

from tensorboardX import SummaryWriter  # noqa: E402
from tensorboardX.summary import hparams  # noqa: E402

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["TBXLoggerCallback"]

_log = logging.getLogger(__name__)

_NOT_LOGGED = ("config", "pid", "timestamp", "time_total_s", "training_iteration")
_HPARAM_TYPES = (str, bool, int, float, list, type(None))


def _scalar(value: Any) -> float | None:
    """``value`` as a finite float when it is a real number, else None."""
    if isinstance(value, (Real, np.number)) and not isinstance(value, complex):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


class TBXLoggerCallback(LoggerCallback):
    """Writes each trial's results as TensorBoard event files in its trial directory.

    See the module docstring for what is written. Takes no arguments, as in Ray Tune.
    """

    def __init__(self) -> None:
        super().__init__()
        self._writers: dict[str, SummaryWriter] = {}
        self._last_scalars: dict[str, dict[str, float]] = {}

    def log_trial_start(self, trial: Trial) -> None:
        """Opens a new event file in the trial directory (closing one from a retry)."""
        old = self._writers.pop(trial.trial_id, None)
        if old is not None:
            old.close()
        self._writers[trial.trial_id] = SummaryWriter(logdir=trial.path, flush_secs=30)
        self._last_scalars[trial.trial_id] = {}

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """Writes the result's scalars, histograms and images at its step."""
        if trial.trial_id not in self._writers:
            self.log_trial_start(trial)
        writer = self._writers[trial.trial_id]
        step = result.get("timesteps_total") or result.get("training_iteration") or 0
        kept = {k: v for k, v in result.items() if k not in _NOT_LOGGED}
        scalars: dict[str, float] = {}
        for key, value in flatten_dict(kept, delimiter="/").items():
            tag = f"ray/tune/{key}"
            number = _scalar(value)
            if number is not None:
                scalars[tag] = number
                writer.add_scalar(tag, number, global_step=step)
                continue
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0:
                self._add_array(writer, tag, value, step)
        self._last_scalars[trial.trial_id] = scalars
        writer.flush()

    @staticmethod
    def _add_array(writer: SummaryWriter, tag: str, value: Any, step: int) -> None:
        try:
            array = np.asarray(value)
            if array.ndim == 3:
                writer.add_image(tag, array, global_step=step)
            elif array.ndim == 4:
                writer.add_images(tag, array, global_step=step)
            else:
                writer.add_histogram(tag, array, global_step=step)
        except (ValueError, TypeError) as exc:
            _log.warning("TBXLoggerCallback: cannot log %s (%s)", tag, exc)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """Writes the config as HParams (with the last scalars) and closes the file."""
        writer = self._writers.pop(trial.trial_id, None)
        if writer is None:
            return
        metrics = self._last_scalars.pop(trial.trial_id, {})
        params = {
            key: value.tolist() if isinstance(value, np.generic) else value
            for key, value in flatten_dict(trial.config, delimiter="/").items()
        }
        kept = {k: v for k, v in params.items() if isinstance(v, _HPARAM_TYPES)}
        dropped = sorted(set(params) - set(kept))
        if dropped:
            _log.info("TBXLoggerCallback: config keys not logged as hparams: %s", dropped)
        if kept and metrics:
            try:
                for summary in hparams(hparam_dict=kept, metric_dict=metrics):
                    writer.file_writer.add_summary(summary)
            except Exception:
                _log.exception("TBXLoggerCallback: tensorboardX could not log the hparams")
        writer.close()

    def log_experiment_end(self) -> None:
        """Closes any writer still open."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
