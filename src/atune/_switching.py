"""A short GIL switch interval while experiments run, so the caller's event loop stays live.

The driver runs a few helper threads next to its event loop: Ray's actor submission (which
imports and pickles the first time), file writes, capacity queries. A thread that runs
Python code keeps the GIL for the interpreter's switch interval (5 ms by default) before
another thread gets it, so each time a helper runs the event loop can wait up to 5 ms:
the late ticks a 10 ms timer saw while trial actors were being started. While at least one
``fit()`` runs, atune lowers the interval to 1 ms (it never raises it) and puts the previous
value back when the last one ends, unless someone else changed it in between.

``ATUNE_SWITCH_INTERVAL_S`` sets the interval used (seconds; ``0`` leaves the interpreter's
setting alone).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from atune._env import env_number

__all__ = ["ENV_VAR", "short_switch_interval"]

ENV_VAR = "ATUNE_SWITCH_INTERVAL_S"
_DEFAULT_S = 0.001

_lock = threading.Lock()
_active = 0
_restore: tuple[float, float] | None = None  # (previous value, value set by atune)


def _target() -> float:
    return env_number(
        ENV_VAR,
        _DEFAULT_S,
        float,
        lambda v: v >= 0.0,  # also rejects nan
        "a number of seconds >= 0 (0 leaves the GIL switch interval alone)",
    )


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """Hold the GIL switch interval at most at the target while the block runs."""
    global _active, _restore
    target = _target()
    with _lock:
        _active += 1
        if _active == 1:
            previous = sys.getswitchinterval()
            if 0.0 < target < previous:
                sys.setswitchinterval(target)
                _restore = (previous, sys.getswitchinterval())
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _restore is not None:
                previous, ours = _restore
                _restore = None
                if sys.getswitchinterval() == ours:  # nobody changed it since
                    sys.setswitchinterval(previous)
