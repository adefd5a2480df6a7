"""Search-space domains and samplers: the classes behind :mod:`atune.search.sample`.

A :class:`Domain` holds a hyperparameter's valid values (``lower``/``upper`` or
``categories``) and a :class:`Sampler` that says how to draw from them. Samplers are plain
descriptors that the domains interpret; search-algorithm adapters read them to translate a
space (``isinstance(domain.get_sampler(), Quantized)``, ``.q``, ...).

Sampling uses the numpy calls Ray Tune makes, so a seed draws the same numbers as there,
and returns plain Python ``float``/``int``. ``random_state`` may be an int seed (a fresh
``np.random.default_rng(seed)`` per call), an ``np.random.Generator``, an
``np.random.RandomState``, or None for numpy's global generator.

The ``check_*`` helpers validate arguments for the primitives and raise
:class:`~atune.errors.SearchSpaceError` naming the primitive and the offending values.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from atune._log import get_logger
from atune.errors import ConfigError, SearchSpaceError

__all__ = [
    "INF",
    "MISSING",
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
    "as_values",
    "check_bounds",
    "check_normal",
    "check_q",
    "warn_base",
]

_log = get_logger(__name__)

RandomState: TypeAlias = int | np.random.Generator | np.random.RandomState | None
"""What ``random_state`` arguments accept: a seed, a numpy generator, or None (global)."""

MISSING: Any = object()
_D = TypeVar("_D", bound="Domain")
INF = float("inf")


def warn_base(base: object) -> None:
    if base is not MISSING:
        warnings.warn(
            "the `base` argument is deprecated and ignored; remove it",
            DeprecationWarning,
            stacklevel=3,
        )


class _Rng:
    """One interface over ``Generator``, ``RandomState`` and numpy's global generator."""

    __slots__ = ("_rng",)

    def __init__(self, random_state: RandomState) -> None:
        self._rng: np.random.Generator | np.random.RandomState | None
        if random_state is None or isinstance(
            random_state, (np.random.Generator, np.random.RandomState)
        ):
            self._rng = random_state
        elif isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
            self._rng = np.random.default_rng(int(random_state))
        else:
            raise ConfigError(
                "random_state must be an int seed, a numpy Generator or RandomState, or None; "
                f"got {random_state!r}",
                value=random_state,
            )

    def uniform(self, low: float, high: float, size: int) -> npt.NDArray[np.float64]:
        rng = np.random if self._rng is None else self._rng
        return np.asarray(rng.uniform(low, high, size=size), dtype=np.float64)

    def normal(self, mean: float, sd: float, size: int) -> npt.NDArray[np.float64]:
        rng = np.random if self._rng is None else self._rng
        return np.asarray(rng.normal(mean, sd, size=size), dtype=np.float64)

    def integers(self, low: int, high: int, size: int) -> npt.NDArray[np.int64]:
        if isinstance(self._rng, np.random.Generator):
            return self._rng.integers(low, high, size=size)
        rng = np.random if self._rng is None else self._rng
        return np.asarray(rng.randint(low, high, size=size))

    def index(self, n: int, size: int) -> npt.NDArray[np.int64]:
        rng = np.random if self._rng is None else self._rng
        return np.asarray(rng.choice(np.arange(0, n), size=size))


# --------------------------------------------------------------------------- samplers


class Sampler:
    """How a domain draws values; samplers are plain descriptors that domains interpret."""

    def __str__(self) -> str:
        return type(self).__name__


class BaseSampler(Sampler):
    """The sampler of ``Function`` domains: call the function."""

    def __str__(self) -> str:
        return "Base"


class Uniform(Sampler):
    """Draw uniformly between the domain's bounds."""


class LogUniform(Sampler):
    """Draw uniformly in log space between the domain's bounds (which must be > 0).

    Args:
        base: Deprecated and ignored; passing it warns.
    """

    def __init__(self, base: object = MISSING) -> None:
        warn_base(base)


