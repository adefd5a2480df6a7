"""Resolving a ``param_space`` into trial configs: grid expansion, sampling, dependencies.

This is the machinery of :class:`BasicVariantGenerator`, Ray Tune's default search.

A ``param_space`` is a dict whose values nest dicts, lists and tuples arbitrarily. Its
*unresolved leaves* are :class:`~atune.search.sample.Domain` objects and grid markers
(``{"grid_search": [...]}``, a dict with that single key, or a ``Categorical(...).grid()``).
Every other leaf is a constant and is passed through untouched: the same object, not a
copy, so datasets, object refs and callables can ride along in the config.

One *sample* expands the cross product of all grids; the first grid (in sorted path order)
varies fastest. For each grid point the random domains are drawn afresh, unless
``constant_grid_search`` draws them once per sample. ``sample_from`` functions receive the
config resolved so far and are evaluated in repeated passes until everything is resolved;
a function that reads a value which is still unresolved is retried in the next pass, and a
pass that makes no progress means a dependency cycle (:class:`~atune.errors.SearchSpaceError`
naming the paths). Values that grid points or functions introduce (a grid value that is
itself a dict holding domains) are resolved recursively.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from atune._log import get_logger
from atune.errors import ConfigError, SearchSpaceError
from atune.search.sample import Categorical, Domain

__all__ = [
    "apply_point",
    "capture_rng",
    "copy_structure",
    "count_variants",
    "experiment_tag",
    "flatten_resolved_vars",
    "format_vars",
    "has_unresolved_values",
    "iter_variants",
    "nested_dict_paths",
    "parse_space",
    "restore_rng",
    "rng_state_to_json",
    "validate_num_samples",
    "validate_param_space",
]

_log = get_logger(__name__)

Path: TypeAlias = tuple[Any, ...]
"""A location in a config: dict keys and list indices from the root."""


# --------------------------------------------------------------------------- validation


def validate_param_space(param_space: object, *, num_samples: int = 1) -> None:
    """Check a Tuner's ``param_space`` and ``num_samples`` before anything runs.

    Args:
        param_space: Must be a dict, or None (no search space).
        num_samples: A positive int, or ``-1`` for "until stopped".

    Raises:
        ConfigError: ``param_space`` is not a dict (the message names its type and value),
            or ``num_samples`` is invalid.
        SearchSpaceError: A grid marker's values are empty or not a list.
    """
    validate_num_samples(num_samples)
    if param_space is None:
        return
    if not isinstance(param_space, dict):
        raise ConfigError(
            f"param_space must be a dict, got {type(param_space).__name__}: {param_space!r}",
            value=param_space,
        )
    parse_space(param_space)


def validate_num_samples(num_samples: object) -> None:
    """Check ``num_samples``: a positive int, or ``-1`` meaning until stopped.

    Raises:
        ConfigError: Anything else; the message names the value.
    """
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples == 0
        or num_samples < -1
    ):
        raise ConfigError(
            f"num_samples must be a positive int or -1 (run until stopped), got {num_samples!r}",
            value=num_samples,
        )


def has_unresolved_values(space: Mapping[str, Any]) -> bool:
    """Whether ``space`` holds any domain or grid marker."""
    domain_vars, grid_vars = parse_space(space)
    return bool(domain_vars or grid_vars)


# --------------------------------------------------------------------------- structure


def _is_grid_marker(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def _grid_values(value: Any, path: Path) -> list[Any] | None:
    """The values of a grid leaf, or None if ``value`` is not a grid."""
    if isinstance(value, Domain):
        return (
            list(value.categories) if value.is_grid() and isinstance(value, Categorical) else None
        )
    if not _is_grid_marker(value):
        return None
    values = value["grid_search"]
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise SearchSpaceError(
            f"grid_search at {_fmt(path)} must be a list of values, got {values!r}", value=values
        )
    values = list(values)
    if not values:
        raise SearchSpaceError(f"grid_search at {_fmt(path)} has no values", value=values)
    return values


def _children(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        yield from node.items()
    elif type(node) in (list, tuple):
        yield from enumerate(node)


def parse_space(
    space: Mapping[str, Any],
) -> tuple[list[tuple[Path, Domain]], list[tuple[Path, list[Any]]]]:
    """Find the unresolved leaves: random domains in walk order, grids in sorted order."""
    domain_vars: list[tuple[Path, Domain]] = []
    grid_vars: list[tuple[Path, list[Any]]] = []

    def walk(node: Any, path: Path) -> None:
        for key, value in _children(node):
            child = (*path, key)
            grid = _grid_values(value, child)
            if grid is not None:
                grid_vars.append((child, grid))
            elif isinstance(value, Domain):
                domain_vars.append((child, value))
            else:
                walk(value, child)

    walk(space, ())
    grid_vars.sort(key=lambda item: _path_key(item[0]))
    return domain_vars, grid_vars


def _path_key(path: Path) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def copy_structure(node: Any) -> Any:
    """Copy the dict/list/tuple skeleton of ``node``; leaves and grid markers are shared."""
    if isinstance(node, dict) and not _is_grid_marker(node):
        return {key: copy_structure(value) for key, value in node.items()}
    if type(node) is list:
        return [copy_structure(value) for value in node]
    if type(node) is tuple:
        return tuple(copy_structure(value) for value in node)
    return node


def _get(node: Any, path: Path) -> Any:
    for key in path:
        node = node[key]
    return node


def _assign(node: Any, path: Path, value: Any) -> Any:
    """Set ``path`` in ``node`` to ``value``; returns ``node``, rebuilt if it is a tuple."""
    key = path[0]
    new = value if len(path) == 1 else _assign(node[key], path[1:], value)
    if isinstance(node, tuple):
        return (*node[:key], new, *node[key + 1 :])
    node[key] = new
    return node


def _fmt(path: Path) -> str:
    return "/".join(str(p) for p in path)


# --------------------------------------------------------------------------- dependencies


@dataclass(frozen=True)
class _Pending:
    """Marks the SearchSpaceError a config view raises on reading an unresolved value."""

    path: Path


def _guard(value: Any, path: Path) -> Any:
    if isinstance(value, Domain) or _is_grid_marker(value):
        raise SearchSpaceError(f"{_fmt(path)} is read before it is resolved", value=_Pending(path))
    if isinstance(value, dict):
        return _ConfigView(value, path)
    if type(value) in (list, tuple):
        return _ListView(value, path)
    return value


class _ConfigView(dict):  # type: ignore[type-arg]
    """The config a ``sample_from`` function sees: a dict that refuses unresolved reads."""

    def __init__(self, node: dict[Any, Any], path: Path) -> None:
        super().__init__(node)
        self._path = path

    def __getitem__(self, key: Any) -> Any:
        return _guard(super().__getitem__(key), (*self._path, key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401

    def values(self) -> Any:
        return [self[key] for key in self]

    def items(self) -> Any:
        return [(key, self[key]) for key in self]

    def __getattr__(self, name: str) -> Any:  # Ray's deprecated ``spec.config.x`` form
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _ListView(list):  # type: ignore[type-arg]
    """A list in the config view; reading an unresolved element is refused."""

    def __init__(self, node: list[Any] | tuple[Any, ...], path: Path) -> None:
        super().__init__(node)
        self._path = path

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _guard(super().__getitem__(index), (*self._path, index % len(self)))

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


def _plain(value: Any) -> Any:
    """Turn views a function returned (``lambda c: c["model"]``) back into plain data."""
    if isinstance(value, _ConfigView):
        return {key: _plain(dict.__getitem__(value, key)) for key in dict.keys(value)}
    if isinstance(value, _ListView):
        return [_plain(v) for v in list.__iter__(value)]
    return value


def _resolve_domains(
    spec: dict[str, Any],
    domain_vars: list[tuple[Path, Domain]],
    rng: Any,
    *,
    allow_fail: bool,
) -> tuple[dict[Path, Any], bool]:
    """Draw every domain into ``spec`` (in place), in passes; return values and success."""
    resolved: dict[Path, Any] = {}
    pending = domain_vars
    while pending:
        deferred: list[tuple[Path, Domain]] = []
        for path, domain in pending:
            if not domain.is_function():
                value = domain.sample(random_state=rng)
            else:
                try:
                    value = _plain(domain.sample(_ConfigView(spec, ()), random_state=rng))
                except SearchSpaceError as exc:
                    if isinstance(exc.value, _Pending):
                        deferred.append((path, domain))
                        continue
                    raise
                except Exception as exc:
                    raise SearchSpaceError(
                        f"sample_from at {_fmt(path)} raised {exc!r}", value=_fmt(path)
                    ) from exc
            _assign(spec, path, value)
            resolved[path] = value
        if len(deferred) == len(pending):
            if allow_fail:
                return resolved, False
            paths = ", ".join(_fmt(path) for path, _ in deferred)
            raise SearchSpaceError(
                f"circular dependency between sample_from entries: {paths} each read a value "
                "that can never be resolved",
                value=[_fmt(path) for path, _ in deferred],
            )
        pending = deferred
    return resolved, True


# --------------------------------------------------------------------------- expansion


def iter_variants(
    space: Mapping[str, Any], *, constant_grid_search: bool = False, rng: Any = None
) -> Iterator[tuple[dict[Path, Any], dict[str, Any]]]:
    """Lazily yield one sample's variants: ``(resolved_vars, config)`` per grid point.

    Args:
        space: The param space (not modified).
        constant_grid_search: Draw the random domains once for all grid points.
        rng: A numpy ``Generator``/``RandomState``, or None for numpy's global generator.

    Yields:
        ``resolved_vars`` maps the path of every sampled or grid leaf to its value;
        ``config`` is a fresh resolved config.
    """
    return _expand(copy_structure(dict(space)), constant_grid_search, rng)


def _expand(
    spec: dict[str, Any], constant_grid_search: bool, rng: Any
) -> Iterator[tuple[dict[Path, Any], dict[str, Any]]]:
    domain_vars, grid_vars = parse_space(spec)
    if not domain_vars and not grid_vars:
        yield {}, spec
        return
    # As in Ray Tune, sample_from values are not "evaluated params": no tag entry.
    functions = {path for path, domain in domain_vars if domain.is_function()}
    constant: dict[Path, Any] = {}
    to_resolve, all_resolved = domain_vars, False
    if constant_grid_search:
        constant, all_resolved = _resolve_domains(spec, domain_vars, rng, allow_fail=True)
        to_resolve = [(path, d) for path, d in domain_vars if path not in constant]
    lists = [values for _, values in reversed(grid_vars)]
    for reversed_combo in itertools.product(*lists):  # the first grid varies fastest
        variant = copy_structure(spec) if grid_vars else spec
        for (path, _), value in zip(grid_vars, reversed(reversed_combo), strict=True):
            _assign(variant, path, copy_structure(value))
        head = dict(constant)
        if not all_resolved:
            head.update(_resolve_domains(variant, to_resolve, rng, allow_fail=False)[0])
        for path in functions:
            head.pop(path, None)
        for nested, config in _expand(variant, constant_grid_search, rng):
            resolved = dict(head)
            resolved.update((path, _get(config, path)) for path, _ in grid_vars)
            resolved.update(nested)
            yield resolved, config


def count_variants(space: Any) -> int:
    """How many configs one sample of ``space`` expands to (the product of grid sizes)."""
    grid = _grid_values(space, ()) if isinstance(space, (dict, Domain)) else None
    if grid is not None:
        return sum(count_variants(value) for value in grid)
    return math.prod(count_variants(value) for _, value in _children(space))


def apply_point(space: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``space`` with the values of ``point`` (a partial config) fixed.

    A point value replaces whatever is at its path: a domain, a grid (collapsing it), or a
    constant. A value outside a domain's range, or different from a constant, is kept and
    logged as a warning (as Ray Tune does).

    Raises:
        ConfigError: ``point`` is not a dict, or names a key that ``space`` lacks.
    """
    if not isinstance(point, dict):
        raise ConfigError(f"each of points_to_evaluate must be a dict, got {point!r}", value=point)
    return _apply(copy_structure(dict(space)), point, ())  # type: ignore[no-any-return]


