"""Where uploads and results live: an S3 bucket (any S3-compatible server) or a directory.

API processes and workers may run on different hosts, so everything that crosses between
them goes through here, never through a local path. Writers stream: an upload is passed
on in parts as it arrives (S3 multipart above `PART_SIZE`), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from service.errors import DependencyUnavailable
from service.file_modes import copy_private, make_private_dirs, private_opener

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, GetObjectRequestTypeDef, ObjectIdentifierTypeDef

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


def open_storage(url: str, endpoint_url: str | None = None) -> Storage:
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return S3Storage(parts.netloc, parts.path.strip("/"), endpoint_url)
    return FileStorage(Path(unquote(parts.netloc + parts.path)).expanduser())


class ObjectNotFound(Exception):
    pass


def _check_prefix(prefix: str) -> None:
    """An empty prefix would mean everything: never what a caller means to delete."""
    if not prefix.strip("/"):
        raise ValueError("refusing to delete with an empty prefix")


# -- a directory --------------------------------------------------------------------------


class FileStorage:
    """Objects as files under one root; for one host, or a shared volume. Files are 0600
    and the directories made for them 0700 (service/file_modes.py): tenants' data."""

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
        _check_prefix(prefix)
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


# -- an S3 bucket -------------------------------------------------------------------------

S3_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)


def _unavailable(exc: Exception) -> DependencyUnavailable:
    return DependencyUnavailable("storage", type(exc).__name__)


S3_CONNECTIONS = 64
"""Requests in flight to S3 per process (botocore's default of 10 queues a busy API's uploads)."""


class S3Storage:
    """Objects in a bucket through aioboto3; one client per process, reused."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        """The S3 client `open` made."""
        if self._client is None:
            raise RuntimeError("S3 storage used before open()")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> tuple[str, str]:
        """(bucket, full object key) of `key`, for services that read the bucket themselves (Textract)."""
        return self.bucket, self._key(key)

    async def open(self) -> None:
        session = aioboto3.Session()
        config = AioConfig(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=S3_CONNECTIONS)
        self._client = await self._stack.enter_async_context(
            session.client("s3", endpoint_url=self.endpoint_url, config=config)
        )

    async def close(self) -> None:
        await self._stack.aclose()

    def writer(self, key: str, content_type: str = "application/octet-stream") -> ObjectWriter:
        return _S3Writer(self, self._key(key), content_type)

    async def upload(self, key: str, path: Path, content_type: str = "application/octet-stream") -> int:
        writer = self.writer(key, content_type)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, PART_SIZE):
                await writer.write(chunk)
            return await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        finally:
            handle.close()

    async def download(self, key: str, path: Path) -> int:
        size = 0
        handle = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in self.read(key):
                await asyncio.to_thread(handle.write, chunk)
                size += len(chunk)
        finally:
            handle.close()
        return size

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncGenerator[bytes, None]:
        """The object's bytes from `offset` (`length` of them, or to the end), a chunk at a time."""
        request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": self._key(key)}
        if offset or length is not None:
            request["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        try:
            response = await self.client.get_object(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from exc
            raise _unavailable(exc) from exc
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_SIZE):
                yield chunk
        finally:
            body.close()

    async def size(self, key: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise _unavailable(exc) from exc
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc
        return head["ContentLength"]

    async def delete(self, key: str) -> None:
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`, a listed page (≤ 1,000) at a time."""
        _check_prefix(prefix)
        removed = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            async for page in pages:
                objects: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if not objects:
                    continue
                answer = await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                if answer.get("Errors"):
                    error = answer["Errors"][0]
                    raise DependencyUnavailable("storage", f"could not delete {error['Key']}: {error['Code']}")
                removed += len(objects)
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc
        return removed

    async def url(self, key: str, expires: int = 3600, disposition: str | None = None) -> str | None:
        """A presigned GET; `disposition` is the Content-Disposition S3 answers it with."""
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return await self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    async def check(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc


class _S3Writer:
    """Buffers one part; a small object is one PUT, a large one a multipart upload."""

    def __init__(self, storage: S3Storage, key: str, content_type: str) -> None:
        self.storage = storage
        self.key = key
        self.content_type = content_type
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []
        self.size = 0

    @property
    def _client(self) -> S3Client:
        return self.storage.client

    async def write(self, data: bytes) -> None:
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= PART_SIZE:
            part = bytes(self.buffer[:PART_SIZE])
            del self.buffer[:PART_SIZE]
            await self._upload_part(part)

    async def _upload_part(self, part: bytes) -> None:
        try:
            if self.upload_id is None:
                created = await self._client.create_multipart_upload(
                    Bucket=self.storage.bucket, Key=self.key, ContentType=self.content_type
                )
                self.upload_id = created["UploadId"]
            number = len(self.parts) + 1
            answer = await self._client.upload_part(
                Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=part
            )
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def commit(self) -> int:
        try:
            if self.upload_id is None:
                await self._client.put_object(
                    Bucket=self.storage.bucket, Key=self.key, Body=bytes(self.buffer), ContentType=self.content_type
                )
            else:
                if self.buffer:
                    await self._upload_part(bytes(self.buffer))
                await self._client.complete_multipart_upload(
                    Bucket=self.storage.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
        except S3_ERRORS as exc:
            raise _unavailable(exc) from exc
        self.buffer.clear()
        return self.size

    async def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is not None:
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
                )
            except S3_ERRORS:
                pass  # the bucket's lifecycle rule for incomplete uploads cleans up the rest
