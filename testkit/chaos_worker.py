"""A worker process for the fault tests: `python -m arq testkit.chaos_worker.WorkerSettings`.

The production wiring (worker.WorkerSettings: hooks, heartbeats, reconciler, JSON
serializer, grace period), with a test pipeline of kind `document` that does real I/O:
`fetch` streams the stored input from storage and checks its SHA-256, `work` waits,
`publish` writes a result object to storage. Each stage reports to the stage counter
(`CHAOS_COUNTER_URL`) right before it returns. The `callback` pipeline of the registry,
once there is one, is served too, so completion webhooks go out.

Test-only knobs (environment): `CHAOS_STAGE_SECONDS` (each stage's wait),
`CHAOS_GATE_FILE` (`work` also waits until this file exists), `CHAOS_GRACE_SECONDS`
(arq's job_completion_wait on SIGTERM).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import worker
from conveyor.kinds import Pipeline, Stage
from pipelines import lifecycle, registry
from service.errors import PermanentError
from service.storage import ObjectNotFound
from testkit.stage_counter import report_stage

STAGE_SECONDS = float(os.environ.get("CHAOS_STAGE_SECONDS", "0.1"))
COUNTER_URL = os.environ.get("CHAOS_COUNTER_URL")
GATE_FILE = os.environ.get("CHAOS_GATE_FILE")


async def _report(run, stage: str) -> None:
    if COUNTER_URL:
        await report_stage(run, COUNTER_URL, stage)


async def fetch(run, input) -> dict:
    expected = run.payload["input"]
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in run.resources.storage.read(expected["key"]):
            digest.update(chunk)
            size += len(chunk)
    except ObjectNotFound:
        raise PermanentError("the stored input is missing", type="input_missing") from None
    if digest.hexdigest() != expected["sha256"]:
        raise PermanentError("the stored input does not match its hash", type="input_corrupt")
    await asyncio.sleep(STAGE_SECONDS)
    await _report(run, "fetch")
    return {"bytes": size}


async def work(run, input) -> dict:
    await asyncio.sleep(STAGE_SECONDS)
    while GATE_FILE and not os.path.exists(GATE_FILE):
        await asyncio.sleep(0.1)
    await _report(run, "work")
    return {"attempt": run.attempt}


async def publish(run, input) -> dict:
    key = f"tenants/{run.job['tenant_id']}/jobs/{run.job_id}/result.json"
    writer = run.resources.storage.writer(key, "application/json")
    await writer.write(json.dumps({"job": str(run.job_id), "attempt": run.attempt}).encode())
    await writer.commit()
    await asyncio.sleep(STAGE_SECONDS)
    await _report(run, "publish")
    return {"key": key, "attempt": run.attempt, "worker": run.resources.worker_id}


STAGE_NAMES = ("fetch", "work", "publish")
DOCUMENT = Pipeline(
    "document",
    (Stage("fetch", fetch), Stage("work", work), Stage("publish", publish)),
    timeout=120,
    result=lambda outputs: {**outputs["publish"], "bytes": outputs["fetch"]["bytes"]},
)
PIPELINES = (DOCUMENT, *(pipeline for pipeline in registry.pipelines(worker._settings) if pipeline.name == "callback"))


# A dict, not a subclass: arq reads the settings class's own __dict__, not inherited ones.
WorkerSettings = {
    **{name: value for name, value in vars(worker.WorkerSettings).items() if not name.startswith("_")},
    "functions": lifecycle.functions(PIPELINES),
    **dict(
        zip(
            ("on_startup", "on_shutdown"),
            lifecycle.hooks(worker._settings, PIPELINES, grace=float(os.environ.get("CHAOS_GRACE_SECONDS", "20"))),
            strict=True,
        )
    ),
}
