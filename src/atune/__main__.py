"""``python -m atune``: the ``atune`` command line (see :mod:`atune._cli`)."""

from __future__ import annotations

import sys

from atune._cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
