"""Turning an atune search space into a HyperOpt space, and points into HyperOpt values.

=========================================  ==============================================
atune domain                               HyperOpt expression (label = ``/``-joined path)
=========================================  ==============================================
``uniform(l, u)``                          ``hp.uniform(label, l, u)``
``quniform(l, u, q)``                      ``hp.quniform(label, l, u, q)``
``loguniform(l, u)``                       ``hp.loguniform(label, log(l), log(u))``
``qloguniform(l, u, q)``                   ``hp.qloguniform(label, log(l), log(u), q)``
``randn(m, s)`` / ``qrandn(m, s, q)``      ``hp.normal(label, m, s)`` / ``hp.qnormal(..., q)``
``randint(l, u)``                          ``hp.uniformint(label, l, u - 1)`` (upper exclusive)
``qrandint(l, u, q)``                      ``int(hp.quniform(label, a, b, q))``
``lograndint(l, u)``                       ``int(hp.qloguniform(label, log(l), log(u-1), 1))``
``qlograndint(l, u, q)``                   ``int(hp.qloguniform(label, log(a), log(b), q))``
``choice(cats)``                           ``hp.choice(label, cats)``, each category converted
``grid_search``                            ``ValueError`` naming the key
``sample_from``                            ``ValueError`` naming the key
=========================================  ==============================================

This is Ray Tune's table, with one correction: for the quantized integers ``a`` and ``b``
are the smallest and largest multiples of ``q`` in ``[l, u]`` (upper inclusive, as atune
and Ray Tune sample ``qrandint``), so that every value HyperOpt suggests lies in the
domain (Ray Tune passes ``l`` and ``u - 1``, and can suggest ``0`` for
``qrandint(1, 10, 5)``).

A category of a ``choice`` may be a dict or a list holding domains (a *conditional*
space): it is converted with labels under the choice's own (``"opt/lr"``, or
``"layers/1/0"`` for element 0 of category 1). Constants stay in the space as HyperOpt
literals, so a suggestion holds them as the very same objects.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

from hyperopt import hp
from hyperopt.pyll import Apply, Literal, as_apply, rec_eval, scope
from hyperopt.pyll.base import GarbageCollected

from atune._flatten import flatten_dict
from atune.errors import ConfigError
from atune.search._domain import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
)

__all__ = [
    "Converted",
    "choices_of",
    "convert_search_space",
    "evaluate",
    "has_domains",
    "point_to_vals",
]

_MAX_CANDIDATES = 4096


def has_domains(space: Any) -> bool:
    """Whether ``space`` holds an atune domain or a ``grid_search`` anywhere."""
    if isinstance(space, Domain):
        return True
    if isinstance(space, dict):
        return set(space) == {"grid_search"} or any(has_domains(v) for v in space.values())
    if isinstance(space, (list, tuple)):
        return any(has_domains(v) for v in space)
    return False


def _to_list(*items: Any) -> list[Any]:
    return list(items)


_to_list.__name__ = "atune_list"
scope.define_if_new(_to_list)


class Converted(NamedTuple):
    """A converted space and, for each HyperOpt label, the config key it sets.

    Attributes:
        space: The HyperOpt space (a dict of expressions and literals).
        paths: Label -> the ``/``-joined config key whose value the label decides.
    """

    space: dict[str, Any]
    paths: dict[str, str]


def convert_search_space(space: dict[str, Any]) -> Converted:
    """Convert ``space`` (atune domains, HyperOpt expressions, constants) to a HyperOpt space.

    HyperOpt expressions pass through unchanged (their labels are taken as config keys);
    constants become literals.

    Raises:
        ConfigError: a ``grid_search``, a ``sample_from`` or a domain with no HyperOpt
            counterpart; the message names its key.
    """
    converter = _Converter()
    out = {key: converter.node(value, str(key), str(key)) for key, value in space.items()}
    return Converted(out, converter.paths)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}/{key}" if prefix else str(key)


def _refuse_grid(label: str) -> None:
    raise ConfigError(
        f"grid_search at {label!r}: grid search parameters cannot be converted to a "
        "HyperOpt search space; use choice() or BasicVariantGenerator",
        value=label,
    )


class _Converter:
    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def label(self, label: str, path: str) -> str:
        """Record that ``label`` decides the config key ``path``."""
        self.paths[label] = path
        return label

    def taken(self, prefix: str) -> bool:
        """Whether a label ``prefix`` or under it exists already (another branch)."""
        return any(x == prefix or x.startswith(prefix + "/") for x in self.paths)

    def node(self, node: Any, label: str, path: str) -> Any:
        if isinstance(node, Apply):
            return node
        if isinstance(node, dict):
            if set(node) == {"grid_search"}:
                _refuse_grid(path)
            return {k: self.node(v, _join(label, k), _join(path, k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)) and has_domains(node):
            items = [self.node(v, _join(label, i), _join(path, i)) for i, v in enumerate(node)]
            return scope.atune_list(*items) if isinstance(node, list) else tuple(items)
        if isinstance(node, Domain):
            return self.domain(node, label, path)
        return Literal(node)

    def domain(self, domain: Domain, label: str, path: str) -> Any:
        if domain.is_grid():
            _refuse_grid(path)
        if isinstance(domain, Function):
            raise ConfigError(
                f"HyperOptSearch does not support sample_from at {path!r}; use a HyperOpt "
                "expression or a domain (uniform, choice, ...)",
                value=path,
            )
        if isinstance(domain, Categorical) and isinstance(domain.get_sampler(), Uniform):
            name = self.label(label, path)
            options = [self.category(v, name, i, path) for i, v in enumerate(domain.categories)]
            return hp.choice(name, options)
        return _expression(self.label(label, path), path, domain)

    def category(self, value: Any, choice: str, index: int, path: str) -> Any:
        """A dict category keeps the choice's label as its prefix (Ray), unless taken."""
        if isinstance(value, dict) and has_domains(value):
            out = {}
            for key, item in value.items():
                wanted = _join(choice, key)
                label = _join(f"{choice}/{index}", key) if self.taken(wanted) else wanted
                out[key] = self.node(item, label, _join(path, key))
            return out
        if isinstance(value, Domain) and not isinstance(value, Categorical):
            return _expression(self.label(f"{choice}/{index}", path), path, value)
        if has_domains(value):
            return self.node(value, f"{choice}/{index}", path)
        return Literal(value)


