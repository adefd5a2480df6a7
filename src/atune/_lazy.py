"""Package attributes imported on first use (PEP 562).

A Ray worker imports atune's packages to run a trainable; resolving each public name only
when it is first used keeps that import to the modules the worker actually needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str,
    modules: dict[str, str],
    public: list[str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``.

    Args:
        package: The package's ``__name__``.
        modules: Public name -> the module that defines it.
        public: The package's ``__all__``.
        submodules: Subpackages and modules reachable as attributes (``tune.stopper``), as
            they are on Ray Tune's package after ``import ray.tune``; each is imported
            the first time it is looked up. Python binds a submodule to its package once
            it is imported anywhere, so this only serves the first look-up.
    """
    lazy_modules = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in lazy_modules:
            return importlib.import_module(f"{package}.{name}")
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*public, *lazy_modules})

    return __getattr__, __dir__
