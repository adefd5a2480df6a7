"""Resource dictionaries: validation, key normalisation and exact arithmetic.

A *resource dict* maps a resource name to an amount, as Ray spells them: ``"CPU"``,
``"GPU"``, ``"memory"`` (bytes) and any custom resource name. Everything in atune that
handles such dicts (:class:`~atune.execution.placement_groups.PlacementGroupFactory`, the
allocator) goes through the helpers here so that they agree on three things:

* **Names.** ``cpu`` and ``gpu`` are accepted as spellings of ``CPU`` and ``GPU``;
  ``memory`` and custom names are kept as written. A dict that spells one resource two
  ways (``{"cpu": 1, "CPU": 2}``) is ambiguous and rejected.
* **Values.** Amounts are finite, non-negative real numbers (``bool`` is not one). Bad
  values raise :class:`~atune.errors.ConfigError` naming the key and the value.
* **Arithmetic.** Amounts are compared and summed as integer *micro-units* (millionths),
  so ten requests of ``0.1`` CPU fit exactly in ``1.0`` CPU; floating-point sums would not.
  Ray itself accounts for fractional resources at a coarser granularity (1/10,000), so
  nothing Ray can express is lost.

This module is private; its public face is
:mod:`atune.execution.placement_groups`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from atune.errors import ConfigError

__all__ = [
    "UNITS_PER_RESOURCE",
    "format_resources",
    "from_units",
    "normalize_resources",
    "parse_resource_dict",
    "sum_resources",
    "to_units",
]

#: Integer micro-units per unit of any resource.
UNITS_PER_RESOURCE = 1_000_000

_ALIASES = {"cpu": "CPU", "gpu": "GPU"}


def _check_amount(key: str, value: object) -> float:
    """Return ``value`` as a float, or raise ConfigError naming ``key`` and ``value``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"resource {key!r} must be a number, got {value!r} of type {type(value).__name__}",
            value=value,
        )
    amount = float(value)
    if not math.isfinite(amount):
        raise ConfigError(f"resource {key!r} must be finite, got {value!r}", value=value)
    if amount < 0:
        raise ConfigError(f"resource {key!r} must not be negative, got {value!r}", value=value)
    return amount


def normalize_resources(
    resources: Mapping[str, Any], *, drop_zeros: bool = True
) -> dict[str, float]:
    """Validate a resource dict and return it with canonical names and float amounts.

    Args:
        resources: Resource name to amount. ``cpu``/``gpu`` become ``CPU``/``GPU``.
        drop_zeros: Leave out resources whose amount is zero (what a bundle wants: Ray
            treats a zero request as no request).

    Returns:
        A new dict; the input is not modified.

    Raises:
        ConfigError: A key is not a string, an amount is not a finite non-negative number,
            or one resource is spelled two ways.
    """
    if not isinstance(resources, Mapping):
        raise ConfigError(
            f"resources must be a dict of name to amount, got {resources!r}", value=resources
        )
    out: dict[str, float] = {}
    for raw_key, value in resources.items():
        if not isinstance(raw_key, str) or not raw_key:
            raise ConfigError(
                f"resource names must be non-empty strings, got {raw_key!r}", value=raw_key
            )
        key = _ALIASES.get(raw_key, raw_key)
        amount = _check_amount(raw_key, value)
        if key in out or (key != raw_key and key in resources):
            raise ConfigError(
                f"resource {key!r} is given twice (as {key!r} and {raw_key.lower()!r}) "
                f"in {dict(resources)!r}",
                value=dict(resources),
            )
        if amount == 0 and drop_zeros:
            continue
        out[key] = amount
    return out


def sum_resources(bundles: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Sum resource dicts key by key, exactly (in micro-units).

    Args:
        bundles: Normalised resource dicts.

    Returns:
        The sum as a float dict; a key appears if it appears in any input.
    """
    total: dict[str, int] = {}
    for bundle in bundles:
        for key, units in to_units(bundle).items():
            total[key] = total.get(key, 0) + units
    return from_units(total)


def to_units(resources: Mapping[str, float]) -> dict[str, int]:
    """Convert float amounts to integer micro-units (rounded to the nearest unit).

    Args:
        resources: A normalised resource dict.

    Returns:
        The same keys with integer amounts.
    """
    return {key: round(value * UNITS_PER_RESOURCE) for key, value in resources.items()}


def from_units(units: Mapping[str, int]) -> dict[str, float]:
    """Convert integer micro-units back to float amounts.

    Args:
        units: Resource name to micro-units.

    Returns:
        The same keys with float amounts.
    """
    return {key: value / UNITS_PER_RESOURCE for key, value in units.items()}


def format_resources(resources: Mapping[str, float]) -> str:
    """Render a resource dict for messages, with keys sorted (``CPU`` and ``GPU`` first).

    Args:
        resources: A resource dict.

    Returns:
        A ``repr``-style string such as ``{'CPU': 2.0, 'GPU': 1.0, 'memory': 1e9}``.
    """

    def order(key: str) -> tuple[int, str]:
        return ({"CPU": 0, "GPU": 1}.get(key, 2), key)

    return repr({key: resources[key] for key in sorted(resources, key=order)})


def parse_resource_dict(spec: Mapping[str, Any] | None) -> dict[str, float]:
    """Turn a Tune-style ``resources_per_trial`` dict into one bundle.

    Follows ``ray.tune.execution.placement_groups.resource_dict_to_pg_factory``:
    ``cpu``/``CPU``, ``gpu``/``GPU`` and ``memory`` (bytes) go into the bundle; if a
    non-empty ``custom_resources`` dict is given it supplies the custom resources and any
    other keys are ignored, otherwise every remaining key is a custom resource. ``None`` or
    an empty dict means ``{"CPU": 1}``.

    Args:
        spec: The resource dict, or None.

    Returns:
        The normalised bundle, zero amounts dropped (it may be empty).

    Raises:
        ConfigError: ``spec`` is not a dict, ``custom_resources`` is not a dict, or an
            amount is not a finite non-negative number (the message names it).
    """
    if not spec:
        return {"CPU": 1.0}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"resources must be a dict, got {spec!r}", value=spec)
    rest = dict(spec)
    head: dict[str, Any] = {}
    # ``cpu`` wins over ``CPU`` when both are given, as in Ray.
    for names, canonical in ((("cpu", "CPU"), "CPU"), (("gpu", "GPU"), "GPU")):
        given = [(name, rest.pop(name)) for name in names if name in rest]
        if given:
            head[canonical] = _check_amount(*given[0])
    if "memory" in rest:
        head["memory"] = _check_amount("memory", rest.pop("memory"))
    custom = rest.pop("custom_resources", None)
    if custom is not None and not isinstance(custom, Mapping):
        raise ConfigError(
            f"custom_resources must be a dict of name to amount, got {custom!r}", value=custom
        )
    bundle = dict(custom) if custom else rest
    return normalize_resources({**bundle, **head})
