"""Package attributes imported on first use (PEP 562), from one list of names.

A Ray worker imports atune's packages to run a trainable; resolving each public name only
when it is first used keeps that import to the modules the worker actually needs.

A lazy package names its public surface once, as anyio's ``__init__`` does with its
imports: in an ``if TYPE_CHECKING:`` block of explicit re-exports
(``from atune.tuner import Tuner as Tuner``). Type checkers and readers see ordinary
imports; at run time :func:`lazy_attributes` reads that same block from the package's
source and derives from it the name -> module table behind ``__getattr__``, ``__dir__``
and ``__all__``. So there is no second list to keep in step with the first.

Why not the alternatives: a hand-written ``{name: module}`` table next to the block (what
this replaced) is a second list that silently drifts; a ``__getattr__`` typed ``-> Any``
alone would make every public name ``Any`` to type checkers; importing eagerly (as anyio
can afford) would load the search, results and progress modules into every Ray worker.
Reading the block costs one parse of the ``__init__`` source with the compiler's own AST
(``_ast``, built in), well under a millisecond, once per package per process.
"""

from __future__ import annotations

import _ast
import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str,
    submodules: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """A package's ``__getattr__``, ``__dir__`` and ``__all__``, from its TYPE_CHECKING block.

    Call it at the end of the package's ``__init__``. Every ``from M import N as N`` in the
    package's top-level ``if TYPE_CHECKING:`` block makes ``N`` a public name, imported
    from ``M`` on first look-up and then bound on the package.

    Args:
        package: The package's ``__name__``.
        submodules: Subpackages and modules reachable as attributes (``tune.stopper``), as
            they are on Ray Tune's package after ``import ray.tune``; each is imported
            the first time it is looked up. Python binds a submodule to its package once
            it is imported anywhere, so this only serves the first look-up.
        extra: Public names the package defines itself (``__version__``); they go into
            ``__all__`` as they are.

    Returns:
        ``(__getattr__, __dir__, __all__)``; ``__all__`` is sorted.

    Raises:
        ImportError: The package's source cannot be read, or an import in the block does
            not re-export its name explicitly (``as`` the same name).
    """
    modules = _type_checking_imports(package)
    lazy_modules = frozenset(submodules)
    public = sorted({*modules, *extra})

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

    return __getattr__, __dir__, public


def _type_checking_imports(package: str) -> dict[str, str]:
    """Public name -> defining module, from the package's ``if TYPE_CHECKING:`` block."""
    spec = sys.modules[package].__spec__
    # The loader's get_data, as the import system reads the file (blocking I/O tools treat
    # it as an import); compile() decodes the bytes itself, so no tokenize import.
    get_data = getattr(spec.loader, "get_data", None) if spec is not None else None
    if spec is None or spec.origin is None or get_data is None:
        raise ImportError(f"cannot read the source of {package!r} to find its public names")
    source = get_data(spec.origin)
    tree = compile(source, spec.origin, "exec", _ast.PyCF_ONLY_AST)
    assert isinstance(tree, _ast.Module)
    names: dict[str, str] = {}
    for node in tree.body:
        if not (
            isinstance(node, _ast.If)
            and isinstance(node.test, _ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            continue
        for stmt in node.body:
            if not isinstance(stmt, _ast.ImportFrom) or stmt.module is None:
                continue
            for alias in stmt.names:
                if alias.asname != alias.name:
                    raise ImportError(
                        f"{package}: 'from {stmt.module} import {alias.name}' must re-export "
                        f"explicitly ('import {alias.name} as {alias.name}')"
                    )
                names[alias.name] = stmt.module
    return names
