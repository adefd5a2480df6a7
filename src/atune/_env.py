"""Numbers read from environment variables: one parser, one error for a bad value.

atune reads a handful of settings from the environment (Ray Tune's ``TUNE_*`` names and
its own ``ATUNE_*`` ones) when an experiment starts. Each is a number with a range; an
unset or blank variable means the default, and anything else that does not parse or is
out of range is a :class:`~atune.errors.ConfigError` naming the variable, what it must
be, and the value found, before any trial runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from atune.errors import ConfigError

__all__ = ["env_number"]

N = TypeVar("N", int, float)


def env_number(
    name: str, default: N, parse: Callable[[str], N], valid: Callable[[N], bool], must_be: str
) -> N:
    """The variable ``name`` parsed with ``parse`` (``int`` or ``float``), else ``default``.

    Args:
        name: The environment variable.
        default: The value when it is unset or blank.
        parse: ``int`` or ``float``.
        valid: Whether a parsed value is in range (a float's NaN must fail it).
        must_be: What it must be, for the error ("a whole number >= 0").

    Raises:
        ConfigError: ``"<name> must be <must_be>, got '<value>'"``.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ConfigError(f"{name} must be {must_be}, got {raw!r}", value=raw)
    return value
