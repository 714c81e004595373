"""The dashboard's test harness: the API with an admin key, a real headless Chromium, a
page logged in that records console errors and failed requests, and a document to show."""

import json
import os

import pytest
from playwright.async_api import async_playwright, expect
from pydantic import SecretStr

from .files import multipart_file, text_pdf
from .service import ADMIN_KEY, ApiServer

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("DASHBOARD_SCREENSHOTS")  # a directory: save screenshots there (docs/)


@pytest.fixture
async def dashboard(settings):
    settings = settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})
    async with ApiServer(settings) as api:
        yield api, settings


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def open_page(browser, base_url: str, viewport: dict | None = None):
    """A logged-in page that records console errors and failed requests."""
    context = await browser.new_context(base_url=base_url, viewport=viewport or {"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    await page.goto("/dashboard/")
    assert page.url.endswith("/dashboard/login")
    await page.fill("#key", "not the key")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_be_visible()
    problems.clear()  # the wrong key's 401 is logged by the browser, as it should be
    await page.fill("#key", ADMIN_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboard/")
    cookie = next(cookie for cookie in await context.cookies() if cookie["name"] == "conveyor_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return page, problems


async def submit(http, **metadata) -> str:
    response = await http.post(
        "/v1/documents", files=multipart_file(text_pdf("x")), data={"metadata": json.dumps(metadata)}
    )
    assert response.status_code == 202
    return response.json()["id"]