def _apply(node: Any, value: Any, path: Path) -> Any:
    if isinstance(value, dict) and isinstance(node, dict) and not _is_grid_marker(node):
        for key, sub in value.items():
            if key not in node:
                raise ConfigError(
                    f"points_to_evaluate key {_fmt((*path, key))!r} is not in param_space",
                    value=_fmt((*path, key)),
                )
            node[key] = _apply(node[key], sub, (*path, key))
        return node
    if type(value) is list and type(node) in (list, tuple) and len(value) == len(node):
        items = [_apply(n, v, (*path, i)) for i, (n, v) in enumerate(zip(node, value, strict=True))]
        return type(node)(items)
    if isinstance(value, Domain) or _is_grid_marker(value):
        return node  # an unresolved value in a point leaves the space's own definition
    grid = _grid_values(node, path)
    domain = Categorical(grid) if grid is not None else node
    if isinstance(domain, Domain):
        try:
            valid = domain.is_valid(value)
        except Exception:
            valid = False
        if not valid:
            _log.warning(
                "pre-set value is outside the parameter's domain",
                path=_fmt(path),
                value=repr(value),
                domain=domain.domain_str,
            )
    elif domain is not value and _safe_ne(domain, value):
        _log.warning(
            "pre-set value differs from the constant in param_space",
            path=_fmt(path),
            value=repr(value),
            constant=repr(domain),
        )
    return copy_structure(value)


