"""Where uploads and results live: an S3 bucket (any S3-compatible server) or a directory.

API processes and workers may run on different hosts, so everything that crosses between
them goes through here, never through a local path. Writers stream: an upload is passed
on in parts as it arrives (S3 multipart above `PART_SIZE`), so memory stays bounded.

The `Storage` protocol and key layout are in `base`; the backends in `files` and `s3`.
"""

from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.storage.base import (
    CHUNK_SIZE,
    PART_SIZE,
    ObjectNotFound,
    ObjectWriter,
    Storage,
    job_prefix,
    tenant_prefix,
)
from service.storage.files import FileStorage
from service.storage.s3 import S3Storage

__all__ = [
    "CHUNK_SIZE",
    "PART_SIZE",
    "FileStorage",
    "ObjectNotFound",
    "ObjectWriter",
    "S3Storage",
    "Storage",
    "job_prefix",
    "open_storage",
    "tenant_prefix",
]


def open_storage(url: str, endpoint_url: str | None = None) -> Storage:
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return S3Storage(parts.netloc, parts.path.strip("/"), endpoint_url)
    return FileStorage(Path(unquote(parts.netloc + parts.path)).expanduser())
