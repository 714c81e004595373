"""What every storage offers (`Storage`, `ObjectWriter`), where keys live, and what the
backends share."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

PART_SIZE = 8 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024


class ObjectWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> int: ...
    async def abort(self) -> None: ...


class Storage(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def writer(self, key: str, content_type: str = "application/octet-stream") -> ObjectWriter: ...
    async def upload(self, key: str, path: Path, content_type: str = "application/octet-stream") -> int: ...
    async def download(self, key: str, path: Path) -> int: ...
    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncGenerator[bytes, None]: ...
    async def size(self, key: str) -> int | None: ...
    async def delete(self, key: str) -> None: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def url(self, key: str, expires: int = 3600, disposition: str | None = None) -> str | None: ...
    async def check(self) -> None: ...


def tenant_prefix(tenant_id: object) -> str:
    """Everything of one tenant lives under this prefix; keys are generated, never a client's name."""
    return f"tenants/{tenant_id}/"


def job_prefix(tenant_id: object, job_id: object) -> str:
    """A job's input and outputs (renditions, thumbnails)."""
    return f"{tenant_prefix(tenant_id)}jobs/{job_id}/"


class ObjectNotFound(Exception):
    pass


def check_prefix(prefix: str) -> None:
    """An empty prefix would mean everything: never what a caller means to delete."""
    if not prefix.strip("/"):
        raise ValueError("refusing to delete with an empty prefix")
