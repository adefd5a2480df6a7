"""PBT's *explore* step: mutation specs, checked, sampled and perturbed with a seeded RNG.

A mutation spec (``hyperparam_mutations``) maps each key to one of:

* a ``list`` or ``tuple`` of values (categorical: perturbing moves to a neighbour),
* a search-space domain (``tune.uniform``, ``tune.loguniform``, ``tune.randint``,
  ``tune.choice``, ...; not ``tune.sample_from``): perturbing multiplies,
* a callable of no arguments that returns a value (perturbing multiplies),
* a ``dict`` of such specs (nested keys).

:func:`explore` is Ray Tune's ``_explore`` rule exactly (same draws in the same order),
but every draw comes from the ``random.Random`` it is given, and with ``clip=True``
perturbed values of ``Float``/``Integer`` domains are kept inside their bounds (and
``Categorical`` domains move to a neighbouring category instead of being multiplied).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

from atune.search._domain import Categorical, Domain, Float, Function, Integer, Quantized

__all__ = [
    "check_mutations",
    "clip_to_domain",
    "explore",
    "fill_config",
    "make_experiment_tag",
    "mutated_params",
]


def check_mutations(mutations: Any, name: str = "hyperparam_mutations") -> None:
    """Refuse a mutation spec of the wrong type.

    Raises:
        TypeError: ``mutations`` is not a dict, or a value is not a list, tuple, dict,
            domain or callable; the message names the key and the value.
        ValueError: a value is ``tune.sample_from(...)``, a ``grid_search``, or an empty
            list/tuple.
    """
    if not isinstance(mutations, Mapping):
        raise TypeError(f"{name} must be a dict, got {mutations!r} ({type(mutations).__name__})")
    for key, value in mutations.items():
        where = f"{name}[{key!r}]"
        if isinstance(value, Function):
            raise ValueError(
                f"{where}: tune.sample_from(...) is not supported as a mutation (it cannot be "
                "perturbed); use tune.uniform, tune.loguniform, tune.choice, a list or a "
                f"function of no arguments, got {value!r}"
            )
        if isinstance(value, Domain) and value.is_grid():
            raise ValueError(f"{where}: a grid_search cannot be a mutation, got {value!r}")
        if isinstance(value, Mapping):
            if "grid_search" in value:
                raise ValueError(f"{where}: a grid_search cannot be a mutation, got {value!r}")
            check_mutations(value, where)
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{where}: a list of values must not be empty, got {value!r}")
        elif not isinstance(value, Domain) and not callable(value):
            raise TypeError(
                f"{where} must be a list, tuple, dict, search-space domain (tune.uniform, "
                f"...) or a function of no arguments, got {value!r} ({type(value).__name__})"
            )


def _seed(rng: random.Random) -> int:
    return rng.getrandbits(63)


def _sample(spec: Any, rng: random.Random) -> Any:
    if isinstance(spec, Domain):
        return spec.sample(random_state=_seed(rng))
    return spec()


def fill_config(
    config: dict[str, Any], mutations: Mapping[str, Any], rng: random.Random
) -> dict[str, Any]:
    """Sample every key of ``mutations`` missing from ``config`` into it (in place).

    A list/tuple gives ``rng.choice``, a domain a seeded draw, a callable its return value,
    a dict recurses. Returns what was filled in (nested as ``config``).
    """
    filled: dict[str, Any] = {}
    for key, spec in mutations.items():
        if isinstance(spec, Mapping):
            inner = config.setdefault(key, {})
            if isinstance(inner, dict):
                sub = fill_config(inner, spec, rng)
                if sub:
                    filled[key] = sub
            continue
        if key in config:
            continue
        if isinstance(spec, (list, tuple)):
            config[key] = rng.choice(list(spec))
        else:
            config[key] = _sample(spec, rng)
        filled[key] = config[key]
    return filled


def clip_to_domain(domain: Domain, value: Any) -> Any:
    """``value`` moved to the nearest valid value of a ``Float``/``Integer`` domain.

    Float domains clamp to ``[lower, upper]``; Integer domains to ``[lower, upper - 1]``
    (``upper`` is exclusive, except for a quantized domain with ``q > 1``). A quantized
    domain rounds to the nearest multiple of ``q`` inside the bounds. Other domains and
    non-numeric values are returned unchanged.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        return value
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    if isinstance(domain, Float):
        lower, upper = domain.lower, domain.upper
        clipped = min(max(float(value), lower), upper)
        if q is not None:
            clipped = round(clipped / q) * q
            if clipped > upper:
                clipped -= q
            if clipped < lower:
                clipped += q
        return type(value)(clipped) if isinstance(value, float) else clipped
    if isinstance(domain, Integer):
        lower = domain.lower
        upper = domain.upper if q is not None and q > 1 else domain.upper - 1
        clipped_int = min(max(round(value), lower), upper)
        if q is not None and q > 1:
            step = int(q)
            clipped_int = round(clipped_int / step) * step
            if clipped_int > upper:
                clipped_int -= step
            if clipped_int < lower:
                clipped_int += step
        return clipped_int if isinstance(value, int) else float(clipped_int)
    return value