class Normal(Sampler):
    """Draw from a normal distribution.

    Args:
        mean: The distribution's mean; a finite number.
        sd: The standard deviation; must be > 0.

    Raises:
        SearchSpaceError: ``mean`` is not finite or ``sd`` is not > 0.
    """

    def __init__(self, mean: float = 0.0, sd: float = 1.0) -> None:
        check_normal("randn", mean, sd)
        self.mean = mean
        self.sd = sd


class Grid(Sampler):
    """Marks a domain whose values are all enumerated (grid search); it is never sampled."""


class Quantized(Sampler):
    """Round another sampler's draws to multiples of ``q``.

    Args:
        sampler: The sampler whose draws are quantized.
        q: The quantization step, > 0.
    """

    def __init__(self, sampler: Sampler, q: float) -> None:
        self.sampler = sampler
        self.q = q

    def get_sampler(self) -> Sampler:
        """Return the wrapped sampler."""
        return self.sampler

    def __str__(self) -> str:
        return f"Quantized({self.sampler}, q={self.q})"


# --------------------------------------------------------------------------- validation


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_normal(name: str, mean: Any, sd: Any) -> None:
    if not _is_real(mean) or not math.isfinite(mean):
        raise SearchSpaceError(f"{name}: mean must be a finite number, got mean={mean!r}")
    if not _is_real(sd) or not math.isfinite(sd) or not sd > 0:
        raise SearchSpaceError(f"{name}: sd must be > 0, got sd={sd!r}", value=sd)


def check_bounds(
    name: str, lower: Any, upper: Any, *, integer: bool = False, log: bool = False
) -> tuple[Any, Any]:
    """Validate ``lower``/``upper`` for primitive ``name``; return them (as ints if integer)."""
    for label, value in (("lower", lower), ("upper", upper)):
        if not _is_real(value):
            raise SearchSpaceError(
                f"{name}: {label} bound must be a real number, got {label}={value!r}", value=value
            )
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise SearchSpaceError(
            f"{name}: bounds must be finite, got lower={lower}, upper={upper}",
            value=(lower, upper),
        )
    if integer:
        for label, value in (("lower", lower), ("upper", upper)):
            if value != int(value):
                raise SearchSpaceError(
                    f"{name}: {label} bound must be an integer, got {label}={value}", value=value
                )
        lower, upper = int(lower), int(upper)
    if log and not lower > 0:
        raise SearchSpaceError(
            f"{name}: lower bound must be > 0, got lower={lower}, upper={upper}",
            value=(lower, upper),
        )
    if not lower < upper:
        raise SearchSpaceError(
            f"{name}: lower bound must be < upper bound, got lower={lower}, upper={upper}",
            value=(lower, upper),
        )
    return lower, upper


