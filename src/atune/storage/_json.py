"""Safe, fast JSON for result files: anything a trainable reports can be written.

Results are encoded with msgspec, which is several times faster than :mod:`json`. Two
things msgspec does differently from Ray Tune's ``result.json`` are handled here:

* **Values JSON cannot hold.** numpy scalars and arrays become Python numbers and lists
  (``.tolist()``); any other object msgspec cannot encode (including a non-string dict
  key) becomes ``str(value)``, like Ray Tune's ``SafeFallbackEncoder``. Types msgspec
  encodes natively keep msgspec's form (``datetime`` → ISO 8601 string, ``set`` → list,
  dataclass → object).
* **NaN and infinities.** msgspec writes them as ``null``, which would turn a reported
  ``nan`` loss into "not reported" on the way back. atune writes ``NaN``, ``Infinity`` and
  ``-Infinity`` instead, as Python's :mod:`json` (and so Ray Tune) does, so values
  round-trip through :func:`decode_json_lines`. This is not strict JSON; pandas and
  Python's :mod:`json` read it. Only floats reachable through dicts, lists, tuples and
  numpy values are found; a NaN inside some other container is written as ``null``.

The NaN check only runs when the fast encoding contains ``null`` (a result that reports
``None`` or a non-finite float), so the common path is one msgspec call.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

from atune.errors import StorageError

__all__ = ["decode_json_lines", "encode_json", "to_jsonable"]


def _is_numpy(obj: object) -> bool:
    return type(obj).__module__ == "numpy"


def _enc_hook(obj: Any) -> Any:
    """Turns a value msgspec cannot encode into one it can (numpy) or into its ``str``."""
    if _is_numpy(obj) and hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_LINES_DECODER = msgspec.json.Decoder()


def _has_nonfinite(obj: object) -> bool:
    """Whether a non-finite float is reachable through dicts, lists, tuples and numpy."""
    stack: list[Any] = [obj]
    while stack:
        item: Any = stack.pop()
        kind = type(item)
        if kind is float:
            if item - item != 0.0:  # NaN and +-inf give NaN
                return True
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif item is None or kind is str or kind is int or kind is bool:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif _is_numpy(item) and hasattr(item, "tolist"):
            stack.append(item.tolist())
    return False


def to_jsonable(obj: Any) -> Any:
    """Returns ``obj`` rebuilt from values that Python's :mod:`json` encodes.

    Dict keys become strings (``str(key)`` for anything but ``str``; Python's json would
    turn ``1`` into ``"1"`` as well, so this only changes keys it would reject), numpy
    values become Python numbers and lists, non-finite floats are kept as floats, and any
    other object is converted by msgspec when it knows the type (``datetime``, dataclass,
    ``set``, ...) or else by ``str``.

    Args:
        obj: Any value.

    Returns:
        A tree of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
    """
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, dict):
        return {
            key if isinstance(key, str) else str(to_jsonable(key)): to_jsonable(value)
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if _is_numpy(obj) and hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    try:
        built = msgspec.to_builtins(obj, enc_hook=_enc_hook, str_keys=True)
    except (TypeError, ValueError):
        return str(obj)
    # to_builtins may return the same unknown object, or a container that still holds
    # values needing conversion; bytes come back base64 encoded as str.
    if built is obj:
        return str(obj)
    return to_jsonable(built)


def encode_json(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> bytes:
    """Encodes ``obj`` as UTF-8 JSON, never failing on a value it cannot represent.

    Without ``indent`` and ``sort_keys`` (the result-line hot path) the encoding is one
    msgspec call, plus a scan for non-finite floats when the output contains ``null``.
    With either option (``params.json``), it goes through :func:`to_jsonable` and
    :func:`json.dumps`; keys are then always strings, so sorting never fails.

    Args:
        obj: The value to encode, typically a result or config dict.
        indent: Pretty-print with this indent.
        sort_keys: Sort the keys of every object.

    Returns:
        The JSON text, without a trailing newline. NaN and infinities are written as
        ``NaN``, ``Infinity`` and ``-Infinity``.
    """
    if indent is None and not sort_keys:
        encoded = _ENCODER.encode(obj)
        if b"null" not in encoded or not _has_nonfinite(obj):
            return encoded
    text = json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=True)
    return text.encode("utf-8")


def _decode_line(line: bytes) -> Any:
    try:
        return _LINES_DECODER.decode(line)
    except msgspec.DecodeError:
        # NaN / Infinity literals, which msgspec rejects.
        return json.loads(line)


def decode_json_lines(data: bytes) -> list[dict[str, Any]]:
    """Decodes JSON lines (one object per line), as written to ``result.json``.

    Blank lines are skipped. A last line that is not terminated by a newline and does not
    parse is a write torn by a crash, and is dropped. ``NaN``, ``Infinity`` and
    ``-Infinity`` are read back as floats.

    Args:
        data: The file's bytes.

    Returns:
        One dict per line, in file order.

    Raises:
        StorageError: A line (other than a torn last one) is not valid JSON, or is valid
            JSON but not an object; the message names its 1-based line number.
    """
    try:
        rows = _LINES_DECODER.decode_lines(data)
    except msgspec.DecodeError:
        rows = None
    if rows is not None and all(isinstance(row, dict) for row in rows):
        return rows
    lines = data.split(b"\n")
    out: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = _decode_line(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: torn write
                break
            raise StorageError(f"line {number} of JSON lines is not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise StorageError(
                f"line {number} of JSON lines is a {type(row).__name__}, not an object"
            )
        out.append(row)
    return out
