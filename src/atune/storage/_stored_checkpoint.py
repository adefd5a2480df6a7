"""``StoredCheckpoint``: a checkpoint of an experiment on remote storage, read from there.

The results of an experiment on remote storage (``Result.checkpoint``,
``Result.best_checkpoints``) name checkpoints in the storage, as Ray Tune's do:
:attr:`~StoredCheckpoint.path` is the path on the file system and
:attr:`~StoredCheckpoint.filesystem` the ``pyarrow.fs.FileSystem``. The driver's local
mirror does not hold checkpoints that trials wrote on other nodes, so the files are read
from the storage: :meth:`~StoredCheckpoint.to_directory` downloads them,
:meth:`~StoredCheckpoint.as_directory` downloads them into a temporary directory that is
removed on exit, and the metadata methods read and write ``.metadata.json`` there. Every
one of these is blocking network I/O.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from atune.storage._layout import CHECKPOINT_METADATA_FILE, TEMP_CHECKPOINT_PREFIX
from atune.storage._remote import RemoteStorage, download_dir
from atune.trainable._checkpoint import Checkpoint, _encode_metadata

__all__ = ["StoredCheckpoint"]


class StoredCheckpoint(Checkpoint):
    """A checkpoint directory on remote storage (see the module docstring).

    Args:
        storage: The checkpoint directory on its file system.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: RemoteStorage) -> None:
        self._storage = storage
        self._path = storage.path

    @property
    def filesystem(self) -> Any:  # type: ignore[override]
        """The ``pyarrow.fs.FileSystem`` the checkpoint is on."""
        return self._storage.filesystem

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Download the checkpoint's files into a directory and return that directory.

        With ``path``, into it (created if needed; files of the same name are replaced);
        otherwise into a fresh ``<tempdir>/checkpoint_tmp_<uuid>`` that the caller owns.

        Raises:
            FileNotFoundError: the checkpoint is not in the storage (any more).
            StorageError: the download failed.
        """
        if path is None:
            target = os.path.join(tempfile.gettempdir(), TEMP_CHECKPOINT_PREFIX + uuid.uuid4().hex)
        else:
            target = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not self._storage.exists():
            raise FileNotFoundError(f"checkpoint {self._storage.uri} is not in the storage")
        os.makedirs(target, exist_ok=True)
        download_dir(self._storage, target)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Yield a temporary local copy of the checkpoint; it is removed on exit."""
        target = self.to_directory()
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def get_metadata(self) -> dict[str, Any]:
        """The metadata in the checkpoint's ``.metadata.json`` in the storage, or ``{}``."""
        data = self._storage.read_bytes(CHECKPOINT_METADATA_FILE)
        return {} if data is None else dict(json.loads(data))

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the checkpoint's metadata in the storage.

        Raises:
            ConfigError: ``metadata`` is not a mapping or does not encode as JSON.
        """
        self._storage.write_bytes(_encode_metadata(metadata).encode(), CHECKPOINT_METADATA_FILE)

    def update_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the stored metadata (its keys win) and write it back."""
        _encode_metadata(metadata)
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __reduce__(self) -> tuple[Any, ...]:  # type: ignore[override]
        return (type(self), (self._storage,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filesystem={self._storage.uri}, path={self._path})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredCheckpoint):
            return NotImplemented if not isinstance(other, Checkpoint) else False
        return self._storage.uri == other._storage.uri

    def __hash__(self) -> int:
        return hash(self._storage.uri)
