"""A Ray worker imports only what hosting a trial needs; lazy names and loggers still work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import atune
import atune.execution
from atune._log import get_logger

# Modules a worker hosting a trial must not import: they cost tens of milliseconds on every
# new actor (structlog imports rich) and serve only the driver.
DRIVER_ONLY = ("structlog", "rich", "pandas", "atune.execution._allocator", "atune.search")


def test_the_worker_entry_point_imports_no_driver_only_module() -> None:
    code = (
        "import json, sys\n"
        "import atune.execution._ray\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DRIVER_ONLY!r}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_lazy_package_names_resolve_to_their_objects() -> None:
    from atune.execution._allocator import Allocator
    from atune.execution.placement_groups import PlacementGroupFactory

    assert atune.execution.Allocator is Allocator
    assert atune.execution.PlacementGroupFactory is PlacementGroupFactory
    assert atune.PlacementGroupFactory is PlacementGroupFactory
    assert "Allocator" in dir(atune.execution)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"'atune.execution' has no attribute 'Nope'"):
        atune.execution.Nope  # noqa: B018
    with pytest.raises(AttributeError, match=r"'atune' has no attribute 'nope'"):
        atune.nope  # noqa: B018


# Ray Tune's modules that a program reaches as attributes after ``import ray.tune``.
SUBMODULE_PATHS = [
    "stopper.CombinedStopper",
    "search.ConcurrencyLimiter",
    "search.sample.uniform",
    "schedulers.FIFOScheduler",
    "utils.wait_for_gpu",
    "utils.util.validate_warmstart",
    "execution.placement_groups.PlacementGroupFactory",
    "callback.Callback",
    "result_grid.ResultGrid",
    "trainable.Trainable",
    "tuner.Tuner",
    "error.TuneError",
    "context.get_context",
    "tune_config.TuneConfig",
]


def test_submodules_resolve_as_attributes_after_import_atune_as_tune() -> None:
    # In a fresh interpreter: in this one, other tests have imported the modules already.
    code = (
        "import json, sys\n"
        "import atune as tune\n"
        "before = 'atune.stopper' in sys.modules\n"
        "found = {}\n"
        f"for path in {SUBMODULE_PATHS!r}:\n"
        "    obj = tune\n"
        "    for part in path.split('.'):\n"
        "        obj = getattr(obj, part)\n"
        "    found[path] = obj.__module__ + '.' + obj.__name__\n"
        "print(json.dumps({'before': before, 'found': found}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["before"] is False  # still lazy: nothing imported until looked up
    assert set(report["found"]) == set(SUBMODULE_PATHS)
    assert report["found"]["stopper.CombinedStopper"] == "atune.stopper.CombinedStopper"
    assert "stopper" in dir(atune) and "search" in dir(atune)


def test_a_lazy_logger_logs_through_structlog() -> None:
    log = get_logger("atune.test")
    with capture_logs() as logs:
        log.warning("something happened", trial_id="t1")
        log.bind(trial_id="t2").info("bound")
    assert [(e["event"], e["trial_id"], e["log_level"]) for e in logs] == [
        ("something happened", "t1", "warning"),
        ("bound", "t2", "info"),
    ]


def _make_package(root: Path, name: str, block: str) -> None:
    package = root / name
    package.mkdir()
    (package / "_impl.py").write_text("def f():\n    'F.'\n\nclass K:\n    'K.'\n")
    (package / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from atune._lazy import lazy_attributes\n"
        f"if TYPE_CHECKING:\n{block}"
        "__getattr__, __dir__, __all__ = lazy_attributes(__name__, extra=['VERSION'])\n"
        "VERSION = '1'\n"
    )


def test_the_type_checking_block_is_the_one_list_of_public_names(tmp_path: Path) -> None:
    _make_package(tmp_path, "lazy_pkg", "    from lazy_pkg._impl import K as K, f as f\n")
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import lazy_pkg\n"
        "before = 'lazy_pkg._impl' in sys.modules\n"
        "print(json.dumps([before, lazy_pkg.__all__, dir(lazy_pkg), lazy_pkg.K.__name__]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.splitlines()[-1]) == [
        False,  # nothing imported until looked up
        ["K", "VERSION", "f"],
        ["K", "VERSION", "f"],
        "K",
    ]


def test_an_import_that_does_not_re_export_explicitly_is_refused(tmp_path: Path) -> None:
    _make_package(tmp_path, "bad_pkg", "    from bad_pkg._impl import K\n")
    code = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport bad_pkg\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "'from bad_pkg._impl import K' must re-export explicitly" in out.stderr


# The runtime behind the execution seam (see atune.execution._protocol): worker threads,
# greenlets and Ray. The controller's pure core imports data only from that layer.
RUNTIME = ("atune.execution._host", "atune.trainable._function", "greenlet", "ray")


def test_the_core_imports_data_only_from_the_execution_layer() -> None:
    code = (
        "import json, sys\n"
        "import atune._controller._core\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({RUNTIME!r}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []
