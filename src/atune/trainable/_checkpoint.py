"""``Checkpoint``: a handle on a directory of files that a trial saved.

atune's checkpoints live on the local (or shared, mounted) filesystem: a checkpoint is a
directory path and nothing more. The object pickles as that path string, so sending one
between a Ray actor and the driver costs a few bytes, never the files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from atune.errors import ConfigError
from atune.storage._layout import CHECKPOINT_METADATA_FILE, TEMP_CHECKPOINT_PREFIX

__all__ = ["Checkpoint"]

_DICT_NAMES = frozenset(
    {"from_dict", "to_dict", "from_bytes", "to_bytes", "get_internal_representation"}
)
_URI_NAMES = frozenset({"from_uri", "to_uri", "uri"})
_PREPROCESSOR_NAMES = frozenset({"get_preprocessor", "set_preprocessor"})


def _legacy_error(name: str) -> AttributeError | None:
    """The migration error for a removed pre-2.7 ``Checkpoint`` member, or None."""
    if name in _DICT_NAMES:
        return AttributeError(
            f"Checkpoint.{name} no longer exists: a checkpoint is a directory of files. "
            "To keep a dict, write it to a file in a directory (for example with pickle "
            "or json) and pass Checkpoint.from_directory(that_dir) to tune.report(); "
            "to read it back, open the file inside `with checkpoint.as_directory() as d:`."
        )
    if name in _URI_NAMES:
        return AttributeError(
            f"Checkpoint.{name} no longer exists: atune checkpoints are local (or "
            "mounted shared) directories. Use Checkpoint.from_directory(path) and read "
            "the files with checkpoint.as_directory() or checkpoint.to_directory()."
        )
    if name in _PREPROCESSOR_NAMES:
        return AttributeError(
            f"Checkpoint.{name} no longer exists: store such information with "
            "checkpoint.set_metadata({...}) and read it with checkpoint.get_metadata()."
        )
    return None


class _CheckpointMeta(type):
    """Turns class-level access to removed members into a migration error."""

    def __getattr__(cls, name: str) -> NoReturn:
        error = _legacy_error(name)
        if error is not None:
            raise error
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class Checkpoint(metaclass=_CheckpointMeta):
    """A directory of files that a trial saved, addressed by its path.

    ``Checkpoint(path)`` and ``Checkpoint.from_directory(path)`` both refer to the
    directory in place; nothing is copied. The path is made absolute at construction, so
    a checkpoint created in a trial whose working directory differs from the driver's
    still names the same directory. Only local (or mounted shared) paths are supported:
    a URI such as ``s3://bucket/key`` is rejected; ``file://`` URIs are accepted and
    stripped to their path.

    Two checkpoints are equal, and hash alike, when their paths are equal. A checkpoint
    pickles as its path string alone. It is not itself a path: ``os.fspath(checkpoint)``
    raises :class:`TypeError`; use :attr:`path` or :meth:`as_directory`.

    Methods that touch files (:meth:`to_directory`, the metadata methods) do blocking I/O;
    from async code call them through ``anyio.to_thread.run_sync``.

    Args:
        path: The checkpoint directory.
        filesystem: Accepted for Ray Tune compatibility; must be None (atune reads the
            local filesystem only).

    Raises:
        ConfigError: If ``path`` is empty or a non-``file`` URI, or ``filesystem`` is set.
    """

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str], filesystem: Any = None) -> None:
        if filesystem is not None:
            raise ConfigError(
                f"Checkpoint(filesystem={filesystem!r}) is not supported: atune "
                "checkpoints live on the local filesystem; pass filesystem=None.",
                value=filesystem,
            )
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise ConfigError(f"Checkpoint path must be a non-empty str, got {path!r}.", value=path)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif "://" in text:
            raise ConfigError(
                f"Checkpoint path {text!r} is a remote URI; atune supports local (or "
                "mounted shared) directories only.",
                value=path,
            )
        text = os.path.expanduser(text)
        # An absolute path needs no working directory (no getcwd call, so this is safe to
        # do on an event loop); a relative one is resolved against it.
        self._path = os.path.normpath(text) if os.path.isabs(text) else os.path.abspath(text)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """Create a checkpoint that refers to an existing local directory, without copying.

        Args:
            path: A directory that exists now.

        Returns:
            A checkpoint whose :attr:`path` is ``path`` made absolute.

        Raises:
            ConfigError: If ``path`` does not exist or is not a directory.
        """
        checkpoint = cls(path)
        if not os.path.isdir(checkpoint.path):
            what = "is not a directory" if os.path.exists(checkpoint.path) else "does not exist"
            raise ConfigError(
                f"Checkpoint.from_directory({os.fspath(path)!r}): the path {what}.",
                value=path,
            )
        return checkpoint

    @property
    def path(self) -> str:
        """The absolute path of the checkpoint directory."""
        return self._path

    @property
    def filesystem(self) -> None:
        """Always None: atune checkpoints live on the local filesystem.

        Ray Tune returns a ``pyarrow.fs.FileSystem`` here; atune does not depend on pyarrow.
        """
        return None

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy the checkpoint's files into a directory and return that directory.

        With ``path`` given, the files are copied into it (created if needed); if it already
        holds files they are kept and same-named files are overwritten, as in Ray Tune. With
        no ``path``, a fresh directory ``<tempdir>/checkpoint_tmp_<uuid>`` is created; the
        caller owns it and should delete it when done. Copying a checkpoint onto its own
        path does nothing.

        Args:
            path: Destination directory, or None for a fresh temporary directory.

        Returns:
            The destination directory's absolute path.

        Raises:
            FileNotFoundError: If the checkpoint directory no longer exists.
            ConfigError: If ``path`` lies inside the checkpoint directory.
        """
        if not os.path.isdir(self._path):
            raise FileNotFoundError(f"Checkpoint directory {self._path!r} does not exist.")
        if path is None:
            target = os.path.join(tempfile.gettempdir(), TEMP_CHECKPOINT_PREFIX + uuid.uuid4().hex)
        else:
            target = os.path.abspath(os.path.expanduser(os.fspath(path)))
        source_real, target_real = os.path.realpath(self._path), os.path.realpath(target)
        if source_real == target_real:
            return target
        if target_real.startswith(source_real + os.sep):
            raise ConfigError(
                f"Cannot copy checkpoint {self._path!r} into {target!r}, which lies inside it.",
                value=path,
            )
        shutil.copytree(self._path, target, dirs_exist_ok=True)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Yield a local directory holding the checkpoint's files.

        For atune's local checkpoints this is :attr:`path` itself: no copy is made and
        nothing is deleted on exit, so treat the directory as read-only.

        Yields:
            The checkpoint directory.
        """
        yield self._path

    def get_metadata(self) -> dict[str, Any]:
        """Return the metadata stored in ``<path>/.metadata.json``, or ``{}`` if none."""
        metadata_path = os.path.join(self._path, CHECKPOINT_METADATA_FILE)
        try:
            with open(metadata_path, encoding="utf-8") as file:
                loaded = json.load(file)
        except FileNotFoundError:
            return {}
        return dict(loaded)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the checkpoint's metadata (JSON in ``<path>/.metadata.json``).

        The file is written atomically (a temporary file renamed over it).

        Args:
            metadata: A mapping whose values are JSON-serializable.

        Raises:
            ConfigError: If ``metadata`` is not a mapping or a value cannot be
                JSON-encoded; the message names the key.
        """
        text = _encode_metadata(metadata)
        metadata_path = os.path.join(self._path, CHECKPOINT_METADATA_FILE)
        temp_path = f"{metadata_path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp_path, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temp_path, metadata_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp_path)

    def update_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the stored metadata (its keys win) and write it back.

        Args:
            metadata: A mapping whose values are JSON-serializable.

        Raises:
            ConfigError: As for :meth:`set_metadata`.
        """
        _encode_metadata(metadata)
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __fspath__(self) -> NoReturn:
        raise TypeError("a Checkpoint is not a path; use checkpoint.path or as_directory()")

    def __getattr__(self, name: str) -> NoReturn:
        error = _legacy_error(name)
        if error is not None:
            raise error
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __reduce__(self) -> tuple[type[Checkpoint], tuple[str]]:
        return (type(self), (self._path,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filesystem=local, path={self._path})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint):
            return NotImplemented
        return self._path == other._path

    def __hash__(self) -> int:
        return hash(self._path)


def _encode_metadata(metadata: Mapping[str, Any]) -> str:
    """JSON-encode checkpoint metadata, naming the first key whose value cannot be encoded."""
    if not isinstance(metadata, Mapping):
        raise ConfigError(
            f"Checkpoint metadata must be a dict, got {type(metadata).__name__}.", value=metadata
        )
    try:
        return json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        for key, value in metadata.items():
            try:
                json.dumps({key: value})
            except (TypeError, ValueError) as key_exc:
                raise ConfigError(
                    f"Checkpoint metadata key {key!r} is not JSON-serializable: {key_exc}",
                    value=value,
                ) from key_exc
        raise ConfigError(f"Checkpoint metadata is not JSON-serializable: {exc}") from exc
