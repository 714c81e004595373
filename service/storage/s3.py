"""Storage in an S3 bucket, on AWS or any S3-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from service.errors import DependencyUnavailable
from service.storage.base import CHUNK_SIZE, PART_SIZE, ObjectNotFound, ObjectWriter, check_prefix

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, GetObjectRequestTypeDef, ObjectIdentifierTypeDef


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
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=S3_CONNECTIONS,
        )
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
        check_prefix(prefix)
        removed = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            async for page in pages:
                objects: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if not objects:
                    continue
                answer = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
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
