"""The dashboard in a real headless Chromium: login, numbers that match the API, live
updates, retry and cancel from the page, and no console errors."""

import asyncio
import contextlib
import os
import re
import subprocess
from pathlib import Path

from playwright.async_api import expect

from conveyor.kinds import Pipeline, Stage
from pipelines import registry
from service.errors import JobError
from testkit import sample_kinds
from testkit.dashboard import SCREENSHOTS, browser, dashboard, open_page, submit  # noqa: F401 (fixtures)
from testkit.service import ADMIN_KEY, client, new_tenant, publish_kinds, running_worker, wait_for_job


async def _first_try_fails(run, input):
    await run.progress(0.5)
    if run.attempt == 1 and run.job["metadata"].get("flaky"):
        raise JobError("the first attempt of this job always fails", type="flaky")
    return {"attempt": run.attempt}


async def _slow(run, input):
    while run.job["metadata"].get("slow"):
        await asyncio.sleep(0.05)
    return {}


def pipeline():
    return Pipeline(
        "document",
        (Stage("store", _first_try_fails), Stage("wait", _slow)),
        timeout=60,
        result=lambda outputs: outputs["store"],
    )


def _metric(text: str, name: str, queue: str) -> float:
    prefix = f'{name}{{queue="{queue}"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix) :])


