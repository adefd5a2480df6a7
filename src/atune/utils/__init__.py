"""Utilities for trainables: ``wait_for_gpu``, ``diagnose_serialization``, ``validate_save_restore``.

``validate_warmstart`` lives in :mod:`atune.utils.util` and is not re-exported here, as in
Ray Tune.
"""

from __future__ import annotations

from atune.utils import util as util  # ``tune.utils.util.validate_warmstart``
from atune.utils._gpu import wait_for_gpu
from atune.utils._serialization import diagnose_serialization
from atune.utils._validate import validate_save_restore

__all__ = ["diagnose_serialization", "validate_save_restore", "wait_for_gpu"]
