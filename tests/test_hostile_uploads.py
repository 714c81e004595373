"""Uploads as hostile input: each is refused with a precise 4xx problem, or accepted under
a generated key inside the tenant's prefix; the client's name never becomes a path, and
memory stays bounded however large the body. (What the pipelines do with hostile content
— truncated PDFs, bombs, absurd page counts or video dimensions — is tested next to them:
tests/test_documents_pages.py, tests/test_videos_probe.py.)"""

from __future__ import annotations

import json
import tracemalloc
import uuid
from pathlib import Path

import asyncpg
import pytest

from testkit.chaos import numbered_pdf
from testkit.files import multipart_file
from testkit.service import ApiServer, client, make_settings

pytestmark = pytest.mark.timeout(60)
PROBLEM = "application/problem+json"
BOUNDARY = b"hostile-boundary"


def raw_multipart(filename: bytes, content: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: application/pdf\r\n\r\n'
        + content
        + b"\r\n--"
        + BOUNDARY
        + b"--\r\n"
    )


async def post_raw(http, body: bytes):
    return await http.post(
        "/v1/documents", content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    )


@pytest.mark.parametrize(
    ("content", "status", "problem"),
    [
        (b"MZ\x90\x00\x03" + b"\x00" * 600, 415, "unsupported-media-type"),  # an executable named .pdf
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 600, 415, "unsupported-media-type"),
        (b"<html><script>alert(1)</script>" + b" " * 1100 + b"%PDF-1.4", 415, "unsupported-media-type"),
        (b"PK\x03\x04" + b"\x00" * 2000 + b"%PDF-1.4", 415, "unsupported-media-type"),  # PDF header too deep
        (b"GIF89a" + b"\x00" * 600, 415, "unsupported-media-type"),
        (b"", 400, "empty-file"),
    ],
)
async def test_what_is_not_a_document_is_refused_precisely(api, tenant, content, status, problem):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/documents", files=multipart_file(content, "resume.pdf"))
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/" + problem)


@pytest.mark.parametrize(
    "body",
    [
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"\r\n\r\n%PDF-1.4 never ends',
        b"not multipart at all",
        b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n",
    ],
)
async def test_malformed_multipart_is_400(api, tenant, body):
    async with client(api.url, tenant[1]) as http:
        response = await post_raw(http, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("size", [1_000, 200_000])
async def test_a_file_in_a_misnamed_part_is_told_where_it_goes(api, tenant, size):
    pdf = numbered_pdf(1)
    content = pdf + b"%" * (size - len(pdf)) if size > len(pdf) else pdf
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/documents", files={"document": ("cv.pdf", content, "application/pdf")})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert "the file came in a part named 'document': send the file in a part named 'file'" in response.json()["detail"]


async def test_an_html_pdf_polyglot_is_refused(api, tenant):
    """A file that opens as HTML in a browser and as a PDF in a reader is refused (415): a
    PDF header may only follow a BOM or blank lines, never markup."""
    polyglot = b"<html><body>hi</body></html>\n" + numbered_pdf(1)
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/documents", files=multipart_file(polyglot, "page.pdf"))
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "filename",
    [
        b"../../../../etc/passwd",
        b"..\\..\\windows\\system32\\evil.pdf",
        b"/absolute/path.pdf",
        b"nul\x00byte.pdf",
        b"\xff\xfe\xfdnot-utf8.pdf",
        b"long" * 5000 + b".pdf",
        b"line\r\nbreak.pdf",
    ],
)
async def test_names_never_become_paths(api, tenant, settings, filename):
    tenant_id, key = tenant
    async with client(api.url, key) as http:
        response = await post_raw(http, raw_multipart(filename, numbered_pdf(2)))
    assert response.status_code in (202, 400), response.text
    assert response.headers["content-type"] in ("application/json", PROBLEM)
    storage = settings.storage_url.removeprefix("file://")
    stored = [path for path in Path(storage).rglob("*") if path.is_file()]
    assert all(path.relative_to(storage).parts[:2] == ("tenants", str(tenant_id)) for path in stored)
    if response.status_code == 202:
        job_id = response.json()["id"]
        assert [path.relative_to(storage).as_posix() for path in stored] == [
            f"tenants/{tenant_id}/jobs/{job_id}/original"
        ]
        name = (await _payloads(settings.database_url, [job_id]))[0]["input"]["filename"]
        assert name is None or ("/" not in name and "\\" not in name and name.isprintable() and len(name) <= 255)


async def _payloads(database_url: str, ids: list[str]) -> list[dict]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        rows = await conn.fetch("SELECT payload FROM jobs WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    finally:
        await conn.close()
    return [row["payload"] for row in rows]


async def test_a_large_upload_streams_in_bounded_memory(database_url, redis_server, tmp_path, tenant):
    size = 32 * 1024 * 1024
    settings = make_settings(database_url, redis_server.url, tmp_path / "storage", max_upload_bytes=size * 2)

    async def body():
        yield b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n\r\n'
        yield b"%PDF-1.4\n"
        chunk = b"0" * (256 * 1024)
        for _ in range(size // len(chunk)):
            yield chunk
        yield b"\r\n--" + BOUNDARY + b"--\r\n"

    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        tracemalloc.start()
        try:
            response = await http.post(
                "/v1/documents",
                content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"},
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 202, response.text
    assert response.json()["id"]
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte upload"


async def test_request_size_limit_cuts_off_a_lying_client(database_url, redis_server, tmp_path, tenant):
    """No Content-Length (chunked): the body is cut off with 413 as soon as it passes the limit."""
    settings = make_settings(database_url, redis_server.url, tmp_path / "storage", max_upload_bytes=100_000)

    async def body():
        yield (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n\r\n%PDF-1.4\n'
        )
        for _ in range(400):
            yield b"0" * (64 * 1024)

    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        response = await http.post(
            "/v1/documents",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert not [path for path in (tmp_path / "storage").rglob("*") if path.is_file()]
