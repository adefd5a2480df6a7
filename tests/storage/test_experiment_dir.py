"""The experiment directory: claimed once, at ``Tuner(...)``, by exactly one experiment."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune.errors import ConfigError, StorageError
from atune.storage._layout import JOURNAL_FILE, SPEC_FILE


def train_fn(config: dict[str, Any]) -> None:
    for i in range(3):
        tune.report({"score": config["x"] * i})


def _tuner(
    storage: str, name: str | None = "exp", backend: str = "local", **tune_kw: Any
) -> tune.Tuner:
    return tune.Tuner(
        train_fn,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(backend=backend, **tune_kw),  # type: ignore[arg-type]
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )


def _started(path: Path) -> int:
    return (path / JOURNAL_FILE).read_text().count('"experiment_started"')


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
async def test_concurrent_fits_with_one_name_never_share_a_directory(
    storage: str, backend: str
) -> None:
    tuners = [_tuner(storage, backend=backend) for _ in range(4)]
    results = await asyncio.gather(*(t.fit() for t in tuners))
    paths = {Path(r.experiment_path) for r in results}
    assert paths == {Path(storage, name) for name in ("exp", "exp_2", "exp_3", "exp_4")}
    for grid in results:
        path = Path(grid.experiment_path)
        assert _started(path) == 1  # one experiment per journal
        assert len(grid) == 2 and grid.num_errors == 0
        trial_dirs = [p for p in path.iterdir() if p.is_dir()]
        assert len(trial_dirs) == 2  # its own two trials, not another's


async def test_concurrent_fits_with_default_names_never_share_a_directory(storage: str) -> None:
    tuners = [_tuner(storage, name=None) for _ in range(3)]
    results = await asyncio.gather(*(t.fit() for t in tuners))
    paths = [Path(r.experiment_path) for r in results]
    assert len(set(paths)) == 3
    for path in paths:
        # Ray Tune's <trainable>_<date>_<time> shape, made unique by the microseconds
        assert re.fullmatch(r"train_fn_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", path.name)
        assert _started(path) == 1


def test_claiming_is_atomic_across_threads(storage: str) -> None:
    from atune.storage._experiment_dir import claim_experiment_dir

    barrier = threading.Barrier(8)
    claimed: list[Path] = []

    def claim() -> None:
        barrier.wait()
        claimed.append(claim_experiment_dir(storage, "race"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in claimed) == sorted(["race"] + [f"race_{n}" for n in range(2, 9)])


def test_an_existing_directory_is_never_reused(storage: str) -> None:
    (Path(storage) / "exp").mkdir()  # empty, but not this experiment's
    results = _tuner(storage).fit()
    assert Path(results.experiment_path) == Path(storage, "exp_2")
    assert list((Path(storage) / "exp").iterdir()) == []


def test_the_tuner_keeps_the_name_and_leaves_run_config_alone(storage: str) -> None:
    run_config = tune.RunConfig(storage_path=storage, verbose=0)
    tuner = tune.Tuner(
        train_fn,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=run_config,
    )
    assert run_config.name is None
    results = tuner.fit()
    assert run_config.name is None
    assert results.experiment_path == tuner.experiment_path


def test_tuner_creates_a_restorable_directory_that_fit_then_uses(storage: str) -> None:
    tuner = _tuner(storage)
    path = Path(storage, "exp")
    assert tune.Tuner.can_restore(path)  # as in Ray Tune: right after construction
    assert sorted(p.name for p in path.iterdir()) == [JOURNAL_FILE, SPEC_FILE]
    results = tuner.fit()
    assert Path(results.experiment_path) == path
    assert _started(path) == 1
    assert sorted(p.name for p in Path(storage).iterdir()) == ["exp"]


def test_restoring_a_tuner_that_never_ran_runs_it_from_the_start(storage: str) -> None:
    _tuner(storage)  # constructed, never fit
    path = Path(storage, "exp")
    results = tune.Tuner.restore(str(path), train_fn).fit()
    assert len(results) == 2 and results.num_errors == 0
    assert sorted(r.config["x"] for r in results) == [1, 2]
    assert all(r.metrics["training_iteration"] == 3 for r in results)
    assert Path(results.experiment_path) == path and _started(path) == 1


def test_a_second_fit_of_one_tuner_is_a_new_experiment(storage: str) -> None:
    tuner = _tuner(storage)
    first = tuner.fit()
    second = tuner.fit()
    assert Path(first.experiment_path) == Path(storage, "exp")
    assert Path(second.experiment_path) == Path(storage, "exp_2")
    assert _started(Path(storage, "exp")) == 1 and _started(Path(storage, "exp_2")) == 1


def test_file_uri_means_the_local_path(tmp_path: Path) -> None:
    results = _tuner(f"file://{tmp_path}/results").fit()
    assert Path(results.experiment_path) == tmp_path / "results" / "exp"
    assert results.num_errors == 0


@pytest.mark.parametrize("uri", ["nosuch://bucket/x", "hdfs://namenode:1/x"])
def test_storage_uris_pyarrow_cannot_open_are_refused(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URI is remote storage (``storage/_remote.py``), never a local directory named
    ``nosuch:``; one that cannot be opened (an unknown scheme, HDFS without its client
    library, or no pyarrow at all) fails at ``Tuner(...)`` naming the value."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATUNE_SCRATCH_DIR", str(tmp_path / "scratch"))
    with pytest.raises(ConfigError, match=re.escape(repr(uri))) as info:
        _tuner(uri).fit()
    assert info.value.value == uri
    assert list(tmp_path.iterdir()) == []  # no local directory named "nosuch:", no scratch


def test_a_storage_path_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    storage = blocker / "results"
    with pytest.raises(StorageError, match=re.escape(str(storage))):
        _tuner(str(storage)).fit()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_storage_path_is_a_storage_error(tmp_path: Path) -> None:
    storage = tmp_path / "read_only"
    storage.mkdir(mode=0o555)
    with pytest.raises(StorageError, match=re.escape(str(storage / "exp"))):
        _tuner(str(storage)).fit()


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_storage_path_on_a_file_system_that_refuses_is_a_storage_error() -> None:
    # sysfs refuses mkdir even to root (EPERM): an unwritable storage_path for real.
    storage = "/sys/atune-results"
    with pytest.raises(StorageError, match=re.escape(storage)):
        _tuner(storage).fit()


def test_a_name_longer_than_the_file_system_allows_is_refused_at_construction(
    storage: str,
) -> None:
    name = "n" * (os.pathconf(storage, "PC_NAME_MAX") + 1)
    with pytest.raises(ConfigError, match=re.escape(name)) as info:
        _tuner(storage, name=name)
    assert info.value.value == name
    assert list(Path(storage).iterdir()) == []
