"""Experiment trackers (Ray's ``ray.air.integrations``), each behind an extra.

* :mod:`atune.integrations.mlflow`: ``MLflowLoggerCallback`` and ``setup_mlflow``
  (``pip install "atune[mlflow]"``).
* :mod:`atune.integrations.wandb`: ``WandbLoggerCallback`` and ``setup_wandb``
  (``pip install "atune[wandb]"``).

TensorBoard is :class:`atune.logger.TBXLoggerCallback`, as in Ray Tune. Importing an
integration whose extra is not installed raises :class:`ImportError` with the ``pip
install`` line that brings it.
"""

from __future__ import annotations

__all__: list[str] = []