def _neighbour(
    values: Sequence[Any], current: Any, resample_probability: float, rng: random.Random
) -> tuple[Any, str]:
    """Ray Tune's list rule: resample, or shift one place left/right (clamped)."""
    if rng.random() < resample_probability or current not in values:
        return rng.choice(list(values)), "resample"
    shift = rng.choice([-1, 1])
    old = list(values).index(current)
    new = min(max(old + shift, 0), len(values) - 1)
    side = "left" if shift == -1 else "right"
    return values[new], f"shift {side}{' (noop)' if old == new else ''}"


def explore(
    config: dict[str, Any],
    mutations: Mapping[str, Any],
    *,
    rng: random.Random,
    resample_probability: float,
    perturbation_factors: Sequence[float],
    clip: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A perturbed copy of ``config`` and what was done to each key.

    For each key of ``mutations`` (draws in this order, from ``rng``):

    * list/tuple (or, with ``clip``, a ``Categorical`` domain): with probability
      ``resample_probability``, or when the current value is not among the values, a
      uniform choice; else a shift of its index by -1 or +1, clamped to the ends.
    * domain/callable: with probability ``resample_probability`` a fresh sample; else the
      value times a factor chosen from ``perturbation_factors``; with ``clip`` the result is
      kept inside the domain (:func:`clip_to_domain`). A ``bool`` stays a bool and an
      ``int`` is rounded back to an int (as in Ray Tune). A key missing from ``config`` is
      sampled (Ray Tune raises ``KeyError``).
    * dict: recurse into the nested config.

    Returns:
        ``(new_config, operations)``: ``operations`` maps each key to ``"resample"``,
        ``"* <factor>"`` or ``"shift left|right[ (noop)]"`` (nested for dicts).
    """
    new_config = copy.deepcopy(config)
    operations: dict[str, Any] = {}
    for key, spec in mutations.items():
        if isinstance(spec, Mapping):
            inner, ops = explore(
                config.get(key, {}),
                spec,
                rng=rng,
                resample_probability=resample_probability,
                perturbation_factors=perturbation_factors,
                clip=clip,
            )
            new_config[key] = inner
            operations[key] = ops
            continue
        current = config.get(key)
        if isinstance(spec, (list, tuple)):
            new_config[key], operations[key] = _neighbour(spec, current, resample_probability, rng)
            continue
        if clip and isinstance(spec, Categorical):
            values = spec.categories
            new_config[key], operations[key] = _neighbour(
                values, current, resample_probability, rng
            )
            continue
        if key not in config or rng.random() < resample_probability:
            value = _sample(spec, rng)
            operations[key] = "resample"
        else:
            factor = rng.choice(list(perturbation_factors))
            value = current * factor  # type: ignore[operator]  # a number by now
            operations[key] = f"* {factor}"
        if clip and isinstance(spec, Domain):
            value = clip_to_domain(spec, value)
        if isinstance(current, bool):
            value = bool(value)
        elif isinstance(current, int):
            value = int(round(value))  # noqa: RUF046 (a numpy float rounds to a float)
        new_config[key] = value
    return new_config, operations


def mutated_params(config: Mapping[str, Any], mutations: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys of ``config`` that ``mutations`` names (nested), for logs and tags."""
    out: dict[str, Any] = {}
    for key, spec in mutations.items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(spec, Mapping) and isinstance(value, Mapping):
            out[key] = mutated_params(value, spec)
        else:
            out[key] = value
    return out


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _flat_items(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_flat_items(value, f"{name}/"))
        else:
            items.append((name, value))
    return items


def make_experiment_tag(
    orig_tag: str, config: Mapping[str, Any], mutations: Mapping[str, Any]
) -> str:
    """``"<orig_tag>@perturbed[key=value,...]"`` over the mutated keys (Ray Tune's form)."""
    params = _flat_items(mutated_params(config, mutations))
    return f"{orig_tag}@perturbed[{','.join(f'{k}={_format(v)}' for k, v in params)}]"


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool) that is not NaN."""
    return not isinstance(value, bool) and isinstance(value, Real) and not math.isnan(value)


ExploreFn = Callable[[dict[str, Any]], dict[str, Any]]