def check_q(name: str, q: Any, lower: Any, upper: Any, *, integer: bool) -> Any:
    """Validate quantization ``q`` against the (already valid) bounds; return ``q``."""
    if not _is_real(q) or not math.isfinite(q) or not q > 0:
        raise SearchSpaceError(f"{name}: q must be a number > 0, got q={q!r}", value=q)
    if integer:
        if q != int(q):
            raise SearchSpaceError(f"{name}: q must be an integer, got q={q}", value=q)
        q = int(q)
        first, last = -(-lower // q), upper // q
        if last < first:
            raise SearchSpaceError(
                f"{name}: there is no multiple of q={q} between lower={lower} and upper={upper}",
                value=q,
            )
        return q
    for label, bound in (("lower", lower), ("upper", upper)):
        if math.isfinite(bound) and not math.isclose(bound / q, round(bound / q)):
            raise SearchSpaceError(
                f"{name}: {label} bound {bound} is not divisible by q={q}", value=(bound, q)
            )
    return q


# --------------------------------------------------------------------------- domains


class Domain:
    """A hyperparameter's set of valid values and the way to draw from it.

    Subclasses: :class:`Float`, :class:`Integer`, :class:`Categorical`, :class:`Function`.
    Search-algorithm adapters read ``lower``/``upper``/``categories`` and
    ``get_sampler()`` to translate a domain into their own space.
    """

    sampler: Sampler | None = None

    def cast(self, value: Any) -> Any:
        """Convert a drawn value to the domain's Python type."""
        return value

    def set_sampler(self, sampler: Sampler, allow_override: bool = False) -> None:
        """Set how to draw values (in place; the builder methods return copies instead).

        Raises:
            SearchSpaceError: A sampler is already set and ``allow_override`` is False.
        """
        if self.sampler is not None and not allow_override:
            raise SearchSpaceError(
                f"{type(self).__name__} already has sampler {self.sampler}; "
                f"cannot also set {sampler}"
            )
        self.sampler = sampler

    def get_sampler(self) -> Sampler:
        """Return the sampler, or the domain's default one when none was chosen."""
        return self.sampler if self.sampler is not None else self._default_sampler()

    def sample(
        self,
        config: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        size: int = 1,
        random_state: RandomState = None,
    ) -> Any:
        """Draw ``size`` values.

        Args:
            config: The config resolved so far; only :class:`Function` domains use it (a
                list gives one config per draw).
            size: How many values to draw, >= 1.
            random_state: A seed, a numpy ``Generator``/``RandomState``, or None for numpy's
                global generator.

        Returns:
            One value when ``size == 1``, else a list of ``size`` values.

        Raises:
            SearchSpaceError: The domain is a grid, or cannot be sampled as configured.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"size must be an int >= 1, got size={size!r}", value=size)
        items = self._draw(self.get_sampler(), config, size, _Rng(random_state))
        return items[0] if size == 1 else items

    def is_grid(self) -> bool:
        """Whether this domain enumerates all its values (grid search)."""
        return isinstance(self.sampler, Grid)

    def is_function(self) -> bool:
        """Whether this domain calls a user function (``sample_from``)."""
        return False

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` lies in this domain."""
        raise NotImplementedError

    @property
    def domain_str(self) -> str:
        """A short human-readable description of the valid values."""
        return "(unknown)"

    def _default_sampler(self) -> Sampler:
        return Uniform()

    def _draw(self, sampler: Sampler, config: Any, size: int, rng: _Rng) -> list[Any]:
        raise NotImplementedError

    def _with(self: _D, sampler: Sampler) -> _D:
        new = copy.copy(self)
        new.sampler = sampler
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.domain_str}[{self.get_sampler()}]"


class Float(Domain):
    """Real numbers between ``lower`` and ``upper`` (None means unbounded on that side).

    Raises:
        SearchSpaceError: A bound is not a real number, or both are given and
            ``lower >= upper``.
    """

    def __init__(self, lower: float | None, upper: float | None) -> None:
        for label, value in (("lower", lower), ("upper", upper)):
            if value is not None and (not _is_real(value) or math.isnan(value)):
                raise SearchSpaceError(
                    f"Float: {label} bound must be a real number or None, got {value!r}"
                )
        self.lower: float = -INF if lower is None else lower
        self.upper: float = INF if upper is None else upper
        if lower is not None and upper is not None and not lower < upper:
            raise SearchSpaceError(
                f"Float: lower bound must be < upper bound, got lower={lower}, upper={upper}"
            )

    def cast(self, value: Any) -> float:
        """Return ``float(value)``."""
        return float(value)

    def uniform(self) -> Float:
        """Return a copy that draws uniformly; both bounds must be finite."""
        check_bounds("uniform", self.lower, self.upper)
        return self._with(Uniform())

    def loguniform(self, base: object = MISSING) -> Float:
        """Return a copy that draws log-uniformly; needs ``0 < lower < upper < inf``."""
        warn_base(base)
        check_bounds("loguniform", self.lower, self.upper, log=True)
        return self._with(LogUniform())

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> Float:
        """Return a copy that draws from ``N(mean, sd)``; the domain must be unbounded."""
        if math.isfinite(self.lower) or math.isfinite(self.upper):
            raise SearchSpaceError(
                f"randn: a normal domain cannot have bounds, got lower={self.lower}, "
                f"upper={self.upper}"
            )
        return self._with(Normal(mean, sd))

    def quantized(self, q: float) -> Float:
        """Return a copy whose draws are rounded to multiples of ``q`` (upper inclusive)."""
        inner = self.get_sampler()
        name = {LogUniform: "qloguniform", Normal: "qrandn"}.get(type(inner), "quniform")
        check_q(name, q, self.lower, self.upper, integer=False)
        return self._with(Quantized(inner, q))

    def is_valid(self, value: Any) -> bool:
        """Whether ``lower <= value <= upper``."""
        return bool(self.lower <= value <= self.upper)

    @property
    def domain_str(self) -> str:
        """``"(lower, upper)"``."""
        return f"({self.lower}, {self.upper})"

    def _draw(self, sampler: Sampler, config: Any, size: int, rng: _Rng) -> list[Any]:
        if isinstance(sampler, Quantized):
            values = np.asarray(self._draw(sampler.get_sampler(), config, size, rng))
            return [float(v) for v in np.round(np.divide(values, sampler.q)) * sampler.q]
        if isinstance(sampler, Normal):
            return [float(v) for v in rng.normal(sampler.mean, sampler.sd, size)]
        if isinstance(sampler, LogUniform):
            lower, upper = check_bounds("loguniform", self.lower, self.upper, log=True)
            logs = rng.uniform(math.log(lower), math.log(upper), size)
            return [float(v) for v in np.exp(logs)]
        if isinstance(sampler, Uniform):
            lower, upper = check_bounds("uniform", self.lower, self.upper)
            return [float(v) for v in rng.uniform(lower, upper, size)]
        raise SearchSpaceError(f"cannot sample Float with sampler {sampler}")


