"""A real S3-compatible server for the remote-storage tests: moto in server mode.

The server listens on 127.0.0.1 on a free port and is reached over HTTP, by pyarrow's own
S3 client, as a real bucket would be. Needs the ``remote`` extra (pyarrow) and moto's
server (the ``test`` extra installs both).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Credentials moto accepts; no instance-metadata lookups (they would wait for a timeout).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
BUCKET = "atune-test"


def missing_extra() -> str | None:
    """Why the remote-storage tests cannot run here, or None when they can."""
    try:
        import moto.server  # noqa: F401
        import pyarrow.fs  # noqa: F401
    except ImportError as exc:
        return f"the remote extra is not installed ({exc}); pip install -e '.[remote,test]'"
    return None


@dataclass(frozen=True)
class S3Server:
    """A running moto server with one bucket (:data:`BUCKET`)."""

    endpoint: str  # host:port

    def uri(self, path: str) -> str:
        """The ``s3://`` URI of ``path`` in the bucket, with the server's options."""
        return (
            f"s3://{BUCKET}/{path}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"
        )

    def filesystem(self) -> Any:
        """A ``pyarrow.fs.S3FileSystem`` for the server, with its credentials."""
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(
            access_key=S3_ENV["AWS_ACCESS_KEY_ID"],
            secret_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint,
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )


@contextmanager
def moto_s3() -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (a free port), with a bucket; stop it after."""
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in S3_ENV}
    os.environ.update(S3_ENV)  # URIs without credentials read them from the environment
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(f"{host}:{port}")
        s3.filesystem().create_dir(BUCKET)
        yield s3
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