async def test_overview_numbers_match_the_api(dashboard, browser, tenant):
    api, settings = dashboard
    async with client(api.url, tenant[1]) as http:
        job_ids = [await submit(http), await submit(http), await submit(http)]
        page, problems = await open_page(browser, api.url)
        queue_row = page.locator(f'#queues tr[data-queue="{settings.queue_name}"]')
        await expect(queue_row.locator(".queued")).to_have_text("3")
        listed = (await http.get("/v1/jobs", params={"status": "queued"})).json()["items"]
        scraped = (await http.get("/metrics")).text
        assert _metric(scraped, "conveyor_queue_depth", settings.queue_name) == 3
        assert {job["id"] for job in listed} >= set(job_ids)
        for job_id in job_ids:
            await expect(page.locator(f'#recent tr[data-job-id="{job_id}"] .status')).to_have_text("queued")
        await expect(page.locator("#workers-count")).to_have_text("0")

        async with running_worker(settings, [pipeline()]):
            for job_id in job_ids:
                await wait_for_job(http, job_id)
            # live: the page was not reloaded
            await expect(queue_row.locator(".queued")).to_have_text("0")
            await expect(page.locator("#workers-count")).to_have_text("1")
            for job_id in job_ids:
                await expect(page.locator(f'#recent tr[data-job-id="{job_id}"] .status')).to_have_text("succeeded")
            overview = await http.get("/dashboard/api/overview", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert overview.json()["hour"]["succeeded"] >= 3
            await expect(page.locator("#hour-finished")).to_have_text(str(overview.json()["hour"]["finished"]))
            await page.goto("/dashboard/?status=succeeded&kind=document")
            await expect(page.locator("#recent tbody tr[data-job-id]").first).to_be_visible()
            statuses = await page.locator("#recent tbody .status").all_text_contents()
            assert statuses and set(statuses) == {"succeeded"}
            if SCREENSHOTS:
                await page.goto("/dashboard/")
                await page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-overview.png"), full_page=True)
    assert problems == []


async def test_retry_and_cancel_from_the_job_page(dashboard, browser, tenant):
    api, settings = dashboard
    async with client(api.url, tenant[1]) as http, running_worker(settings, [pipeline()]):
        flaky = await submit(http, flaky=True)
        failed = await wait_for_job(http, flaky)
        assert failed["status"] == "failed"
        page, problems = await open_page(browser, api.url)

        await page.goto(f"/dashboard/jobs/{flaky}")
        await expect(page.locator("#job-status")).to_have_text("failed")
        await expect(page.locator("#job-error")).to_contain_text("the first attempt of this job always fails")
        await expect(page.locator('#timeline li[data-stage="store"] .status')).to_have_text("failed")
        await expect(page.locator("#cancel")).to_be_disabled()
        await page.click("#retry")
        await expect(page.locator("#job-status")).to_have_text("succeeded")
        assert (await http.get(f"/v1/jobs/{flaky}")).json()["status"] == "succeeded"
        await expect(page.locator("#job-result")).to_contain_text('"attempt": 2')
        await expect(page.locator('#timeline li[data-stage="wait"] .status')).to_have_text("succeeded")

        slow = await submit(http, slow=True)
        await wait_for_job(http, slow, statuses=("running",))
        await page.goto(f"/dashboard/jobs/{slow}")
        await expect(page.locator("#job-status")).to_have_text("running")
        if SCREENSHOTS:
            await page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-job.png"), full_page=True)
        await page.click("#cancel")
        await expect(page.locator("#job-status")).to_have_text("cancelled")
        assert (await wait_for_job(http, slow))["status"] == "cancelled"
        await expect(page.locator("#retry")).to_be_enabled()
    assert problems == []


TO_THE_SECOND = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
PHONE = {"width": 375, "height": 740}


async def _redrawn(page, rows: str) -> None:
    """Wait until the page's poll has replaced the server-rendered `rows` (JS drew them)."""
    await page.evaluate(f"document.querySelectorAll('{rows}').forEach((row) => row.dataset.server = '1')")
    await expect(page.locator(f"{rows}[data-server]")).to_have_count(0)
    await expect(page.locator(rows)).to_have_count(1)


async def test_a_failed_job_reads_plainly_live_in_the_list_and_on_its_page(dashboard, browser, tenant):
    api, settings = dashboard
    async with client(api.url, tenant[1]) as http:
        job_id = await submit(http, flaky=True)
        page, problems = await open_page(browser, api.url)
        await page.goto(f"/dashboard/jobs/{job_id}")
        for box in ("#job-error-box", "#job-result-box", "#job-media"):
            await expect(page.locator(box)).to_be_hidden()  # nothing to show yet: no empty boxes
        async with running_worker(settings, [pipeline()]):
            failed = await wait_for_job(http, job_id)
        assert failed["status"] == "failed"
        await expect(page.locator("#job-status")).to_have_text("failed")  # redrawn by the page's poll
        await expect(page.locator("#job-error")).to_contain_text("the first attempt of this job always fails")
        await expect(page.locator("#job-result-box")).to_be_hidden()
        await expect(page.locator('#timeline li[data-stage="wait"] .status')).to_have_text("skipped")
        finished = page.locator("#job-finished time")
        await expect(finished).to_have_attribute("title", failed["finished_at"])
        assert TO_THE_SECOND.fullmatch(await finished.text_content())

        await page.goto("/dashboard/")
        await _redrawn(page, f'#failed tr[data-job-id="{job_id}"]')
        row = page.locator(f'#failed tr[data-job-id="{job_id}"]')
        await expect(row.locator(".error-type")).to_have_text("flaky")
        await expect(page.locator("#failed th").nth(4)).to_have_text("Error")
        created = row.locator("time")
        await expect(created).to_have_attribute("title", failed["created_at"])
        assert TO_THE_SECOND.fullmatch(await created.text_content())
    assert problems == []


async def test_a_video_job_shows_its_thumbnail_and_renditions(dashboard, browser, tenant, tmp_path):
    api, settings = dashboard
    source = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=256x144:r=10:d=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(source),
        ],
        check=True,
        timeout=60,
    )
    [video] = [pipeline for pipeline in registry.pipelines(settings) if pipeline.name == "video"]
    async with client(api.url, tenant[1]) as http, running_worker(settings, [video]):
        response = await http.post(
            "/v1/videos", files={"file": ("clip.mp4", source.read_bytes(), "video/mp4")}, data={"renditions": "144p"}
        )
        assert response.status_code == 202, response.text
        done = await wait_for_job(http, response.json()["id"], timeout=120)
        assert done["status"] == "succeeded", done
        page, problems = await open_page(browser, api.url)
        await page.goto(f"/dashboard/jobs/{done['id']}")
        await expect(page.locator("#job-media")).to_be_visible()
        thumbnail = page.locator("#job-thumbnail")
        await expect(thumbnail).to_have_js_property("complete", True)
        await expect(thumbnail).to_have_js_property("naturalWidth", done["result"]["thumbnail"]["width"])
        link = page.locator("#job-renditions a")
        await expect(link).to_have_text("144p")
        fetched = await page.request.get(await link.get_attribute("href"))  # with the admin's session
        from_api = await http.get(done["result"]["renditions"][0]["url"])  # with the tenant's key
        assert fetched.status == 200 and fetched.headers["content-type"] == "video/mp4"
        assert await fetched.body() == from_api.content and from_api.status_code == 200
        await expect(page.locator("#job-result")).to_contain_text(done["result"]["renditions"][0]["url"])
        refused = await http.get(await link.get_attribute("href"))  # a tenant's key is not the admin's
    assert refused.status_code == 401
    assert problems == []


