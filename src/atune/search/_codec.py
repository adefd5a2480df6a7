"""A JSON codec for ``param_space``, so that ``Tuner.restore`` never loads a pickle.

:func:`encode_space` turns a search space into JSON-able data and :func:`decode_space`
turns it back into an equivalent space: given the same seed and generator state, the
decoded space samples exactly the same configs as the original.

Encoding, value by value:

* ``None``, ``bool``, ``int``, ``str`` and finite ``float`` are kept as they are; NaN and
  infinities become ``{"__atune_value__": "float", "v": 1, "value": "nan"}`` (``"inf"``,
  ``"-inf"``), so the output is strict JSON (``json.dumps(..., allow_nan=False)``).
* ``list`` stays a list; ``tuple`` is tagged (``"tuple"``, ``"items"``) and comes back a
  tuple. ``dict`` with ``str`` keys stays a dict; one that has a key starting with
  ``"__atune_"`` is wrapped (``"dict"``, ``"items"``) so its keys are never read as tags.
* numpy scalars and arrays of bool, int, uint or float dtype are tagged (``"numpy"``,
  ``"ndarray"``) with their dtype and come back with it.
* ``Float``/``Integer``/``Categorical`` domains become
  ``{"__atune_domain__": "float", "v": 1, "lower": ..., "upper": ..., "sampler": ...}``
  (``"categories"`` for ``"categorical"``); samplers are ``{"kind": "uniform"}``,
  ``{"kind": "loguniform"}``, ``{"kind": "normal", "mean": ..., "sd": ...}``,
  ``{"kind": "quantized", "q": ..., "sampler": ...}``, ``{"kind": "grid"}`` or ``null``
  (none chosen). ``LogUniform`` stores no ``base``: atune ignores it when sampling.
* A grid marker ``{"grid_search": [...]}`` stays a plain dict.

Only exact types are encoded (an ``OrderedDict``, an ``IntEnum`` or a ``Float`` subclass is
not). Anything else is code or an object, not data: ``sample_from`` functions, callables,
arbitrary objects, dicts with non-``str`` keys. Given the installation's signing key
(:mod:`atune._signing`), such a value is stored *signed*: pickled with Ray's cloudpickle
(functions defined in ``__main__`` or a notebook by value, others by reference), as
``{"__atune_value__": "pickle", "v": 1, "type": ..., "data": <base64>, "sig": <HMAC>}``.
:func:`decode_space` loads it only when it is given the key and the HMAC verifies; an
unsigned or altered value is refused with a :class:`~atune.errors.StorageError` and never
unpickled, and without a key it decodes to an :class:`Unrestorable` marker (nothing is
loaded). A value that does not pickle either (a lock, an open file), or any such value
when no key is given, is recorded by its ``"/"``-joined path
and decodes to an :class:`Unrestorable` marker. A domain or grid leaf that *holds* such a
value (``choice([MyModel(), 1])``) is unrestorable as a whole, at the leaf's path, so a
marker only ever sits where dicts, lists and tuples lead. :func:`merge_space` fills the
markers from the ``param_space`` the user passes again to ``Tuner.restore``.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from atune._signing import sign, verify
from atune.errors import ConfigError, StorageError
from atune.search._domain import (
    Categorical,
    Domain,
    Float,
    Function,
    Grid,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Sampler,
    Uniform,
)

__all__ = ["Unrestorable", "decode_space", "encode_space", "has_unrestorable", "merge_space"]

_Path: TypeAlias = tuple[Any, ...]


class _Failures(list[tuple[str, str]]):
    """The (path, type name) of every value not stored as data; ``key`` signs pickles."""

    def __init__(self, key: bytes | None = None) -> None:
        super().__init__()
        self.key = key


_DOMAIN = "__atune_domain__"
_VALUE = "__atune_value__"
_RESERVED = "__atune_"
_VERSION = 1
_SPECIAL_FLOATS = ("nan", "inf", "-inf")
_NUMPY_KINDS = "biuf"


@dataclass(frozen=True, repr=False)
class Unrestorable:
    """Stands in for a ``param_space`` value that could not be stored as data.

    Attributes:
        path: The value's ``"/"``-joined path in the space (``"model/init"``).
        type_name: What the value was: ``"sample_from"``, a qualified class name, or a
            leaf kind such as ``"grid_search holding sample_from"``.
    """

    path: str
    type_name: str

    def __repr__(self) -> str:
        return (
            f"<Unrestorable {self.type_name} at {self.path!r}: pass param_space to "
            "Tuner.restore(..., param_space=...) to supply it>"
        )


# --------------------------------------------------------------------------- encoding


def encode_space(space: Any, *, key: bytes | None = None) -> tuple[Any, list[str]]:
    """Return the JSON-able form of ``space`` and the paths of values it could not store.

    Args:
        space: A ``param_space`` (usually a dict) or any value in one.
        key: The signing key; with it, values that are not data are stored pickled and
            signed (see the module docstring), without it they are not stored.

    Returns:
        ``(data, paths)``: ``data`` passes ``json.dumps(data, allow_nan=False)``; ``paths``
        lists, in walk order, the ``"/"``-joined paths that decode to :class:`Unrestorable`.
    """
    failures = _Failures(key)
    data = _encode(space, (), failures)
    return data, [path for path, _ in failures]


def _tag(kind: str, **fields: Any) -> dict[str, Any]:
    return {_VALUE: kind, "v": _VERSION, **fields}


def _type_name(value: object) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


_NOTHING = object()


def _fail(path: _Path, type_name: str, failures: _Failures, value: Any = _NOTHING) -> Any:
    """Store ``value`` pickled and signed when there is a key and it pickles, else a marker."""
    if failures.key is not None and value is not _NOTHING:
        import ray.cloudpickle

        try:
            blob: bytes = ray.cloudpickle.dumps(value)  # type: ignore[no-untyped-call]
        except Exception:  # not picklable either: stays unrestorable
            pass
        else:
            data = base64.b64encode(blob).decode("ascii")
            return _tag("pickle", type=type_name, data=data, sig=sign(failures.key, blob))
    failures.append((_fmt(path), type_name))
    return _tag("unrestorable", type=type_name)


def _encode(value: Any, path: _Path, failures: _Failures) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else _tag("float", value=repr(value))
    if kind is list:
        return [_encode(v, (*path, i), failures) for i, v in enumerate(value)]
    if kind is tuple:
        return _tag("tuple", items=[_encode(v, (*path, i), failures) for i, v in enumerate(value)])
    if kind is dict:
        return _encode_dict(value, path, failures)
    if isinstance(value, Domain):
        return _encode_domain(value, path, failures)
    if isinstance(value, (np.generic, np.ndarray)) and value.dtype.kind in _NUMPY_KINDS:
        data = _encode(value.tolist(), path, failures)
        if isinstance(value, np.generic):
            return _tag("numpy", dtype=value.dtype.str, value=data)
        return _tag("ndarray", dtype=value.dtype.str, shape=list(value.shape), data=data)
    return _fail(path, _type_name(value), failures, value)


def _encode_dict(value: dict[Any, Any], path: _Path, failures: _Failures) -> Any:
    if any(type(key) is not str for key in value):
        return _fail(path, "dict with non-str keys", failures, value)
    if len(value) == 1 and "grid_search" in value:
        return _atomic(
            path,
            "grid_search",
            value,
            failures,
            lambda inner: {"grid_search": _encode(value["grid_search"], path, inner)},
        )
    items = {key: _encode(v, (*path, key), failures) for key, v in value.items()}
    return _tag("dict", items=items) if any(k.startswith(_RESERVED) for k in value) else items


def _atomic(
    path: _Path, leaf: str, value: Any, failures: _Failures, encode: Callable[[_Failures], Any]
) -> Any:
    """Encode a domain or grid leaf whole: if any part of it fails, the leaf fails.

    A failed leaf is stored (pickled and signed) or marked as a whole, never in parts.
    """
    inner = _Failures()
    data = encode(inner)
    if inner:
        return _fail(path, f"{leaf} holding {inner[0][1]}", failures, value)
    return data


def _encode_domain(domain: Domain, path: _Path, failures: _Failures) -> Any:
    if isinstance(domain, Function):
        return _fail(path, "sample_from", failures, domain)
    kind = {Float: "float", Integer: "integer", Categorical: "categorical"}.get(type(domain))
    if kind is None:
        return _fail(path, _type_name(domain), failures, domain)

    def encode(inner: _Failures) -> dict[str, Any]:
        out: dict[str, Any] = {_DOMAIN: kind, "v": _VERSION}
        if isinstance(domain, Categorical):
            out["categories"] = _encode(list(domain.categories), path, inner)
        elif isinstance(domain, (Float, Integer)):
            out["lower"] = _encode(domain.lower, path, inner)
            out["upper"] = _encode(domain.upper, path, inner)
        out["sampler"] = _encode_sampler(domain.sampler, path, inner)
        return out

    return _atomic(path, kind, domain, failures, encode)


def _encode_sampler(sampler: Sampler | None, path: _Path, inner: _Failures) -> Any:
    if sampler is None:
        return None
    kind = type(sampler)
    if kind is Uniform:
        return {"kind": "uniform"}
    if kind is LogUniform:
        return {"kind": "loguniform"}
    if kind is Grid:
        return {"kind": "grid"}
    if type(sampler) is Normal:
        mean, sd = _encode(sampler.mean, path, inner), _encode(sampler.sd, path, inner)
        return {"kind": "normal", "mean": mean, "sd": sd}
    if type(sampler) is Quantized:
        q = _encode(sampler.q, path, inner)
        return {
            "kind": "quantized",
            "q": q,
            "sampler": _encode_sampler(sampler.sampler, path, inner),
        }
    return _fail(path, _type_name(sampler), inner)


# --------------------------------------------------------------------------- decoding


def decode_space(data: Any, *, key: Callable[[], bytes] | None = None) -> Any:
    """Rebuild the space that :func:`encode_space` encoded.

    Values that could not be encoded come back as :class:`Unrestorable` markers; see
    :func:`has_unrestorable` and :func:`merge_space`.

    Args:
        data: What :func:`encode_space` returned (after a trip through JSON).
        key: Returns the signing key; called at the first signed pickle. With it, a
            signed value whose HMAC verifies is unpickled; without it, every signed
            value decodes to an :class:`Unrestorable` marker and nothing is unpickled.

    Raises:
        StorageError: ``data`` is not something :func:`encode_space` wrote (an unknown
            tag, another format version, a missing field, an invalid domain), or a
            pickled value is unsigned or its signature does not verify (it is never
            unpickled); the message names the path.
    """
    return _decode(data, (), in_leaf=False, keys=_Keys(key))


class _Keys:
    """The signing key for one decode, read at the first signed pickle (or never)."""

    def __init__(self, source: Callable[[], bytes] | None) -> None:
        self.source = source
        self._key: bytes | None = None

    def get(self) -> bytes:
        assert self.source is not None
        if self._key is None:
            self._key = self.source()
        return self._key


_NO_KEYS = _Keys(None)


def _bad(path: _Path, why: str, data: Any) -> StorageError:
    where = _fmt(path) or "the top level"
    return StorageError(f"cannot decode the stored param_space at {where}: {why}: {data!r}")


def _decode(data: Any, path: _Path, *, in_leaf: bool, keys: _Keys = _NO_KEYS) -> Any:
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [_decode(v, (*path, i), in_leaf=in_leaf, keys=keys) for i, v in enumerate(data)]
    if kind is not dict:
        raise _bad(path, "not JSON data", data)
    if _DOMAIN in data:
        return _decode_domain(data, path)
    if _VALUE in data:
        return _decode_value(data, path, in_leaf=in_leaf, keys=keys)
    if len(data) == 1 and "grid_search" in data:
        return {"grid_search": _decode(data["grid_search"], path, in_leaf=True)}
    return {key: _decode(v, (*path, key), in_leaf=in_leaf, keys=keys) for key, v in data.items()}


def _field(data: dict[str, Any], key: str, path: _Path) -> Any:
    if data.get("v") != _VERSION:
        raise _bad(path, f"unsupported format version (this atune reads v={_VERSION})", data)
    if key not in data:
        raise _bad(path, f"missing field {key!r}", data)
    return data[key]


def _decode_value(data: dict[str, Any], path: _Path, *, in_leaf: bool, keys: _Keys) -> Any:
    tag = data[_VALUE]
    if tag == "float":
        text = _field(data, "value", path)
        if text not in _SPECIAL_FLOATS:
            raise _bad(path, "not a special float", data)
        return float(text)
    if tag == "tuple":
        items = _field(data, "items", path)
        if type(items) is not list:
            raise _bad(path, "tuple items must be a list", data)
        return tuple(
            _decode(v, (*path, i), in_leaf=in_leaf, keys=keys) for i, v in enumerate(items)
        )
    if tag == "dict":
        items = _field(data, "items", path)
        if type(items) is not dict:
            raise _bad(path, "dict items must be a dict", data)
        return {
            key: _decode(v, (*path, key), in_leaf=in_leaf, keys=keys) for key, v in items.items()
        }
    if tag in ("numpy", "ndarray"):
        return _decode_numpy(data, path)
    if tag == "pickle":
        if in_leaf:
            raise _bad(path, "a pickled value inside a domain or grid", data)
        return _unpickle(data, path, keys)
    if tag == "unrestorable":
        type_name = str(_field(data, "type", path))
        if in_leaf:
            raise _bad(path, "an unrestorable value inside a domain or grid", data)
        return Unrestorable(_fmt(path), type_name)
    raise _bad(path, f"unknown value tag {tag!r}", data)


def _unpickle(data: dict[str, Any], path: _Path, keys: _Keys) -> Any:
    """A signed pickled value: loaded only with the key and a valid HMAC (else refused)."""
    type_name = str(_field(data, "type", path))
    if keys.source is None:
        return Unrestorable(_fmt(path), type_name)
    try:
        blob = base64.b64decode(str(_field(data, "data", path)), validate=True)
    except ValueError as exc:
        raise _bad(path, f"invalid pickled data ({exc})", data) from exc
    signature = data.get("sig")
    if not isinstance(signature, str) or not verify(keys.get(), blob, signature):
        raise StorageError(
            f"refusing to unpickle the stored param_space value at {_fmt(path)!r} "
            f"({type_name}): it is not signed by this installation's key (atune never "
            "loads a pickle it did not write itself); pass the original space with "
            "Tuner.restore(..., param_space=...) to supply it"
        )
    return pickle.loads(blob)


def _decode_numpy(data: dict[str, Any], path: _Path) -> Any:
    try:
        dtype = np.dtype(_field(data, "dtype", path))
        if dtype.kind not in _NUMPY_KINDS:
            raise _bad(path, f"unsupported dtype {dtype}", data)
        if data[_VALUE] == "numpy":
            return dtype.type(_decode(_field(data, "value", path), path, in_leaf=True))
        values = _decode(_field(data, "data", path), path, in_leaf=True)
        return np.array(values, dtype=dtype).reshape(_field(data, "shape", path))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad(path, f"invalid numpy value ({exc})", data) from exc


def _decode_domain(data: dict[str, Any], path: _Path) -> Domain:
    kind = data[_DOMAIN]
    try:
        domain: Domain
        if kind == "categorical":
            categories = _decode(_field(data, "categories", path), path, in_leaf=True)
            if type(categories) is not list:
                raise _bad(path, "categories must be a list", data)
            domain = Categorical(categories)
        elif kind in ("float", "integer"):
            lower = _decode(_field(data, "lower", path), path, in_leaf=True)
            upper = _decode(_field(data, "upper", path), path, in_leaf=True)
            domain = Float(lower, upper) if kind == "float" else Integer(lower, upper)
        else:
            raise _bad(path, f"unknown domain tag {kind!r}", data)
        sampler = _decode_sampler(_field(data, "sampler", path), path)
        if sampler is not None:
            domain.set_sampler(sampler)
    except ConfigError as exc:  # the domain's own validation (SearchSpaceError)
        raise _bad(path, f"invalid domain ({exc})", data) from exc
    return domain


def _decode_sampler(data: Any, path: _Path) -> Sampler | None:
    if data is None:
        return None
    kind = data.get("kind") if type(data) is dict else None
    if kind == "uniform":
        return Uniform()
    if kind == "loguniform":
        return LogUniform()
    if kind == "grid":
        return Grid()
    try:
        if kind == "normal":
            mean = _decode(data["mean"], path, in_leaf=True)
            return Normal(mean, _decode(data["sd"], path, in_leaf=True))
        if kind == "quantized":
            inner = _decode_sampler(data["sampler"], path)
            if inner is None:
                raise _bad(path, "a quantized sampler needs an inner sampler", data)
            return Quantized(inner, _decode(data["q"], path, in_leaf=True))
    except KeyError as exc:
        raise _bad(path, f"sampler lacks field {exc}", data) from None
    raise _bad(path, "unknown sampler", data)


# --------------------------------------------------------------------------- merging


def has_unrestorable(decoded: Any) -> list[str]:
    """Return the paths of the :class:`Unrestorable` markers in ``decoded``, in walk order."""
    return [marker.path for marker in _markers(decoded)]


def merge_space(decoded: Any, provided: Any) -> Any:
    """Fill the :class:`Unrestorable` markers of ``decoded`` from ``provided``.

    ``provided`` is the ``param_space`` passed again to ``Tuner.restore``. Each marker is
    replaced by the value at its path in ``provided`` (the same object, not a copy); every
    other value is kept from ``decoded``, the space the experiment actually ran. As in Ray
    Tune, the two spaces must have the same keys: the dict keys along every dict-only path
    from the root are compared (values inside lists are matched by position, only to fill
    markers). With ``provided=None`` nothing is compared and ``decoded`` is returned if it
    has no markers.

    Returns:
        A space without markers: a new one (containers rebuilt, leaves shared), or
        ``decoded`` itself when ``provided`` is None.

    Raises:
        ConfigError: ``provided`` is not a dict or None; or some markers have no value at
            their path in ``provided``; or the keys differ. The message names every such
            path; ``.value`` is ``{"unrestorable": [...], "keys_differ": [...]}``.
    """
    if provided is not None and not isinstance(provided, dict):
        raise ConfigError(
            f"param_space passed to Tuner.restore must be a dict, got {provided!r}",
            value=provided,
        )
    missing: list[Unrestorable] = []
    differ: list[str] = []
    if provided is None:
        missing = _markers(decoded)
        merged = decoded
    else:
        merged = _merge(decoded, provided, (), True, missing, differ)
    differ.sort()
    if missing or differ:
        raise ConfigError(_merge_message(missing, differ), value=_merge_value(missing, differ))
    return merged


def _markers(node: Any) -> list[Unrestorable]:
    out: list[Unrestorable] = []
    if isinstance(node, Unrestorable):
        out.append(node)
    elif isinstance(node, dict):
        for value in node.values():
            out.extend(_markers(value))
    elif type(node) in (list, tuple):
        for value in node:
            out.extend(_markers(value))
    return out


def _merge(
    dec: Any,
    prov: Any,
    path: _Path,
    check_keys: bool,
    missing: list[Unrestorable],
    differ: list[str],
) -> Any:
    if isinstance(dec, Unrestorable):
        return prov
    if isinstance(dec, dict) and isinstance(prov, dict):
        if check_keys:
            differ.extend(
                f"{_fmt((*path, k))} (only in the stored space)" for k in dec if k not in prov
            )
            differ.extend(f"{_fmt((*path, k))} (only in param_space)" for k in prov if k not in dec)
        return {
            key: _merge(value, prov[key], (*path, key), check_keys, missing, differ)
            if key in prov
            else _unfilled(value, missing)
            for key, value in dec.items()
        }
    if check_keys and isinstance(dec, dict) != isinstance(prov, dict):
        side = "stored space" if isinstance(dec, dict) else "param_space"
        differ.append(f"{_fmt(path)} (a dict only in the {side})")
    if type(dec) in (list, tuple) and type(prov) in (list, tuple) and len(dec) == len(prov):
        items = [
            _merge(d, p, (*path, i), False, missing, differ)
            for i, (d, p) in enumerate(zip(dec, prov, strict=True))
        ]
        return items if type(dec) is list else tuple(items)
    return _unfilled(dec, missing)


def _unfilled(node: Any, missing: list[Unrestorable]) -> Any:
    missing.extend(_markers(node))
    return node


def _merge_message(missing: list[Unrestorable], differ: list[str]) -> str:
    parts: list[str] = []
    if missing:
        listed = ", ".join(f"{m.path} ({m.type_name})" for m in missing)
        parts.append(
            "these param_space values could not be stored with the experiment and "
            "must be passed again with Tuner.restore(..., param_space=...): " + listed
        )
    if differ:
        parts.append(
            "the param_space passed to Tuner.restore must have the same keys as the "
            "original one (pass the same param_space, only to refresh values that cannot "
            "be stored); keys differ at: " + ", ".join(differ)
        )
    return "; ".join(parts)


def _merge_value(missing: list[Unrestorable], differ: list[str]) -> dict[str, list[str]]:
    return {"unrestorable": [m.path for m in missing], "keys_differ": differ}


def _fmt(path: _Path) -> str:
    return "/".join(str(p) for p in path)
