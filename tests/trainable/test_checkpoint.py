from __future__ import annotations

import copy
import os
import pickle
import shutil
from pathlib import Path

import pytest

from atune.errors import ConfigError
from atune.storage._layout import CHECKPOINT_METADATA_FILE, TEMP_CHECKPOINT_PREFIX
from atune.trainable._checkpoint import Checkpoint


@pytest.fixture
def ckpt_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ckpt"
    (directory / "sub").mkdir(parents=True)
    (directory / "model.txt").write_text("weights")
    (directory / "sub" / "opt.txt").write_text("state")
    return directory


def test_from_directory_refers_in_place(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    assert checkpoint.path == str(ckpt_dir)
    assert checkpoint.filesystem is None
    with checkpoint.as_directory() as directory:
        assert directory == str(ckpt_dir)
        assert Path(directory, "model.txt").read_text() == "weights"
    assert (ckpt_dir / "model.txt").exists()  # as_directory deleted nothing


def test_from_directory_rejects_missing_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        Checkpoint.from_directory(tmp_path / "nope")
    assert "nope" in str(info.value)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        Checkpoint.from_directory(a_file)


def test_constructor_makes_path_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Checkpoint("rel/dir").path == str(tmp_path / "rel" / "dir")
    assert Checkpoint(f"file://{tmp_path}/x").path == str(tmp_path / "x")


@pytest.mark.parametrize("bad", ["", "s3://bucket/key", "gs://b/k"])
def test_constructor_rejects_empty_and_remote(bad: str) -> None:
    with pytest.raises(ConfigError):
        Checkpoint(bad)


def test_constructor_rejects_filesystem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="filesystem"):
        Checkpoint(tmp_path, filesystem=object())


def test_to_directory_temp(ckpt_dir: Path) -> None:
    target = Checkpoint.from_directory(ckpt_dir).to_directory()
    try:
        assert os.path.basename(target).startswith(TEMP_CHECKPOINT_PREFIX)
        assert Path(target, "sub", "opt.txt").read_text() == "state"
        second = Checkpoint.from_directory(ckpt_dir).to_directory()
        assert second != target
        shutil.rmtree(second)
    finally:
        shutil.rmtree(target)


def test_to_directory_merges_into_existing(ckpt_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    (target / "model.txt").write_text("old")
    returned = Checkpoint.from_directory(ckpt_dir).to_directory(target)
    assert returned == str(target)
    assert (target / "keep.txt").read_text() == "mine"
    assert (target / "model.txt").read_text() == "weights"
    assert (target / "sub" / "opt.txt").read_text() == "state"


def test_to_directory_onto_itself_and_inside(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    assert checkpoint.to_directory(ckpt_dir) == str(ckpt_dir)
    assert sorted(os.listdir(ckpt_dir)) == ["model.txt", "sub"]
    with pytest.raises(ConfigError, match="inside"):
        checkpoint.to_directory(ckpt_dir / "sub" / "deeper")


def test_to_directory_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone"):
        Checkpoint(tmp_path / "gone").to_directory(tmp_path / "out")


def test_metadata_roundtrip(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    assert checkpoint.get_metadata() == {}
    checkpoint.set_metadata({"a": 1, "b": [1, 2]})
    assert checkpoint.get_metadata() == {"a": 1, "b": [1, 2]}
    checkpoint.update_metadata({"b": "x", "c": None})
    assert checkpoint.get_metadata() == {"a": 1, "b": "x", "c": None}
    assert (ckpt_dir / CHECKPOINT_METADATA_FILE).exists()
    assert sorted(os.listdir(ckpt_dir)) == sorted([CHECKPOINT_METADATA_FILE, "model.txt", "sub"])


def test_metadata_must_be_json(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    checkpoint.set_metadata({"a": 1})
    with pytest.raises(ConfigError, match="'bad'"):
        checkpoint.set_metadata({"ok": 1, "bad": object()})
    with pytest.raises(ConfigError, match="'bad'"):
        checkpoint.update_metadata({"bad": {1, 2}})
    with pytest.raises(ConfigError, match="dict"):
        checkpoint.set_metadata([1, 2])  # type: ignore[arg-type]
    assert checkpoint.get_metadata() == {"a": 1}  # failed writes left it untouched


def test_fspath_raises(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    with pytest.raises(TypeError, match="not a path"):
        os.fspath(checkpoint)
    with pytest.raises(TypeError):
        os.path.join(checkpoint, "x")


def test_equality_hash_repr(ckpt_dir: Path, tmp_path: Path) -> None:
    a = Checkpoint.from_directory(ckpt_dir)
    b = Checkpoint(str(ckpt_dir))
    c = Checkpoint(tmp_path / "other")
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert a != str(ckpt_dir)
    assert len({a, b, c}) == 2
    assert repr(a) == f"Checkpoint(filesystem=local, path={ckpt_dir})"


def test_pickles_as_path(ckpt_dir: Path) -> None:
    checkpoint = Checkpoint.from_directory(ckpt_dir)
    restored = pickle.loads(pickle.dumps(checkpoint))
    assert restored == checkpoint
    assert type(restored) is Checkpoint
    assert copy.deepcopy(checkpoint) == checkpoint
    assert len(pickle.dumps(checkpoint)) < len(str(ckpt_dir)) + 100


def test_subclass_pickles_as_itself(ckpt_dir: Path) -> None:
    class MyCheckpoint(Checkpoint):
        pass

    checkpoint = MyCheckpoint.from_directory(ckpt_dir)
    assert type(checkpoint) is MyCheckpoint
    assert type(copy.copy(checkpoint)) is MyCheckpoint


@pytest.mark.parametrize("name", ["from_dict", "to_dict", "from_bytes", "uri", "from_uri"])
def test_legacy_members_raise_migration_errors(ckpt_dir: Path, name: str) -> None:
    with pytest.raises(AttributeError, match="no longer exists"):
        getattr(Checkpoint, name)
    with pytest.raises(AttributeError, match="no longer exists"):
        getattr(Checkpoint.from_directory(ckpt_dir), name)


def test_unknown_attribute_is_plain_attribute_error(ckpt_dir: Path) -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = Checkpoint.from_directory(ckpt_dir).nope
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = Checkpoint.nope