async def test_pages_fit_a_phone(dashboard, browser, tenant):
    api, settings = dashboard
    async with client(api.url, tenant[1]) as http, running_worker(settings, [pipeline()]):
        failed = await submit(http, flaky=True)
        await wait_for_job(http, failed)
        succeeded = await submit(http)
        await wait_for_job(http, succeeded)
    page, problems = await open_page(browser, api.url, viewport=PHONE)
    for path in ("/dashboard/", f"/dashboard/jobs/{failed}", f"/dashboard/jobs/{succeeded}"):
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    assert problems == []


@contextlib.asynccontextmanager
async def two_tenants(api, settings):
    """A named tenant's API client and another tenant's: a bulk action filtered by the
    first must leave the second's jobs alone."""
    name = f"bulk-{os.urandom(4).hex()}"
    _, key = await new_tenant(settings, name)
    _, other_key = await new_tenant(settings)
    async with client(api.url, key) as http, client(api.url, other_key) as other:
        yield name, http, other


async def test_retry_all_failed_jobs_the_filters_match(dashboard, browser):
    api, settings = dashboard
    async with two_tenants(api, settings) as (name, http, other):
        mine = [await submit(http, flaky=True) for _ in range(2)]
        theirs = await submit(other, flaky=True)
        async with running_worker(settings, [pipeline()]):
            for job_id in mine:
                assert (await wait_for_job(http, job_id))["status"] == "failed"
            assert (await wait_for_job(other, theirs))["status"] == "failed"
            page, problems = await open_page(browser, api.url)
            await page.goto(f"/dashboard/?tenant={name}&kind=document")
            await page.click("#retry-failed")
            await expect(page.locator("#retry-failed-result")).to_have_text("2 of 2 retried")
            for job_id in mine:
                assert (await wait_for_job(http, job_id))["status"] == "succeeded"
        assert (await other.get(f"/v1/jobs/{theirs}")).json()["status"] == "failed"  # another tenant's
    assert problems == []


async def test_cancel_every_unfinished_job_the_filters_match_after_confirming_the_count(dashboard, browser):
    api, settings = dashboard
    async with two_tenants(api, settings) as (name, http, other):
        mine = [await submit(http) for _ in range(3)]  # queued: no worker runs
        theirs = await submit(other)
        page, problems = await open_page(browser, api.url)
        await page.goto(f"/dashboard/?tenant={name}&kind=document")
        asked: list[str] = []

        async def confirm(dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.on("dialog", confirm)
        await page.click("#cancel-unfinished")
        await expect(page.locator("#cancel-unfinished-result")).to_have_text("3 of 3 cancelled")
        assert [(await wait_for_job(http, job_id))["status"] for job_id in mine] == ["cancelled"] * 3
        assert (await other.get(f"/v1/jobs/{theirs}")).json()["status"] == "queued"  # another tenant's
    assert asked == ["Cancel 3 jobs?"]  # counted by a dry run first
    assert problems == []


async def test_schedules_show_their_cadence_next_run_and_pause_live(dashboard, browser):
    api, settings = dashboard
    await publish_kinds(settings, sample_kinds.greet.describe(settings))
    name = f"sched-{os.urandom(4).hex()}"
    _, key = await new_tenant(settings, name)
    async with client(api.url, key) as http:
        body = {"name": "nightly greeting", "kind": "greet", "input": {"name": "Ada"}, "cron": "30 2 * * *"}
        response = await http.post("/v1/schedules", json={**body, "timezone": "America/New_York"})
        assert response.status_code == 201, response.text
        schedule = response.json()
        page, problems = await open_page(browser, api.url)
        await page.goto(f"/dashboard/?tenant={name}")
        row = page.locator(f'#schedules tr[data-schedule="{schedule["id"]}"]')
        await expect(row).to_contain_text("nightly greeting")
        await expect(row).to_contain_text("cron 30 2 * * * (America/New_York)")
        await expect(row.locator(".next-run time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
        assert (await http.patch(f"/v1/schedules/{schedule['id']}", json={"paused": True})).status_code == 200
        await expect(row.locator(".next-run")).to_have_text("paused")  # the overview is polled
    assert problems == []