def _safe_ne(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:
        return True


# --------------------------------------------------------------------------- tags


_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")


def _clean(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return _INVALID.sub("_", str(value)).strip("_")


def format_vars(resolved_vars: Mapping[Path, Any]) -> str:
    """Format ``{path: value}`` as ``"leaf=value,..."`` sorted by path, safe for file names.

    Only each path's last component is shown; floats print with four decimals and runs of
    characters other than ``[a-zA-Z0-9_-]`` become ``_``.
    """
    items = sorted(resolved_vars.items(), key=lambda item: _path_key(item[0]))
    return ",".join(f"{_clean(path[-1])}={_clean(value)}" for path, value in items)


def experiment_tag(index: int, resolved_vars: Mapping[Path, Any]) -> str:
    """Return ``"{index}_{format_vars(resolved_vars)}"``, or ``"{index}"`` with no vars."""
    return f"{index}_{format_vars(resolved_vars)}" if resolved_vars else str(index)


def flatten_resolved_vars(resolved_vars: Mapping[Path, Any]) -> dict[str, Any]:
    """Key ``resolved_vars`` by ``"/"``-joined paths (Ray Tune's ``evaluated_params``)."""
    return {_fmt(path): value for path, value in resolved_vars.items()}


def nested_dict_paths(config: Mapping[Any, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Map the path of every non-dict leaf of nested dicts to its value (lists are leaves)."""
    out: dict[Path, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(nested_dict_paths(value, (*prefix, key)))
        else:
            path: Path = (*prefix, key)
            out[path] = value
    return out


# --------------------------------------------------------------------------- RNG state


def capture_rng(rng: np.random.Generator | np.random.RandomState | None) -> Any:
    """Snapshot the RNG's state (None for numpy's global generator, which is not ours)."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return {"kind": "Generator", "state": rng.bit_generator.state}
    return {"kind": "RandomState", "state": rng.get_state(legacy=False)}


def rng_state_to_json(snapshot: Any) -> Any:
    """Make a :func:`capture_rng` snapshot JSON-able (arrays become tagged lists)."""
    return _jsonable(snapshot)


def restore_rng(rng: np.random.Generator | np.random.RandomState | None, state: Any) -> None:
    """Put ``rng`` back into a state from :func:`rng_state_to_json`; a no-op for None.

    Raises:
        ConfigError: The state is for another kind of generator.
    """
    if rng is None or state is None:
        return
    kind = "Generator" if isinstance(rng, np.random.Generator) else "RandomState"
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise ConfigError(f"cannot restore a {kind} from RNG state {state!r}", value=state)
    if isinstance(rng, np.random.Generator):
        rng.bit_generator.state = _from_jsonable(state["state"])
    else:
        rng.set_state(_from_jsonable(state["state"]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {key: _from_jsonable(v) for key, v in value.items()}
    return value
