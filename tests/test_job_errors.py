"""A failed job's error is shown to its tenant: a stable type and a message written for
them. What an unexpected exception says (paths, reprs with memory addresses, the
traceback) goes to the logs only. The real API and an arq worker, the job's input
making the stage crash."""

from __future__ import annotations

import re

from conveyor.kinds import Pipeline, Stage
from service.errors import DependencyUnavailable
from testkit.service import client, running_worker, wait_for_job
from tests.test_api_jobs import upload

LEAKS = re.compile(r"0x[0-9a-f]{6,}|/[\w.-]+/[\w./-]+|Traceback|<[^>]*object")


class Parser:
    """A stand-in for a library with a bug: it chokes on some inputs."""

    def parse(self, data: bytes, workdir) -> None:
        if data.startswith(b"%PDF"):
            raise ValueError(f"{self!r} cannot parse {workdir / 'original.pdf'}: unexpected token at 0x{len(data):08x}")


async def _parse(run, input) -> dict:
    data = b"".join([chunk async for chunk in run.resources.storage.read(run.payload["input"]["key"], 0, 16)])
    Parser().parse(data, run.workdir())
    return {}


async def test_an_unexpected_exception_is_a_plain_error_for_the_tenant_and_detailed_in_the_logs(
    api, settings, tenant, capfd, quick_retries
):
    pipeline = Pipeline("document", (Stage("parse", _parse),), timeout=30)
    async with client(api.url, tenant[1]) as http:
        job_id = (await upload(http)).json()["id"]
        async with running_worker(settings, [pipeline]):
            failed = await wait_for_job(http, job_id)
        events = (await http.get(f"/v1/jobs/{job_id}/events")).text
    assert failed["status"] == "failed"
    error, [stage] = failed["error"], failed["stages"]
    assert error["type"] == "exception"
    assert "'parse' raised ValueError" in error["message"] and "gave up after" in error["message"]
    shown = " ".join([error["message"], str(stage), events])
    assert not LEAKS.search(shown), LEAKS.search(shown)
    assert "Parser object" not in shown and "original.pdf" not in shown
    logged = capfd.readouterr().err
    assert "stage crashed" in logged and "Traceback" in logged
    assert "original.pdf" in logged and "Parser object at 0x" in logged


async def _lose_the_database(run, input) -> dict:
    raise DependencyUnavailable("database", "10.20.30.40:5432: connection refused")


async def test_a_dependency_outage_names_only_the_dependency(api, settings, tenant, quick_retries):
    pipeline = Pipeline("document", (Stage("parse", _lose_the_database),), timeout=30)
    async with client(api.url, tenant[1]) as http:
        job_id = (await upload(http)).json()["id"]
        async with running_worker(settings, [pipeline]):
            failed = await wait_for_job(http, job_id)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "dependency_unavailable"
    assert failed["error"]["message"].startswith("database is unavailable; the job is retried (gave up after")
    assert "10.20.30.40" not in str(failed)
