"""Checkpoint directories become visible atomically and are never overwritten."""

from __future__ import annotations

from pathlib import Path

from atune.storage._layout import checkpoint_name
from atune.trainable._trainable import commit_checkpoint_dir, new_staging_dir


def _staged(trial_dir: Path, index: int, content: str) -> str:
    staged = new_staging_dir(str(trial_dir), index)
    Path(staged, "data").write_text(content)
    return staged


def test_commit_renames_the_staged_directory_into_place(tmp_path: Path) -> None:
    staged = _staged(tmp_path, 0, "new")
    final = commit_checkpoint_dir(staged, str(tmp_path), 0)
    assert final == str(tmp_path / checkpoint_name(0))
    assert Path(final, "data").read_text() == "new"
    assert not Path(staged).exists()


def test_an_existing_checkpoint_is_never_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / checkpoint_name(1)
    existing.mkdir()
    (existing / "data").write_text("from another attempt")
    final = commit_checkpoint_dir(_staged(tmp_path, 1, "new"), str(tmp_path), 1)
    assert final == str(tmp_path / checkpoint_name(2))
    assert (existing / "data").read_text() == "from another attempt"
    assert Path(final, "data").read_text() == "new"
