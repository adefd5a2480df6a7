"""A bare Ray actor class, in a module that imports neither framework (``actor_start``)."""

from __future__ import annotations

import os

__all__ = ["Bare"]


class Bare:
    """Does nothing: starting it costs only what Ray costs."""

    def ping(self) -> int:
        """Answer with the worker's process id."""
        return os.getpid()
