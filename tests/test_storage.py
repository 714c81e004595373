"""Storage on a real S3-compatible server over HTTP and on a directory."""

import hashlib
import os

import boto3
import pytest

from service.storage import PART_SIZE, ObjectNotFound, open_storage


def _s3_url(s3_server) -> str:
    bucket = "conveyor-" + os.urandom(4).hex()
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/prefix"


@pytest.fixture
async def s3(s3_server):
    storage = open_storage(_s3_url(s3_server), s3_server.endpoint_url)
    await storage.open()
    yield storage
    await storage.close()


@pytest.fixture(params=[pytest.param("s3", marks=pytest.mark.integration), "files"])
async def storage(request, tmp_path):
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        backend = open_storage(_s3_url(server), server.endpoint_url)
    else:
        backend = open_storage(f"file://{tmp_path}/root")
    await backend.open()
    yield backend
    await backend.close()


async def test_streamed_write_multipart_and_read_back(storage, tmp_path):
    payload = os.urandom(PART_SIZE * 2 + 12345)  # three parts on S3
    writer = storage.writer("t/a/original")
    for start in range(0, len(payload), 1 << 20):
        await writer.write(payload[start : start + (1 << 20)])
    assert await writer.commit() == len(payload)
    assert await storage.size("t/a/original") == len(payload)
    target = tmp_path / "copy"
    await storage.download("t/a/original", target)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()
    chunks = [chunk async for chunk in storage.read("t/a/original")]
    assert b"".join(chunks) == payload
    await storage.delete("t/a/original")
    assert await storage.size("t/a/original") is None
    with pytest.raises(ObjectNotFound):
        await storage.download("t/a/original", target)


async def test_reads_a_span_of_an_object(storage):
    payload = os.urandom(3 * (1 << 20) + 17)  # spans cross the 1 MiB read chunks
    writer = storage.writer("t/r/720p.mp4")
    await writer.write(payload)
    await writer.commit()
    for offset, length in ((0, 10), (5, (1 << 20) + 3), (len(payload) - 7, 7), (len(payload) - 7, None), (123, None)):
        got = b"".join([chunk async for chunk in storage.read("t/r/720p.mp4", offset, length)])
        assert got == payload[offset : None if length is None else offset + length], (offset, length)


async def test_aborted_write_leaves_nothing(storage):
    writer = storage.writer("t/b/original")
    await writer.write(os.urandom(PART_SIZE + 10))
    await writer.abort()
    assert await storage.size("t/b/original") is None


async def test_upload_file_and_presigned_url(s3, tmp_path):
    import httpx

    source = tmp_path / "r.mp4"
    source.write_bytes(b"rendition")
    assert await s3.upload("t/c/720p.mp4", source, "video/mp4") == 9
    url = await s3.url("t/c/720p.mp4")
    download = await s3.url("t/c/720p.mp4", disposition='attachment; filename="clip.mp4"')
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"rendition"
        saved = await http.get(download)
    assert saved.content == b"rendition" and saved.headers["content-disposition"] == 'attachment; filename="clip.mp4"'


def test_file_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(ValueError):
        open_storage(f"file://{tmp_path}").path("../../etc/passwd")


async def test_delete_prefix_removes_only_what_it_names(storage):
    keys = [
        "tenants/t/jobs/a/original",
        "tenants/t/jobs/a/renditions/720p.mp4",
        "tenants/t/jobs/ab/original",
        "tenants/t/jobs/b/original",
        "tenants/u/jobs/a/original",
    ]
    for key in keys:
        writer = storage.writer(key)
        await writer.write(key.encode())
        await writer.commit()
    assert await storage.delete_prefix("tenants/t/jobs/a/") == 2
    remaining = {key for key in keys if await storage.size(key) is not None}
    assert remaining == set(keys[2:])
    assert await storage.delete_prefix("tenants/t/jobs/a/") == 0
    assert await storage.delete_prefix("tenants/t/jobs/") == 2  # ab and b
    assert await storage.size("tenants/u/jobs/a/original") == len(keys[4])
    assert await storage.delete_prefix("nothing/here/") == 0
    with pytest.raises(ValueError):
        await storage.delete_prefix("/")


async def test_delete_prefix_pages_through_more_than_one_listing(s3):
    """S3 lists and deletes at most 1,000 keys per call: 1,005 objects take two pages."""
    import asyncio

    async def put(n: int) -> None:
        writer = s3.writer(f"tenants/t/jobs/many/{n:04}")
        await writer.write(b"x")
        await writer.commit()

    for start in range(0, 1005, 100):
        await asyncio.gather(*(put(n) for n in range(start, min(start + 100, 1005))))
    assert await s3.delete_prefix("tenants/t/jobs/many/") == 1005
    assert await s3.size("tenants/t/jobs/many/0000") is None