class Integer(Domain):
    """Integers from ``lower`` to ``upper`` (exclusive, except quantized with ``q > 1``).

    Raises:
        SearchSpaceError: A bound is not an integer, or ``lower >= upper``.
    """

    def __init__(self, lower: int, upper: int) -> None:
        self.lower, self.upper = check_bounds("Integer", lower, upper, integer=True)

    def cast(self, value: Any) -> int:
        """Return ``int(value)``."""
        return int(value)

    def uniform(self) -> Integer:
        """Return a copy that draws uniformly from ``[lower, upper)``."""
        return self._with(Uniform())

    def loguniform(self, base: object = MISSING) -> Integer:
        """Return a copy that draws log-uniformly from ``[lower, upper)``; needs lower > 0."""
        warn_base(base)
        check_bounds("lograndint", self.lower, self.upper, integer=True, log=True)
        return self._with(LogUniform())

    def quantized(self, q: int) -> Integer:
        """Return a copy that draws multiples of ``q`` (upper inclusive unless ``q == 1``)."""
        inner = self.get_sampler()
        name = "qlograndint" if isinstance(inner, LogUniform) else "qrandint"
        q = check_q(name, q, self.lower, self.upper, integer=True)
        return self._with(Quantized(inner, q))

    def is_valid(self, value: Any) -> bool:
        """Whether ``lower <= value <= upper``."""
        return bool(self.lower <= value <= self.upper)

    @property
    def domain_str(self) -> str:
        """``"(lower, upper)"``."""
        return f"({self.lower}, {self.upper})"

    def _draw(self, sampler: Sampler, config: Any, size: int, rng: _Rng) -> list[Any]:
        if isinstance(sampler, Quantized):
            q = int(sampler.q)
            # Draw an index on the grid of multiples of q, then scale it back up.
            first, last = -(-self.lower // q), self.upper // q
            stop = last if q == 1 else last + 1
            indices = self._draw_range(sampler.get_sampler(), first, stop, size, rng)
            return [int(i) * q for i in indices]
        return [int(i) for i in self._draw_range(sampler, self.lower, self.upper, size, rng)]

    @staticmethod
    def _draw_range(
        sampler: Sampler, lower: int, stop: int, size: int, rng: _Rng
    ) -> npt.NDArray[np.int64]:
        if isinstance(sampler, LogUniform):
            values = np.floor(np.exp(rng.uniform(math.log(lower), math.log(stop), size)))
            # exp(log(stop)) may round up to stop itself; keep the upper bound exclusive.
            return np.clip(values, lower, stop - 1).astype(np.int64)
        if isinstance(sampler, Uniform):
            return rng.integers(lower, stop, size)
        raise SearchSpaceError(f"cannot sample Integer with sampler {sampler}")


class Categorical(Domain):
    """One of a list of categories; a draw is the category object itself (no coercion).

    Raises:
        SearchSpaceError: ``categories`` is empty, a string, or not iterable.
    """

    def __init__(self, categories: Sequence[Any]) -> None:
        self.categories = as_values("choice", "categories", categories)

    def uniform(self) -> Categorical:
        """Return a copy that draws a category uniformly at random."""
        return self._with(Uniform())

    def grid(self) -> Categorical:
        """Return a copy that enumerates every category (grid search)."""
        return self._with(Grid())

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, index: int) -> Any:
        return self.categories[index]

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` is one of the categories."""
        return value in self.categories

    @property
    def domain_str(self) -> str:
        """The list of categories."""
        return f"{self.categories}"

    def _draw(self, sampler: Sampler, config: Any, size: int, rng: _Rng) -> list[Any]:
        if isinstance(sampler, Grid):
            raise SearchSpaceError("a grid domain is enumerated, not sampled")
        # Draw an index, not a category, so numpy never coerces the categories' types.
        return [self.categories[int(i)] for i in rng.index(len(self.categories), size)]


class Function(Domain):
    """A value computed by a user function, ``func()`` or ``func(config)``.

    ``config`` is the trial's config resolved so far (see ``BasicVariantGenerator``).
    The deprecated Ray form ``func(spec)`` reading ``spec.config.x`` still works: when the
    call with ``config`` raises ``AttributeError``/``KeyError`` the function is called again
    with an object whose ``.config`` is the config, and a warning is logged.

    Raises:
        SearchSpaceError: ``func`` is not callable, or cannot be called with 0 or 1
            arguments.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise SearchSpaceError(f"sample_from: func must be callable, got {func!r}", value=func)
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):  # builtins without a signature: call without config
            pass_config = False
        else:
            try:
                signature.bind({})
                pass_config = True
            except TypeError:
                try:
                    signature.bind()
                    pass_config = False
                except TypeError:
                    raise SearchSpaceError(
                        f"sample_from: func must be callable with 0 or 1 arguments, "
                        f"got {func!r} with signature {signature}",
                        value=func,
                    ) from None
        self.func = func
        self.pass_config = pass_config

    def is_function(self) -> bool:
        """Always True."""
        return True

    def is_valid(self, value: Any) -> bool:
        """Always True: the function defines its own values."""
        return True

    @property
    def domain_str(self) -> str:
        """``"<func>()"``."""
        return f"{self.func}()"

    def _default_sampler(self) -> Sampler:
        return BaseSampler()

    def _draw(self, sampler: Sampler, config: Any, size: int, rng: _Rng) -> list[Any]:
        if not self.pass_config:
            return [self.func() for _ in range(size)]
        configs = config if isinstance(config, list) else [config] * size
        return [self._call({} if c is None else c) for c in configs[:size]]

    def _call(self, config: Any) -> Any:
        try:
            return self.func(config)
        except (AttributeError, KeyError) as first:
            try:
                value = self.func(_LegacySpec(config))
            except SearchSpaceError:
                raise
            except Exception:
                raise first from None
            _log.warning(
                "sample_from functions that take a spec (spec.config.x) are deprecated; "
                "read the config directly (config['x'])",
                func=repr(self.func),
            )
            return value


class _LegacySpec:
    """The ``spec`` that deprecated ``sample_from(lambda spec: spec.config.x)`` reads."""

    def __init__(self, config: Any) -> None:
        self.config = config


def as_values(name: str, label: str, values: Iterable[Any]) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise SearchSpaceError(
            f"{name}: {label} must be a list of values, got {values!r}", value=values
        )
    items = list(values)
    if not items:
        raise SearchSpaceError(f"{name}: {label} must not be empty, got {values!r}", value=values)
    return items
