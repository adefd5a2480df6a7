"""Flatten nested dicts to ``"a/b/c"`` keys and back.

Ray Tune flattens every result with ``/`` before stoppers, schedulers and searchers see it,
and writes flattened columns to ``progress.csv``. These helpers do the same, with the same
edge cases:

* Only dicts are descended into by default; lists stay leaves unless ``flatten_list=True``
  (then ``{"a": [1, 2]}`` becomes ``{"a/0": 1, "a/1": 2}``).
* An empty nested dict has no leaves, so it disappears: ``{"a": {}, "b": 1}`` flattens to
  ``{"b": 1}``. A round trip therefore loses empty sub-dicts, as in Ray Tune.
* Nested keys are joined with ``str()``; a top-level key that is not nested is kept as is.
* The input is never modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atune.errors import ConfigError

__all__ = ["flatten_dict", "unflatten_dict"]


def flatten_dict(
    d: Mapping[Any, Any],
    delimiter: str = "/",
    prevent_delimiter: bool = False,
    flatten_list: bool = False,
) -> dict[Any, Any]:
    """Flatten nested dicts into one dict whose keys are ``delimiter``-joined paths.

    Leaves appear in depth-first order of the input.

    Args:
        d: The (possibly nested) mapping to flatten.
        delimiter: The string placed between path components.
        prevent_delimiter: If True, a key that already contains ``delimiter`` is an error,
            because the result could not be unflattened unambiguously.
        flatten_list: If True, lists are descended into too, their indices becoming path
            components.

    Returns:
        A new flat dict. Values that are not dicts (or lists, with ``flatten_list``) are the
        same objects as in ``d``.

    Raises:
        ConfigError: ``prevent_delimiter`` is set and a key contains ``delimiter``; the
            message names the key.
    """
    if prevent_delimiter or flatten_list:
        return _flatten_checked(d, delimiter, prevent_delimiter, flatten_list)
    # The common case (every result, several times): no checks, no closure, and the types
    # of metrics (numbers, strings) decided by one set lookup.
    out: dict[Any, Any] = {}
    for key, value in d.items():
        if type(value) in _LEAVES or not _is_mapping(value):
            out[key] = value  # a top-level leaf keeps its key as is
        else:
            _flatten_into(out, str(key), value, delimiter)
    return out


#: Types that are leaves for certain (checked by identity, before the slower checks).
_LEAVES = frozenset({int, float, str, bool, type(None)})


def _flatten_into(
    out: dict[Any, Any], prefix: str, mapping: Mapping[Any, Any], delimiter: str
) -> None:
    """Add the leaves of ``mapping`` to ``out``, their paths under ``prefix``."""
    for key, value in mapping.items():
        path = f"{prefix}{delimiter}{key}"
        if type(value) in _LEAVES or not _is_mapping(value):
            out[path] = value
        else:
            _flatten_into(out, path, value, delimiter)


def _flatten_checked(
    d: Mapping[Any, Any], delimiter: str, prevent_delimiter: bool, flatten_list: bool
) -> dict[Any, Any]:
    """:func:`flatten_dict` with ``prevent_delimiter`` or ``flatten_list``."""
    out: dict[Any, Any] = {}

    def walk(prefix: str | None, value: Any, key: Any) -> None:
        if prevent_delimiter and isinstance(key, str) and delimiter in key:
            raise ConfigError(
                f"found the delimiter {delimiter!r} in key {key!r} while flattening; "
                "avoid the delimiter in key names",
                value=key,
            )
        path = key if prefix is None else f"{prefix}{delimiter}{key}"
        if _is_mapping(value):
            for sub_key, sub_value in value.items():
                walk(str(path), sub_value, sub_key)
        elif flatten_list and isinstance(value, list):
            for index, item in enumerate(value):
                walk(str(path), item, index)
        else:
            out[path] = value

    for key, value in d.items():
        walk(None, value, key)
    return out


def _is_mapping(value: Any) -> bool:
    # Numbers and strings first: the ABC check is slow, and metrics are mostly numbers.
    if type(value) is dict:
        return True
    if isinstance(value, (int, float, str)):
        return False
    return isinstance(value, Mapping)


def unflatten_dict(d: Mapping[str, Any], delimiter: str = "/") -> dict[str, Any]:
    """Rebuild nested dicts from ``delimiter``-joined keys (the inverse of ``flatten_dict``).

    Lists are not rebuilt: ``{"a/0": 1}`` becomes ``{"a": {"0": 1}}``.

    Args:
        d: A flat mapping with string keys.
        delimiter: The string that separates path components.

    Returns:
        A new nested dict. Leaf values are the same objects as in ``d``.

    Raises:
        TypeError: A key's parent path already holds a non-dict value (``{"a": 1, "a/b": 2}``);
            the message names both keys.
    """
    out: dict[str, Any] = {}
    for key, value in d.items():
        parts = key.split(delimiter)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                parent = delimiter.join(parts[: i + 1])
                raise TypeError(
                    f"cannot unflatten key {key!r}: its parent {parent!r} already holds "
                    f"a non-dict value {child!r}"
                )
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            raise TypeError(f"cannot unflatten key {key!r}: it is also the parent of other keys")
        node[leaf] = value
    return out
