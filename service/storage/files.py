"""Storage in a directory: for one host, or a volume the hosts share."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

from service.errors import DependencyUnavailable
from service.storage.base import CHUNK_SIZE, ObjectNotFound, ObjectWriter, check_prefix
from service.storage.file_modes import copy_private, make_private_dirs, private_opener


class FileStorage:
    """Objects as files under one root; for one host, or a shared volume. Files are 0600
    and the directories made for them 0700 (service/storage/file_modes.py): tenants' data."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root = str(self.root)

    async def open(self) -> None:
        await asyncio.to_thread(make_private_dirs, self.root)

    async def close(self) -> None:
        return None

    def path(self, key: str) -> Path:
        """Lexical, without a system call on the event loop: keys are generated, and the
        only way out of the root (`..`) is caught here."""
        path = os.path.normpath(os.path.join(self._root, key))
        if os.path.commonpath((path, self._root)) != self._root:
            raise ValueError(f"key escapes the storage root: {key!r}")
        return Path(path)

    def writer(self, key: str, content_type: str = "application/octet-stream") -> ObjectWriter:
        return _FileWriter(self.path(key))

    async def upload(self, key: str, path: Path, content_type: str = "application/octet-stream") -> int:
        target = self.path(key)

        def copy() -> int:
            make_private_dirs(target.parent)
            partial = target.with_name(target.name + ".partial")
            copy_private(path, partial)
            os.replace(partial, target)
            return target.stat().st_size

        return await asyncio.to_thread(copy)

    async def download(self, key: str, path: Path) -> int:
        source = self.path(key)
        if not source.exists():
            raise ObjectNotFound(key)
        await asyncio.to_thread(copy_private, source, path)
        return (await asyncio.to_thread(path.stat)).st_size

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncGenerator[bytes, None]:
        """The object's bytes from `offset` (`length` of them, or to the end), a chunk at a time."""
        source = self.path(key)
        if not source.exists():
            raise ObjectNotFound(key)
        handle = await asyncio.to_thread(source.open, "rb")
        try:
            handle.seek(offset)
            left = sys.maxsize if length is None else length
            while left > 0 and (chunk := await asyncio.to_thread(handle.read, min(CHUNK_SIZE, left))):
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.exists() else None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; returns how many."""
        check_prefix(prefix)
        head, _, tail = prefix.rpartition("/")
        directory = self.path(head) if head else self.root

        def remove() -> int:
            if not directory.is_dir():
                return 0
            removed = 0
            for entry in directory.iterdir():
                if not entry.name.startswith(tail):
                    continue
                if entry.is_dir():
                    removed += sum(1 for path in entry.rglob("*") if not path.is_dir())
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                    removed += 1
            return removed

        return await asyncio.to_thread(remove)

    async def url(self, key: str, expires: int = 3600, disposition: str | None = None) -> str | None:
        return None  # served by the API with the tenant's key

    async def check(self) -> None:
        """Writable for real (a probe file made and removed), not only by permission bits,
        which say yes to root on a read-only or immutable directory."""
        try:
            await asyncio.to_thread(self._probe)
        except OSError as exc:
            raise DependencyUnavailable("storage", f"{self.root} is not writable ({exc.strerror or exc})") from exc

    def _probe(self) -> None:
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".health-"):
            pass


class _FileWriter:
    """Written under a `.partial` name and renamed once synced, so a reader never sees half
    an object. Up to `CHUNK_SIZE` is held in memory first: a small upload costs one trip to
    a thread (create, write, sync, rename), not one per chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.handle: BinaryIO | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.size += len(data)
        if self.pending_bytes >= CHUNK_SIZE:
            await asyncio.to_thread(self._flush, self._take())

    async def commit(self) -> int:
        await asyncio.to_thread(self._finish, self._take())
        return self.size

    def _take(self) -> list[bytes]:
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        return pending

    def _flush(self, chunks: list[bytes]) -> BinaryIO:
        if self.handle is None:
            make_private_dirs(self.path.parent)
            self.handle = open(self.partial, "wb", opener=private_opener)
        self.handle.writelines(chunks)
        return self.handle

    def _finish(self, chunks: list[bytes]) -> None:
        handle = self._flush(chunks)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(self.partial, self.path)

    async def abort(self) -> None:
        self.pending = []
        if self.handle is not None:
            self.handle.close()
        await asyncio.to_thread(self.partial.unlink, missing_ok=True)
