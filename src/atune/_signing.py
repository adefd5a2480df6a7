"""The key that signs the only pickles atune ever writes (dict checkpoints of class trainables).

A class trainable's ``save_checkpoint`` may return a dict that JSON cannot hold (numpy
arrays, a model's state). atune pickles such a dict *and signs it* with an HMAC key that
lives outside every experiment directory (``~/.atune/signing_key``, or
``$ATUNE_SIGNING_KEY_FILE``). A pickle is loaded only if its signature verifies, so a
directory handed to you by someone else can never make ``Tuner.restore`` run code: a
planted or altered pickle is refused with a clear error instead of being executed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["load_or_create_key", "sign", "verify"]

_KEY_BYTES = 32


def _key_path() -> Path:
    return Path(os.environ.get("ATUNE_SIGNING_KEY_FILE") or Path.home() / ".atune" / "signing_key")


def load_or_create_key() -> bytes:
    """This installation's signing key, created (mode 0600) on first use. Blocking."""
    path = _key_path()
    try:
        key = path.read_bytes()
        if len(key) == _KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # first writer wins; concurrent creators then read its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def sign(key: bytes, data: bytes) -> str:
    """Hex HMAC-SHA256 of ``data``."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(key: bytes, data: bytes, signature: str) -> bool:
    """True when ``signature`` is ``data``'s HMAC under ``key`` (constant time)."""
    return hmac.compare_digest(sign(key, data), signature.strip())
