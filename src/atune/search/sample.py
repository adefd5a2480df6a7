"""Search-space domains and the sampling primitives (Ray Tune's ``ray.tune.search.sample``).

A *domain* says which values a hyperparameter may take and how to draw one:

=================================  ======================================================
primitive                          values drawn
=================================  ======================================================
``uniform(lower, upper)``          float in ``[lower, upper)``
``quniform(lower, upper, q)``      float multiple of ``q`` in ``[lower, upper]``
``loguniform(lower, upper)``       float, log-uniform in ``[lower, upper)``
``qloguniform(lower, upper, q)``   float multiple of ``q``, log-uniform, upper inclusive
``randn(mean, sd)``                float from a normal distribution
``qrandn(mean, sd, q)``            normal, rounded to a multiple of ``q``
``randint(lower, upper)``          int in ``[lower, upper)``
``lograndint(lower, upper)``       int, log-uniform in ``[lower, upper)``
``qrandint(lower, upper, q=1)``    int multiple of ``q`` in ``[lower, upper]``
                                   (``[lower, upper)`` when ``q == 1``)
``qlograndint(lower, upper, q)``   as ``qrandint``, the multiples drawn log-uniformly
``choice(categories)``             one of the categories, the original object
``sample_from(func)``              ``func()`` or ``func(config)``
``grid_search(values)``            every value, in order (a plain ``{"grid_search": ...}``)
=================================  ======================================================

Every primitive checks its arguments when it is called, so a malformed space fails at
``Tuner(...)`` and not in the middle of a run: bounds must be finite real numbers with
``lower < upper`` (integers for the integer domains), log domains need ``lower > 0``, ``q``
must be positive (for the float domains it must divide both bounds; an integer domain must
contain a multiple of it), ``sd > 0``, ``choice`` and ``grid_search`` need at least one
value, and ``sample_from`` a callable taking 0 or 1 arguments. A violation raises
:class:`~atune.errors.SearchSpaceError` (a ``ValueError``) whose message names the
primitive and the values, e.g. ``"loguniform: lower bound must be > 0, got lower=0,
upper=1"``.

Sampled numbers are plain Python ``float`` and ``int`` (never numpy scalars), so configs
serialize to JSON. The numpy calls are the ones Ray Tune makes, so a seed draws the same
numbers as it would there. ``random_state`` may be an int seed (a fresh
``np.random.default_rng(seed)`` per call), an ``np.random.Generator``, an
``np.random.RandomState`` or None, which uses numpy's global generator, so that
``np.random.seed(...)`` makes sampling reproducible.

Domains are immutable in use: the builder methods (``uniform()``, ``quantized(q)``, ...)
return a modified copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from atune.search._domain import (
    INF,
    MISSING,
    BaseSampler,
    Categorical,
    Domain,
    Float,
    Function,
    Grid,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    RandomState,
    Sampler,
    Uniform,
    as_values,
    check_bounds,
    check_normal,
    check_q,
    warn_base,
)

__all__ = [
    "BaseSampler",
    "Categorical",
    "Domain",
    "Float",
    "Function",
    "Grid",
    "Integer",
    "LogUniform",
    "Normal",
    "Quantized",
    "RandomState",
    "Sampler",
    "Uniform",
    "choice",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
]


def uniform(lower: float, upper: float) -> Float:
    """Sample a float uniformly from ``[lower, upper)`` (like ``np.random.uniform``).

    Raises:
        SearchSpaceError: A bound is not finite, or ``lower >= upper``.
    """
    check_bounds("uniform", lower, upper)
    return Float(lower, upper).uniform()


def quniform(lower: float, upper: float, q: float) -> Float:
    """Sample a float uniformly and round it to a multiple of ``q``; upper is inclusive.

    Raises:
        SearchSpaceError: Bad bounds, ``q <= 0``, or a bound not divisible by ``q``.
    """
    check_bounds("quniform", lower, upper)
    check_q("quniform", q, lower, upper, integer=False)
    return Float(lower, upper).uniform().quantized(q)


def loguniform(lower: float, upper: float, base: object = MISSING) -> Float:
    """Sample a float log-uniformly from ``[lower, upper)``, e.g. ``loguniform(1e-4, 1e-1)``.

    Args:
        lower: The lower bound, > 0.
        upper: The upper bound, finite and > ``lower``.
        base: Deprecated and ignored; passing it warns.

    Raises:
        SearchSpaceError: ``lower <= 0``, a bound is not finite, or ``lower >= upper``.
    """
    warn_base(base)
    check_bounds("loguniform", lower, upper, log=True)
    return Float(lower, upper).loguniform()


def qloguniform(lower: float, upper: float, q: float, base: object = MISSING) -> Float:
    """Sample a float log-uniformly and round it to a multiple of ``q``; upper is inclusive.

    Raises:
        SearchSpaceError: As for :func:`loguniform`, or ``q`` does not divide the bounds.
    """
    warn_base(base)
    check_bounds("qloguniform", lower, upper, log=True)
    check_q("qloguniform", q, lower, upper, integer=False)
    return Float(lower, upper).loguniform().quantized(q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """Sample a float from a normal distribution ``N(mean, sd)``.

    Raises:
        SearchSpaceError: ``sd <= 0`` or ``mean`` is not finite.
    """
    return Float(None, None).normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """Sample from ``N(mean, sd)`` and round to a multiple of ``q``.

    Raises:
        SearchSpaceError: ``sd <= 0`` or ``q <= 0``.
    """
    check_normal("qrandn", mean, sd)
    check_q("qrandn", q, -INF, INF, integer=False)
    return Float(None, None).normal(mean, sd).quantized(q)


def randint(lower: int, upper: int) -> Integer:
    """Sample an int uniformly from ``[lower, upper)``: ``upper`` is exclusive.

    Raises:
        SearchSpaceError: A bound is not an integer, or ``lower >= upper``.
    """
    check_bounds("randint", lower, upper, integer=True)
    return Integer(lower, upper).uniform()


def lograndint(lower: int, upper: int, base: object = MISSING) -> Integer:
    """Sample an int log-uniformly from ``[lower, upper)``: ``upper`` is exclusive.

    Raises:
        SearchSpaceError: ``lower <= 0``, a bound is not an integer, or ``lower >= upper``.
    """
    warn_base(base)
    check_bounds("lograndint", lower, upper, integer=True, log=True)
    return Integer(lower, upper).loguniform()


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """Sample a multiple of ``q`` uniformly from ``[lower, upper]``.

    ``upper`` is inclusive, except when ``q == 1`` (then this is :func:`randint`).

    Raises:
        SearchSpaceError: Bad bounds, ``q`` not a positive integer, or no multiple of ``q``
            in the range.
    """
    lower, upper = check_bounds("qrandint", lower, upper, integer=True)
    check_q("qrandint", q, lower, upper, integer=True)
    return Integer(lower, upper).uniform().quantized(q)


def qlograndint(lower: int, upper: int, q: int, base: object = MISSING) -> Integer:
    """Sample a multiple of ``q`` from ``[lower, upper]``, log-uniformly over the multiples.

    ``upper`` is inclusive, except when ``q == 1``.

    Raises:
        SearchSpaceError: As for :func:`qrandint`, or ``lower <= 0``.
    """
    warn_base(base)
    lower, upper = check_bounds("qlograndint", lower, upper, integer=True, log=True)
    check_q("qlograndint", q, lower, upper, integer=True)
    return Integer(lower, upper).loguniform().quantized(q)


def choice(categories: Sequence[Any]) -> Categorical:
    """Sample one of ``categories`` uniformly; the value is the original object.

    Raises:
        SearchSpaceError: ``categories`` is empty, a string, or not iterable.
    """
    return Categorical(categories).uniform()


def sample_from(func: Callable[..., Any]) -> Function:
    """Compute a value with ``func()`` or ``func(config)``.

    ``config`` holds the values already resolved for the trial, so one parameter can
    depend on another: ``sample_from(lambda config: config["a"] * 2)``. Dependencies
    between ``sample_from`` entries are resolved in repeated passes; a cycle raises
    :class:`~atune.errors.SearchSpaceError`.

    Raises:
        SearchSpaceError: ``func`` is not callable with 0 or 1 arguments.
    """
    return Function(func)


def grid_search(values: Iterable[Any]) -> dict[str, list[Any]]:
    """Search every value: returns the marker ``{"grid_search": [...]}``.

    Several grids combine as a cross product, and ``num_samples`` repeats the whole grid.

    Raises:
        SearchSpaceError: ``values`` is empty, a string, or not iterable.
    """
    return {"grid_search": as_values("grid_search", "values", values)}
