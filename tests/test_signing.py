"""The signing key: created once, race-free, by however many first users at the same time."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

import atune as tune
from atune._signing import load_or_create_key, sign, verify
from atune.errors import StorageError


def train_fn(config: dict[str, Any]) -> None:
    tune.report({"score": config["x"]})


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / ".atune" / "signing_key"
    monkeypatch.setenv("ATUNE_SIGNING_KEY_FILE", str(path))
    return path


def _create_at_once(n: int) -> tuple[list[bytes], list[BaseException]]:
    """``load_or_create_key()`` from ``n`` threads released at the same instant."""
    barrier = threading.Barrier(n)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            keys.append(load_or_create_key())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return keys, errors


def test_threads_creating_the_key_at_once_all_get_the_same_key(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for attempt in range(20):
        path = key_file.with_name(f"signing_key_{attempt}")
        monkeypatch.setenv("ATUNE_SIGNING_KEY_FILE", str(path))
        keys, errors = _create_at_once(8)
        assert errors == []
        assert len(keys) == 8 and len(set(keys)) == 1 and keys[0] == path.read_bytes()
    assert sorted(p.name for p in key_file.parent.iterdir()) == sorted(
        f"signing_key_{n}" for n in range(20)
    )  # no temporary file left behind


def test_the_key_is_private_and_stable(key_file: Path) -> None:
    key = load_or_create_key()
    assert len(key) == 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_or_create_key() == key
    assert verify(key, b"data", sign(key, b"data"))


def test_a_key_file_of_the_wrong_size_is_an_error_naming_it(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"short")
    with pytest.raises(StorageError, match=str(key_file)):
        load_or_create_key()


async def test_concurrent_first_fits_on_a_fresh_home_all_succeed(
    key_file: Path, storage: str
) -> None:
    tuners = [
        tune.Tuner(
            train_fn,
            param_space={"x": i},
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        for i in range(4)
    ]
    results = await asyncio.gather(*(t.fit() for t in tuners))
    assert [r.num_errors for r in results] == [0, 0, 0, 0]
    assert len(key_file.read_bytes()) == 32
