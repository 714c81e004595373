"""/metrics after a known workload, the worker's own port, and multiprocess mode."""

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.kinds import Pipeline, Stage
from service.cli.processes import queues_to_serve
from service.errors import JobError
from service.telemetry.metrics import record_provider_call
from testkit.files import multipart_file, text_pdf
from testkit.net import free_port, wait_for_port
from testkit.service import client, make_settings, running_worker, until, wait_for_job
from tests.test_kinds import submit as submit_job

pytestmark = pytest.mark.integration


async def _maybe_fail(run, input):
    if run.job["metadata"].get("fail"):
        raise JobError("this one was meant to fail", type="bad_input")
    return {}


def pipeline():
    return Pipeline("document", (Stage("store", _maybe_fail),), timeout=30)


def samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(table: dict, name: str, **labels) -> float:
    return table.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http) -> dict:
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def submit(http, **metadata):
    data = {"metadata": json.dumps(metadata)} if metadata else None
    response = await http.post("/v1/documents", files=multipart_file(text_pdf("x")), data=data)
    assert response.status_code == 202
    return response.json()["id"]


async def test_metrics_after_a_known_workload(api, settings, tenant):
    queue = settings.queue_name
    async with client(api.url, tenant[1]) as http:
        before = await scrape(http)
        waiting = [await submit(http), await submit(http), await submit(http, fail=True)]
        queued = await scrape(http)
        async with running_worker(settings, [pipeline()]):
            done = [await wait_for_job(http, job_id) for job_id in waiting]
        record_provider_call("textract", "throttled", 0.2)
        after = await scrape(http)
    assert [job["status"] for job in done] == ["succeeded", "succeeded", "failed"]
    assert value(queued, "conveyor_queue_depth", queue=queue) == 3
    assert value(queued, "conveyor_queue_oldest_age_seconds", queue=queue) > 0
    assert value(after, "conveyor_queue_depth", queue=queue) == 0

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("conveyor_jobs_finished_total", kind="document", status="succeeded") == 2
    assert delta("conveyor_jobs_finished_total", kind="document", status="failed") == 1
    assert delta("conveyor_job_duration_seconds_count", kind="document", status="succeeded") == 2
    assert delta("conveyor_job_queue_wait_seconds_count", kind="document") == 3
    assert delta("conveyor_job_queue_wait_seconds_sum", kind="document") > 0
    assert delta("conveyor_stage_duration_seconds_count", kind="document", stage="store", status="succeeded") == 2
    assert delta("conveyor_stage_duration_seconds_count", kind="document", stage="store", status="failed") == 1
    assert value(after, "conveyor_jobs_in_flight", kind="document") == 0
    assert delta("conveyor_provider_calls_total", provider="textract", outcome="throttled") == 1
    assert delta("conveyor_http_requests_total", method="POST", route="/v1/documents", code="202") == 3
    names = {name for name, _ in after}
    assert not any("tenant" in dict(labels) or "job_id" in dict(labels) for _, labels in after)
    assert "conveyor_workers_alive" in names


async def test_a_queue_only_a_kind_names_is_scraped_and_served_by_up(api, settings, tenant):
    """A kind declared with `queue=` sends its jobs to a queue no setting names: /metrics
    shows its backlog (the workers that know the kind say so in their heartbeats), and
    `conveyor up` runs a worker for it."""
    side = f"side-{os.urandom(3).hex()}"
    kind = Pipeline("side_job", (Stage("run", _maybe_fail),), timeout=30, queue=side)
    assert queues_to_serve(settings, [pipeline(), kind]) == [settings.queue_name, side]
    async with running_worker(settings, [pipeline(), kind]), client(api.url, tenant[1]) as http:
        await submit_job(settings, tenant[0], kind, {})

        async def backlog() -> float:
            return value(await scrape(http), "conveyor_queue_depth", queue=side)

        assert await until(backlog) == 1  # waiting: this worker serves the default queue only


async def test_worker_serves_its_own_metrics(database_url, redis_server, tmp_path):
    port = free_port()
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        metrics_port=port,
        queue_name=f"metrics-{os.urandom(3).hex()}",
    )
    async with running_worker(settings, [pipeline()]):
        await asyncio.to_thread(wait_for_port, port)  # bound by the worker's startup hook
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert "# TYPE conveyor_jobs_finished_total counter" in response.text
    assert "# TYPE conveyor_job_queue_wait_seconds histogram" in response.text


def test_multiprocess_mode_sums_processes(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = "from service.telemetry.metrics import record_provider_call; record_provider_call('twilio', 'ok')"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, cwd=os.getcwd())
    render = (
        "from prometheus_client import generate_latest; from service.telemetry.metrics import process_registry; "
        "print(generate_latest(process_registry()).decode())"
    )
    output = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, capture_output=True, text=True, cwd=os.getcwd()
    ).stdout
    table = samples(output)
    assert value(table, "conveyor_provider_calls_total", provider="twilio", outcome="ok") == 2


async def test_grafana_dashboard_queries_existing_metrics(api):
    """Every metric the dashboard plots is one Conveyor exports (replica metrics come from
    the read-replica router and are left to its own tests)."""
    dashboard = json.loads((Path(__file__).parent.parent / "deploy" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    plotted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"conveyor_[a-z_]+", expr)
    }
    async with client(api.url) as http:
        text = (await http.get("/metrics")).text
    families = {family.name for family in text_string_to_metric_families(text)}
    exported = families | {f"{name}_total" for name in families}
    assert plotted - {name for name in plotted if name.startswith("conveyor_db_")} <= exported
