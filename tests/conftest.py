"""Shared fixtures: one Ray instance per test session, and a per-test storage path."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Keep Ray quiet and small on CI machines (2 cores).
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The key that signs pickled dict checkpoints: keep the tests' key out of the user's home.
if "ATUNE_SIGNING_KEY_FILE" not in os.environ:
    _key_dir = tempfile.mkdtemp(prefix="atune-tests-")
    os.environ["ATUNE_SIGNING_KEY_FILE"] = os.path.join(_key_dir, "signing_key")
    atexit.register(shutil.rmtree, _key_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray started once for every test marked ``ray`` (explicit CPUs, no dashboard)."""
    import ray

    # Trainables defined in test modules are pickled by reference; let Ray's workers import
    # those modules the way pytest did (each test directory is on sys.path).
    tests_root = Path(__file__).resolve().parent
    dirs = [str(tests_root)] + [str(p) for p in tests_root.rglob("*") if p.is_dir()]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(dirs + ([old] if old else []))
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_for_ray_tests(request: pytest.FixtureRequest) -> None:
    """Tests marked ``ray`` (and only those) get the session Ray instance."""
    if request.node.get_closest_marker("ray") is not None:
        request.getfixturevalue("ray_session")


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """A fresh storage_path for one test's experiments."""
    path = tmp_path / "results"
    path.mkdir()
    return str(path)
