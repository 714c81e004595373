"""SIGTERM to the API (uvicorn as documented, in its own process) drains in-flight
uploads: an upload still streaming when the signal arrives gets its 202, and its job is
recorded; new connections are refused meanwhile."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from testkit.chaos import job_rows, numbered_pdf
from testkit.processes import ApiProcess, settings_env
from testkit.service import client, until

pytestmark = pytest.mark.timeout(60)


async def _refused(url: str, key: str) -> bool:
    try:
        async with client(url, key) as late:
            await late.get("/v1/jobs")
    except httpx.ConnectError:
        return True
    return False


async def test_sigterm_drains_an_upload_in_progress(settings, tenant, tmp_path):
    api = ApiProcess(settings_env(settings), tmp_path / "api.log").start()
    halfway = asyncio.Event()

    async def slow_body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        yield numbered_pdf(1)
        halfway.set()
        await asyncio.sleep(1.5)  # SIGTERM arrives now
        yield b"%more bytes after the signal\n\r\n--b--\r\n"

    try:
        async with client(api.url, tenant[1]) as http:
            upload = asyncio.create_task(
                http.post(
                    "/v1/documents", content=slow_body(), headers={"Content-Type": "multipart/form-data; boundary=b"}
                )
            )
            await halfway.wait()
            await asyncio.sleep(0.3)  # the API is reading the body when the signal comes
            api.signal(signal.SIGTERM)
            await until(lambda: _refused(api.url, tenant[1]), timeout=5)  # no new connections
            response = await upload
        exit_code = await asyncio.to_thread(api.wait, 30)
    finally:
        api.stop()
    assert response.status_code == 202, api.log()
    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    rows = await job_rows(settings.database_url, [response.json()["id"]])
    assert rows[response.json()["id"]]["status"] == "queued"