def _expression(label: str, path: str, domain: Domain) -> Any:
    if domain.is_grid():
        _refuse_grid(path)
    if isinstance(domain, Function):
        raise ConfigError(f"HyperOptSearch does not support sample_from at {path!r}", value=path)
    sampler = domain.get_sampler()
    q: Any = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.sampler
    if isinstance(domain, Float):
        if isinstance(sampler, LogUniform):
            low, high = math.log(domain.lower), math.log(domain.upper)
            return hp.qloguniform(label, low, high, q) if q else hp.loguniform(label, low, high)
        if isinstance(sampler, Uniform):
            lo, up = domain.lower, domain.upper
            return hp.quniform(label, lo, up, q) if q else hp.uniform(label, lo, up)
        if isinstance(sampler, Normal):
            mean, sd = sampler.mean, sampler.sd
            return hp.qnormal(label, mean, sd, q) if q else hp.normal(label, mean, sd)
    elif isinstance(domain, Integer):
        step = int(q) if q else 1
        if step == 1:  # randint, lograndint: upper exclusive
            if isinstance(sampler, LogUniform):
                low, high = math.log(domain.lower), math.log(domain.upper - 1)
                return scope.int(hp.qloguniform(label, low, high, 1))
            if isinstance(sampler, Uniform):
                return hp.uniformint(label, domain.lower, domain.upper - 1)
        else:  # qrandint, qlograndint: multiples of step in [lower, upper]
            first = -(-domain.lower // step) * step
            last = domain.upper // step * step
            if isinstance(sampler, LogUniform):
                low, high = math.log(first), math.log(last)
                return scope.int(hp.qloguniform(label, low, high, step))
            if isinstance(sampler, Uniform):
                return scope.int(hp.quniform(label, first, last, step))
    raise ConfigError(
        f"HyperOptSearch does not support the parameter {path!r} of type "
        f"{type(domain).__name__} with sampler {type(sampler).__name__}",
        value=path,
    )


# ------------------------------------------------------------------------------- points
def _walk(expr: Any) -> list[Any]:
    out, seen, stack = [], set(), [as_apply(expr)]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
            stack.extend(node.inputs())
    return out


def choices_of(expr: Any) -> dict[str, list[Any]]:
    """The ``hp.choice`` labels of a HyperOpt expression and their option nodes."""
    return {
        node.pos_args[0].arg["label"].obj: list(node.pos_args[1:])
        for node in _walk(expr)
        if node.name == "switch" and node.pos_args and node.pos_args[0].name == "hyperopt_param"
    }


def evaluate(expr: Any, vals: dict[str, Any]) -> Any:
    """``expr`` evaluated with ``vals`` for its labels; None if it needs a label not given."""
    memo = {
        node: vals.get(node.arg["label"].obj, GarbageCollected)
        for node in _walk(expr)
        if node.name == "hyperopt_param"
    }
    try:
        return rec_eval(as_apply(expr), memo=memo, print_node_on_error=False)
    except Exception:
        return None


def point_to_vals(
    point: dict[str, Any], expr: Any, paths: dict[str, str], where: str
) -> dict[str, Any]:
    """The HyperOpt values (``label -> value``, a choice as its index) that give ``point``.

    Every key the point names must come out of the space with the value the point gives
    it. A choice is found by its value where that is one of its constant options, else by
    trying each option. Labels that the chosen options leave unused are dropped, as
    HyperOpt leaves them out of its own suggestions.

    Args:
        point: A (nested) config, as in ``points_to_evaluate``.
        expr: The HyperOpt space.
        paths: Label -> config key (see :class:`Converted`); a label missing here is
            taken as its own config key.
        where: How to name the point in messages (``"points_to_evaluate[0]"``).

    Raises:
        ConfigError: no assignment of the space's parameters gives the point (a key the
            space lacks, a value not among a choice's options, a missing parameter).
    """
    flat = flatten_dict(point, flatten_list=True)
    choices = choices_of(expr)
    labels = sorted(
        {node.arg["label"].obj for node in _walk(expr) if node.name == "hyperopt_param"}
    )
    fixed: dict[str, Any] = {}
    open_choices: list[str] = []
    for label in labels:
        key = paths.get(label, label)
        if label in choices:
            index = _literal_index(choices[label], flat[key]) if key in flat else None
            if index is None:
                open_choices.append(label)
            else:
                fixed[label] = index
        elif key in flat:
            fixed[label] = flat[key]
    sizes = [range(len(choices[label])) for label in open_choices]
    if math.prod(len(s) for s in sizes) > _MAX_CANDIDATES:
        raise ConfigError(
            f"{where}: too many choices to try ({', '.join(open_choices)}); give each "
            "choice's value in the point",
            value=point,
        )
    for picks in itertools.product(*sizes):
        vals = {**fixed, **dict(zip(open_choices, picks, strict=True))}
        config = evaluate(expr, vals)
        if isinstance(config, dict) and _matches(flat, flatten_dict(config, flatten_list=True)):
            return _active(expr, vals)
    missing = sorted(
        {
            paths.get(label, label)
            for label in labels
            if label not in choices and paths.get(label, label) not in flat
        }
    )
    detail = f"it lacks {missing}, or " if missing else ""
    raise ConfigError(
        f"{where} = {point!r} cannot be expressed in the HyperOpt search space: {detail}a key "
        "is not in the space or a value is not one of a choice's options",
        value=point,
    )


def _literal_index(options: list[Any], value: Any) -> int | None:
    for i, option in enumerate(options):
        if option.name == "literal" and _same(option.obj, value):
            return i
    return None


def _active(expr: Any, vals: dict[str, Any]) -> dict[str, Any]:
    """``vals`` without the labels the evaluation does not need."""
    active = dict(vals)
    for label in list(vals):
        fewer = {k: v for k, v in active.items() if k != label}
        if evaluate(expr, fewer) is not None:
            active = fewer
    return active


def _matches(point: dict[str, Any], config: dict[str, Any]) -> bool:
    return all(key in config and _same(config[key], value) for key, value in point.items())


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # an array compared elementwise, or an object that refuses
        return False
