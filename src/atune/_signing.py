"""The key that signs the only pickles atune ever writes (dict checkpoints of class trainables).

A class trainable's ``save_checkpoint`` may return a dict that JSON cannot hold (numpy
arrays, a model's state). atune pickles such a dict *and signs it* with an HMAC key that
lives outside every experiment directory (``~/.atune/signing_key``, or
``$ATUNE_SIGNING_KEY_FILE``). A pickle is loaded only if its signature verifies, so a
directory handed to you by someone else can never make ``Tuner.restore`` run code: a
planted or altered pickle is refused with a clear error instead of being executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from atune.errors import StorageError

__all__ = ["load_or_create_key", "sign", "verify"]

_KEY_BYTES = 32


def _key_path() -> Path:
    return Path(os.environ.get("ATUNE_SIGNING_KEY_FILE") or Path.home() / ".atune" / "signing_key")


def load_or_create_key() -> bytes:
    """This installation's signing key, created (mode 0600) on first use. Blocking.

    Safe under concurrency (threads and processes creating it at the same moment): each
    caller writes its candidate key to a temporary file of its own, then links it into
    place; the first link wins, and every caller returns the winner's key.

    Raises:
        StorageError: the key file exists with the wrong size, or cannot be written.
    """
    path = _key_path()
    try:
        return _checked(path, path.read_bytes())
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(f"cannot create the signing key {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp made it 0600
            f.write(secrets.token_bytes(_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # first writer wins; the others then read its key
    except OSError as exc:
        raise StorageError(f"cannot create the signing key {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _checked(path, path.read_bytes())


def _checked(path: Path, key: bytes) -> bytes:
    if len(key) != _KEY_BYTES:
        raise StorageError(
            f"the signing key {path} holds {len(key)} bytes, not {_KEY_BYTES}: it was changed "
            "by something other than atune; delete it (checkpoints signed with the old key "
            "will then be refused) or restore the original"
        )
    return key


def sign(key: bytes, data: bytes) -> str:
    """Hex HMAC-SHA256 of ``data``."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(key: bytes, data: bytes, signature: str) -> bool:
    """True when ``signature`` is ``data``'s HMAC under ``key`` (constant time)."""
    return hmac.compare_digest(sign(key, data), signature.strip())
