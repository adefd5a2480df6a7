"""Turning an atune search space into Optuna distributions (``OptunaSearch``'s table).

=========================================  ==============================================
atune domain                               Optuna distribution
=========================================  ==============================================
``uniform(l, u)``                          ``FloatDistribution(l, u)``
``quniform(l, u, q)``                      ``FloatDistribution(l, u, step=q)``
``loguniform(l, u)``, ``qloguniform``      ``FloatDistribution(l, u, log=True)`` (q dropped)
``randint(l, u)``                          ``IntDistribution(l, u - 1)`` (upper exclusive)
``qrandint(l, u, q)``                      ``IntDistribution(l, u, step=q)`` (inclusive)
``lograndint(l, u)``, ``qlograndint``      ``IntDistribution(l, u - 1, log=True)``
``choice(cats)``                           ``CategoricalDistribution(cats)``
``grid_search``                            ``ValueError`` naming the key
``randn``, ``sample_from``                 ``ValueError`` naming the key
=========================================  ==============================================

This is Ray Tune's table. Nested dicts are flattened with ``/``; constants are left out
(the search generator merges them back from ``param_space``).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from atune.errors import ConfigError
from atune.search._domain import (
    Categorical,
    Domain,
    Float,
    Integer,
    LogUniform,
    Quantized,
    Uniform,
)

__all__ = ["convert_search_space", "find_grid"]


def find_grid(space: Any, prefix: str = "") -> str | None:
    """The ``/``-joined key of the first ``grid_search`` in ``space``, or None."""
    if isinstance(space, dict):
        if set(space) == {"grid_search"}:
            return prefix or "<root>"
        for key, value in space.items():
            found = find_grid(value, f"{prefix}/{key}" if prefix else str(key))
            if found is not None:
                return found
    elif isinstance(space, Domain) and space.is_grid():
        return prefix or "<root>"
    return None


def convert_search_space(space: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Convert ``space`` (atune domains, nested dicts, constants) to Optuna distributions.

    Raises:
        ConfigError: a ``grid_search`` (which Optuna cannot express) or a domain with no
            Optuna counterpart; the message names the key.
    """
    grid = find_grid(space)
    if grid is not None:
        raise ConfigError(
            f"grid_search at {grid!r}: grid search parameters cannot be converted to an "
            "Optuna search space; use choice() or BasicVariantGenerator",
            value=grid,
        )
    out: dict[str, BaseDistribution] = {}
    _walk(space, "", out)
    return out


def _walk(node: Any, prefix: str, out: dict[str, BaseDistribution]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _walk(value, f"{prefix}/{key}" if prefix else str(key), out)
    elif isinstance(node, BaseDistribution):
        out[prefix] = node
    elif isinstance(node, Domain):
        out[prefix] = _distribution(prefix, node)


def _distribution(key: str, domain: Domain) -> BaseDistribution:
    sampler = domain.get_sampler()
    quantum: Any = None
    if isinstance(sampler, Quantized):
        quantum, sampler = sampler.q, sampler.sampler
    if isinstance(domain, Float):
        if isinstance(sampler, LogUniform):
            return FloatDistribution(domain.lower, domain.upper, log=True)
        if isinstance(sampler, Uniform):
            return FloatDistribution(domain.lower, domain.upper, step=quantum)
    elif isinstance(domain, Integer):
        inclusive = bool(quantum) and quantum != 1  # as atune samples: see Integer
        if isinstance(sampler, LogUniform):
            upper = domain.upper if inclusive else domain.upper - 1
            return IntDistribution(domain.lower, upper, log=True, step=1)
        if isinstance(sampler, Uniform):
            if inclusive:
                return IntDistribution(domain.lower, domain.upper, step=int(quantum))
            return IntDistribution(domain.lower, domain.upper - 1)
    elif isinstance(domain, Categorical) and isinstance(sampler, Uniform):
        return CategoricalDistribution(list(domain.categories))
    raise ConfigError(
        f"OptunaSearch does not support the parameter {key!r} of type "
        f"{type(domain).__name__} with sampler {type(sampler).__name__}",
        value=key,
    )
