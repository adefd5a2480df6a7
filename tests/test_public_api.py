"""The public API is a contract: every exported name exists, is documented, and is one object.

Classes and functions must carry their own docstring (an inherited one does not count).
Constants and type aliases cannot hold a docstring at run time, so for them the test looks
for the attribute docstring (a string literal right after the assignment) in atune's source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import itertools
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import atune

PUBLIC_MODULES = [
    "atune",
    "atune.events",
    "atune.errors",
    "atune.config",
    "atune.search",
    "atune.search.sample",
    "atune.search.optuna",
    "atune.stopper",
    "atune.schedulers",
    "atune.trainable",
    "atune.execution",
    "atune.execution.placement_groups",
    "atune.result",
    "atune.result_grid",
    "atune.tuner",
    "atune.callback",
    "atune.utils",
    "atune.utils.util",
    "atune.error",
    "atune.context",
    "atune.tune_config",
    "atune.plot",
    "atune.simulator",
    "atune.logger",
    "atune.logger.logger",
    "atune.integrations",
]
# Public modules behind an extra: checked when the extra is installed.
EXTRA_MODULES = {
    "atune.logger.tensorboardx": "tensorboardX",
    "atune.integrations.mlflow": "mlflow",
    "atune.integrations.wandb": "wandb",
    "atune.search.hyperopt": "hyperopt",
}
PUBLIC_MODULES += [
    name for name, needs in EXTRA_MODULES.items() if importlib.util.find_spec(needs) is not None
]

# Import paths that Ray Tune programs (and the Ray Tune reference page) use.
RAY_TUNE_PATHS = [
    "atune.tuner.Tuner",
    "atune.execution.placement_groups.PlacementGroupFactory",
    "atune.utils.wait_for_gpu",
    "atune.utils.diagnose_serialization",
    "atune.utils.util.validate_warmstart",
    "atune.search.sample.uniform",
    "atune.search.basic_variant.BasicVariantGenerator",
    "atune.search.optuna.OptunaSearch",
    "atune.search.Repeater",
    "atune.search.ConcurrencyLimiter",
    "atune.error.TuneError",
    "atune.context.TuneContext",
    "atune.context.get_context",
    "atune.tune_config.TuneConfig",
    "atune.logger.LoggerCallback",
]

# The same object reached through a Ray Tune path and through a shorter one.
SAME_OBJECTS = [
    ("atune.Tuner", "atune.tuner.Tuner"),
    ("atune.PlacementGroupFactory", "atune.execution.placement_groups.PlacementGroupFactory"),
    ("atune.uniform", "atune.search.sample.uniform"),
    ("atune.search.BasicVariantGenerator", "atune.search.basic_variant.BasicVariantGenerator"),
    ("atune.utils.wait_for_gpu", "atune.utils.util.wait_for_gpu"),
    ("atune.utils.diagnose_serialization", "atune.utils.util.diagnose_serialization"),
    ("atune.ResultGrid", "atune.result_grid.ResultGrid"),
    ("atune.Callback", "atune.callback.Callback"),
    ("atune.TuneError", "atune.error.TuneError"),
    ("atune.get_context", "atune.context.get_context"),
    ("atune.TuneConfig", "atune.tune_config.TuneConfig"),
]

SKIPPED = {"__version__"}


def exported(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    return [name for name in getattr(module, "__all__", ()) if name not in SKIPPED]


def resolve(path: str) -> Any:
    """Import ``a.b.c.Name`` the way ``from a.b.c import Name`` would."""
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


@cache
def documented_assignments() -> frozenset[str]:
    """Names assigned at module level in atune's source and followed by a docstring."""
    names: set[str] = set()
    root = Path(atune.__file__).parent
    for source in root.rglob("*.py"):
        body = ast.parse(source.read_text(encoding="utf-8")).body
        for node, following in itertools.pairwise(body):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            if not (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and following.value.value.strip()
            ):
                continue
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def own_docstring(obj: Any) -> str | None:
    """The docstring ``obj`` itself declares (classes do not inherit one here)."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__")
        return doc if isinstance(doc, str) else None
    doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) else None


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_module_has_all_and_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), list | tuple), module_name
    assert module.__doc__ and module.__doc__.strip(), f"{module_name} has no module docstring"
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{module_name}.__all__ has duplicates"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in exported(module_name) if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_is_documented(module_name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    undocumented = []
    for name in exported(module_name):
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
            doc = own_docstring(obj)
            if not (doc and doc.strip()):
                undocumented.append(name)
        elif name not in documented_assignments():
            undocumented.append(name)
    assert undocumented == [], f"{module_name} exports undocumented names: {undocumented}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES[1:])
def test_names_shared_with_the_top_level_are_the_same_objects(module_name: str) -> None:
    module = importlib.import_module(module_name)
    top_level = set(atune.__all__)
    copies = [
        name
        for name in exported(module_name)
        if name in top_level and getattr(module, name) is not getattr(atune, name)
    ]
    assert copies == [], f"{module_name} and atune export different objects: {copies}"


@pytest.mark.parametrize("path", RAY_TUNE_PATHS)
def test_ray_tune_import_paths_resolve(path: str) -> None:
    obj = resolve(path)
    assert obj is not None
    assert own_docstring(obj)


@pytest.mark.parametrize(("short", "long"), SAME_OBJECTS)
def test_ray_tune_paths_re_export_rather_than_copy(short: str, long: str) -> None:
    assert resolve(short) is resolve(long)


def test_version_is_a_string() -> None:
    assert isinstance(atune.__version__, str)
    assert atune.__version__
