"""Per-trial resource requests: :class:`PlacementGroupFactory`.

Ray Tune's import path ``ray.tune.execution.placement_groups`` maps to this module, so
``from atune.execution.placement_groups import PlacementGroupFactory`` ports unchanged.

A factory is a list of *bundles* (resource dicts) and a placement *strategy*. The first
bundle, the *head*, is what the trial's own actor uses; any further bundles are reserved
for workers the trial starts itself. The trial starts only when every bundle is reserved.

Differences from Ray Tune, all of them earlier or clearer errors:

* Bad input raises :class:`~atune.errors.ConfigError` (a ``ValueError``) at construction:
  an unknown strategy, a negative or non-numeric amount, an empty bundle other than the
  head. Ray checks the strategy and empty worker bundles only when the placement group is
  created, long after the experiment started.
* ``cpu`` and ``gpu`` are accepted as spellings of ``CPU`` and ``GPU``. Ray would treat
  them as custom resources that no node has, and the trial would pend forever.
* Extra ``*args``/``**kwargs`` (passed on to :func:`ray.util.placement_group`) take part
  in equality as given; Ray first binds them to that function's signature, so it also
  finds ``name="x"`` equal to a positional ``"x"``. atune does not import Ray to do that.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from atune.errors import ConfigError
from atune.execution._resources import normalize_resources, parse_resource_dict, sum_resources

__all__ = ["PlacementGroupFactory", "resource_dict_to_pg_factory"]

#: The placement strategies Ray accepts.
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupFactory:
    """The resources one trial needs: a list of bundles and a placement strategy.

    Zero amounts are dropped, so ``{"CPU": 1, "GPU": 0}`` is ``{"CPU": 1.0}``. An empty
    head bundle (``[{}, {"CPU": 2}]``) means the trial's own actor takes no resources
    (``num_cpus=0``) and only the worker bundles are reserved; :attr:`bundles` then lists
    the worker bundles only and :attr:`head_bundle_is_empty` is True, as in Ray.

    Two factories are equal, and hash equally, when their bundles, strategy, head
    emptiness and extra arguments are equal. Actor reuse relies on this: a cached actor
    serves only a trial whose factory equals its own.

    Args:
        bundles: Resource dicts, head first, e.g. ``[{"CPU": 1, "GPU": 0.5}, {"CPU": 2}]``.
            Amounts are non-negative numbers; ``memory`` is in bytes; other names are
            custom resources.
        strategy: One of ``PACK``, ``SPREAD``, ``STRICT_PACK``, ``STRICT_SPREAD``.
        *args: Passed on to :func:`ray.util.placement_group` after bundles and strategy.
        **kwargs: Passed on to :func:`ray.util.placement_group`. Keep them JSON-friendly
            if the experiment is journaled (:meth:`to_dict`).

    Raises:
        ConfigError: No bundles, only an empty head bundle, an empty worker bundle, an
            unknown strategy, or an invalid amount; the message names the value.
    """

    def __init__(
        self,
        bundles: Sequence[Mapping[str, float]],
        strategy: str = "PACK",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if isinstance(bundles, (Mapping, str, bytes)) or not isinstance(bundles, Sequence):
            raise ConfigError(
                f"bundles must be a list of resource dicts, got {bundles!r}", value=bundles
            )
        if not bundles:
            raise ConfigError("a PlacementGroupFactory needs at least one bundle, got []", value=[])
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown placement strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}",
                value=strategy,
            )
        normalized = [normalize_resources(bundle) for bundle in bundles]
        self._head_bundle_is_empty = not normalized[0]
        if self._head_bundle_is_empty:
            normalized.pop(0)
            if not normalized:
                raise ConfigError(
                    f"the head bundle is empty and there are no worker bundles: {list(bundles)!r}",
                    value=list(bundles),
                )
        for index, bundle in enumerate(normalized):
            if not bundle:
                position = index + int(self._head_bundle_is_empty)
                raise ConfigError(
                    f"bundle {position} asks for no resources: {list(bundles)!r}; only the "
                    "head bundle may be empty",
                    value=list(bundles),
                )
        self._bundles = normalized
        self._strategy = strategy
        self._args = tuple(args)
        self._kwargs = dict(kwargs)

    @property
    def bundles(self) -> list[dict[str, float]]:
        """A deep copy of the non-empty bundles (an empty head bundle is not listed)."""
        return copy.deepcopy(self._bundles)

    @property
    def strategy(self) -> str:
        """The placement strategy."""
        return self._strategy

    @property
    def head_bundle_is_empty(self) -> bool:
        """True when the trial's own actor needs no resources, only its worker bundles."""
        return self._head_bundle_is_empty

    @property
    def head_cpus(self) -> float:
        """CPUs in the head bundle (0.0 when the head bundle is empty)."""
        return 0.0 if self._head_bundle_is_empty else self._bundles[0].get("CPU", 0.0)

    @property
    def required_resources(self) -> dict[str, float]:
        """The sum of all bundles, key by key (exact: ten bundles of 0.1 CPU sum to 1.0)."""
        return sum_resources(self._bundles)

    def to_placement_group(self) -> Any:
        """Create the Ray placement group for these bundles.

        Imports Ray only here. With an empty head bundle the group holds the worker
        bundles only, since Ray rejects empty bundles; the trial actor is then started with
        no resources (``num_cpus=0``) and is not placed in a bundle of its own.

        Returns:
            The ``ray.util.placement_group.PlacementGroup`` (reserved asynchronously).
        """
        from ray.util import placement_group

        return placement_group(self.bundles, self._strategy, *self._args, **self._kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Deprecated in Ray Tune; use :meth:`to_placement_group`."""
        warnings.warn(
            "Calling PlacementGroupFactory objects is deprecated. "
            "Use `to_placement_group()` instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_placement_group()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, for the journal; :meth:`from_dict` reverses it.

        ``bundles`` includes the empty head bundle, if any, so that the dict is exactly
        the constructor's arguments. ``args`` and ``kwargs`` appear only when given.
        """
        head: list[dict[str, float]] = [{}] if self._head_bundle_is_empty else []
        out: dict[str, Any] = {"bundles": head + self.bundles, "strategy": self._strategy}
        if self._args:
            out["args"] = list(self._args)
        if self._kwargs:
            out["kwargs"] = copy.deepcopy(self._kwargs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlacementGroupFactory:
        """Rebuild a factory from :meth:`to_dict` output.

        Args:
            data: A dict with ``bundles`` and optionally ``strategy``, ``args``, ``kwargs``.

        Returns:
            A factory equal to the one that produced ``data``.

        Raises:
            ConfigError: ``data`` has no ``bundles`` or holds invalid values.
        """
        if "bundles" not in data:
            raise ConfigError(f"no 'bundles' in placement group data {data!r}", value=data)
        return cls(
            data["bundles"],
            data.get("strategy", "PACK"),
            *data.get("args", ()),
            **data.get("kwargs", {}),
        )

    def _key(self) -> tuple[Any, ...]:
        bundles = tuple(tuple(sorted(bundle.items())) for bundle in self._bundles)
        return (bundles, self._strategy, self._head_bundle_is_empty)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlacementGroupFactory):
            return NotImplemented
        return (
            self._key() == other._key()
            and self._args == other._args
            and self._kwargs == other._kwargs
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        head: list[dict[str, float]] = [{}] if self._head_bundle_is_empty else []
        extra = "".join(f", {arg!r}" for arg in self._args)
        extra += "".join(f", {key}={value!r}" for key, value in self._kwargs.items())
        return (
            f"PlacementGroupFactory({head + self._bundles!r}, strategy={self._strategy!r}{extra})"
        )


def resource_dict_to_pg_factory(spec: Mapping[str, Any] | None = None) -> PlacementGroupFactory:
    """Translate a Tune resource dict into a single-bundle :class:`PlacementGroupFactory`.

    ``cpu``/``CPU``, ``gpu``/``GPU`` and ``memory`` (bytes) go into the bundle. A non-empty
    ``custom_resources`` dict supplies the custom resources (other keys are then ignored);
    without it, every remaining key is a custom resource. ``None`` or ``{}`` gives
    ``{"CPU": 1}``, Tune's default trial resources.

    Args:
        spec: e.g. ``{"cpu": 2, "gpu": 0.5}`` or ``{"CPU": 1, "custom_resources": {"tpu": 1}}``.

    Returns:
        The factory, strategy ``PACK``.

    Raises:
        ConfigError: A value is not a finite non-negative number, ``custom_resources`` is
            not a dict, or everything asked for is zero; the message names the value.

    Example:
        >>> resource_dict_to_pg_factory({"cpu": 2, "gpu": 0})
        PlacementGroupFactory([{'CPU': 2.0}], strategy='PACK')
    """
    bundle = parse_resource_dict(spec)
    if not bundle:
        raise ConfigError(f"resources {dict(spec or {})!r} ask for nothing", value=spec)
    return PlacementGroupFactory([bundle])
