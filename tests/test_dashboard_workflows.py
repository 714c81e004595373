"""A workflow on the dashboard, in a real headless Chromium: its steps drawn as a graph
with their `after` edges, coloured by status and kept live while it runs; reached from
the overview and from its jobs' pages; its JSON only for the admin."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from testkit.dashboard import SCREENSHOTS, browser, dashboard, open_page  # noqa: F401 (fixtures)
from testkit.service import ADMIN_KEY, client, running_worker, until
from tests.test_kinds import sample_pipelines
from tests.test_workflows import _status_is, finished, kinds_published, submit


async def test_a_workflows_graph_is_coloured_by_its_steps_status_live(dashboard, browser, tenant, tmp_path):
    api, settings = dashboard
    gate = tmp_path / "gate"
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "fetch": {"kind": "echo", "input": {"gate": str(gate)}},
                "resize": {"kind": "echo", "input": {}, "after": ["fetch"]},
                "check": {"kind": "echo", "input": {"fail_unless": str(tmp_path / "no")}, "after": ["fetch"]},
                "publish": {"kind": "echo", "input": {}, "after": ["resize", "check"]},
            },
        )
        fetch_job = created["steps"]["fetch"]["jobs"][0]
        await until(lambda: _status_is(http, fetch_job, "running"), timeout=30)
        page, problems = await open_page(browser, api.url)
        await page.goto(f"/dashboard/workflows/{created['id']}")
        graph = page.locator("#workflow-graph")
        await expect(graph.locator("path.edge")).to_have_count(4)
        await expect(graph.locator('path.edge[data-from="check"][data-to="publish"]')).to_have_count(1)
        await expect(graph.locator('g[data-step="fetch"]')).to_have_class("node status-running")
        await expect(graph.locator('g[data-step="publish"] .node-status')).to_have_text("waiting")
        await expect(page.locator("#workflow-status")).to_have_text("running")

        gate.touch()
        done = await finished(http, created["id"])
        # live: the page was not reloaded
        await expect(page.locator("#workflow-status")).to_have_text("failed")
        for step, status in (
            ("fetch", "succeeded"),
            ("resize", "succeeded"),
            ("check", "failed"),
            ("publish", "cancelled"),
        ):
            await expect(graph.locator(f'g[data-step="{step}"]')).to_have_class(f"node status-{status}")
        check_job = done["steps"]["check"]["jobs"][0]
        await expect(page.locator('#steps tr[data-step="check"] .jobs a')).to_have_attribute(
            "href", f"/dashboard/jobs/{check_job}"
        )
        if SCREENSHOTS:
            await page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-workflow.png"), full_page=True)

        await page.goto(f"/dashboard/jobs/{check_job}")
        await page.click("#job-workflow")
        await page.wait_for_url(f"**/dashboard/workflows/{created['id']}")
        await page.goto("/dashboard/")
        row = page.locator(f'#workflows tr[data-workflow-id="{created["id"]}"]')
        await expect(row.locator(".status")).to_have_text("failed")
        await expect(row.locator(".steps")).to_have_text("2/4")
    assert problems == []


async def test_a_workflows_json_needs_the_admin_key_and_an_unknown_one_is_404(dashboard, tenant):
    api, _ = dashboard
    async with client(api.url, tenant[1]) as http, client(api.url, ADMIN_KEY) as admin:
        tenant_key = await http.get("/dashboard/api/workflows/00000000-0000-0000-0000-000000000000")
        unknown = await admin.get("/dashboard/api/workflows/00000000-0000-0000-0000-000000000000")
        malformed = await admin.get("/dashboard/workflows/not-an-id")
    assert tenant_key.status_code == 401
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no such workflow"
    assert malformed.status_code == 404
