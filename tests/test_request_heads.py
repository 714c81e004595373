"""Huge request heads: refused early (431 or a closed connection), for a few milliseconds
of the API's CPU, where an unbounded parser spent seconds (quadratic in the header size)."""

from __future__ import annotations

import httpx

from testkit.heads import cpu_seconds, send_huge_header
from testkit.processes import ApiProcess, settings_env
from testkit.service import client

HUGE = 64 * 1024 * 1024  # unbounded: 7 s of the API's CPU on a quiet 2-core machine
CPU_BUDGET = 2.0


def test_a_huge_header_costs_the_documented_api_next_to_nothing(settings, tmp_path):
    api = ApiProcess(settings_env(settings), tmp_path / "api.log").start()
    try:
        assert httpx.get(api.url + "/livez").status_code == 200
        before = cpu_seconds(api.pid)
        answer = send_huge_header(api.port, HUGE)
        spent = cpu_seconds(api.pid) - before
        still_serving = httpx.get(api.url + "/livez")
        many_fields = httpx.get(api.url + "/livez", headers={f"x-field-{n}": "1" for n in range(150)})
    finally:
        api.stop()
    assert spent < CPU_BUDGET, f"the API spent {spent:.1f} s of CPU on one request head"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert still_serving.status_code == 200
    assert many_fields.status_code == 431 and many_fields.headers["content-type"] == "application/problem+json"


async def test_too_many_or_too_large_header_fields_get_431(api, tenant):
    """What reaches the app past the bounds (whatever server runs it) is refused, problem+json."""
    many = {f"x-field-{n}": "1" for n in range(150)}
    large = {f"x-field-{n}": "v" * 8000 for n in range(9)}
    async with client(api.url, tenant[1]) as http:
        for headers in (many, large):
            response = await http.get("/v1/jobs", headers=headers)
            assert response.status_code == 431, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 431
        assert (await http.get("/v1/jobs", headers={f"x-field-{n}": "v" * 100 for n in range(50)})).status_code == 200
