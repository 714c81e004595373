"""Who may use the dashboard: its JSON and actions need the admin key, it is off without
one, sessions end on the server (one, or all of them), and the session cookie is Secure
when PUBLIC_URL says https."""

import asyncio

import pytest
from pydantic import SecretStr

from testkit.dashboard import dashboard, submit  # noqa: F401 (fixtures)
from testkit.service import ADMIN_KEY, ApiServer, client


async def test_dashboard_json_and_actions_need_the_admin_key(dashboard, tenant):
    api, _ = dashboard
    async with client(api.url, tenant[1]) as http, client(api.url) as anonymous, client(api.url, ADMIN_KEY) as admin:
        job_id = await submit(http)
        tenant_key = await anonymous.get("/dashboard/api/overview", headers={"Authorization": f"Bearer {tenant[1]}"})
        nobody = await anonymous.get(f"/dashboard/api/jobs/{job_id}")
        page = await anonymous.get("/dashboard/")
        detail = await admin.get(f"/dashboard/api/jobs/{job_id}")
        cancelled = await admin.post(f"/dashboard/api/jobs/{job_id}/cancel")
        anonymous.cookies.set("conveyor_admin", "forged.cookie")
        forged = await anonymous.post(f"/dashboard/api/jobs/{job_id}/retry", headers={"X-Conveyor-Dashboard": "1"})
    assert tenant_key.status_code == 401 and nobody.status_code == 401
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    assert detail.status_code == 200 and detail.json()["id"] == job_id
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert forged.status_code == 401


async def test_dashboard_is_off_without_an_admin_key(api):
    async with client(api.url) as http:
        response = await http.get("/dashboard/login")
    assert response.status_code == 404


async def _log_in(http) -> str:
    """A new dashboard session's cookie value, as a browser gets it."""
    response = await http.post("/dashboard/login", data={"key": ADMIN_KEY})
    assert response.status_code == 303, response.text
    return response.cookies["conveyor_admin"]


async def _overview_status(http, cookie: str) -> int:
    return (await http.get("/dashboard/api/overview", headers={"Cookie": f"conveyor_admin={cookie}"})).status_code


async def test_sessions_end_on_the_server_one_or_all(dashboard):
    """A copied cookie dies with the session it belongs to: at log-out, at "log out
    everywhere" (from the page or the CLI), as when the admin key changes."""
    from click.testing import CliRunner

    from service.cli import app as cli

    api, settings = dashboard
    async with client(api.url) as http:
        stolen = await _log_in(http)
        assert await _overview_status(http, stolen) == 200
        await http.post("/dashboard/logout", headers={"Cookie": f"conveyor_admin={stolen}"})
        assert await _overview_status(http, stolen) == 401

        here, elsewhere = await _log_in(http), await _log_in(http)
        assert await _overview_status(http, elsewhere) == 200
        await http.post("/dashboard/logout-everywhere", headers={"Cookie": f"conveyor_admin={here}"})
        assert (await _overview_status(http, here), await _overview_status(http, elsewhere)) == (401, 401)

        last = await _log_in(http)
        ended = await asyncio.to_thread(
            CliRunner().invoke, cli, ["dashboard", "logout-everywhere", "--database-url", settings.database_url]
        )
        assert ended.exit_code == 0 and "session(s) ended" in ended.output
        assert await _overview_status(http, last) == 401

        kept = await _log_in(http)
    rekeyed = settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY[::-1])})
    async with ApiServer(rekeyed) as other, client(other.url) as http:
        assert await _overview_status(http, kept) == 401


@pytest.mark.parametrize(("public_url", "secure"), [("https://conveyor.example.com", True), (None, False)])
async def test_the_session_cookie_is_secure_when_public_url_says_https(settings, public_url, secure):
    settings = settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY), "public_url": public_url})
    async with ApiServer(settings) as api, client(api.url) as http:
        response = await http.post("/dashboard/login", data={"key": ADMIN_KEY})
    attributes = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert ("secure" in attributes) == secure
