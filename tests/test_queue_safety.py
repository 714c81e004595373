"""Whoever can write to Redis cannot make a worker run anything: payloads are JSON only,
and a malformed or foreign job is rejected and logged, never executed."""

import pickle

import redis.asyncio as redis

from conveyor.kinds import Pipeline, Stage
from testkit.files import multipart_file, text_pdf
from testkit.service import client, running_worker, until, wait_for_job


class Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('/tmp/conveyor-pwned').write_text('x')",))


async def _ok(run, input):
    return {"ok": True}


async def test_foreign_and_malformed_jobs_are_rejected(api, settings, tenant, redis_server, caplog, tmp_path):
    marker = tmp_path / "pwned"
    queue = settings.queue_name
    hostile = {
        "pickled": pickle.dumps({"t": 1, "f": "document", "a": [str(Exploit)], "k": {}, "et": 0}),
        "exploit": pickle.dumps(Exploit()),
        "garbage": b"\x00\xffnot json",
        "unknown-function": b'{"t":1,"f":"os.system","a":["touch /tmp/x"],"k":{},"et":0}',
        "not-a-ledger-id": b'{"t":1,"f":"document","a":["../../etc/passwd"],"k":{},"et":0}',
        "unknown-job": b'{"t":1,"f":"document","a":["6a0b8f4e-0000-4000-8000-000000000000"],"k":{},"et":0}',
    }
    async with redis.from_url(redis_server.url) as r:
        for job_id, payload in hostile.items():
            await r.psetex(f"arq:job:{job_id}", 60_000, payload)
            await r.zadd(queue, {job_id: 1})  # arq skips a score of 0
    pipeline = Pipeline("document", (Stage("store", _ok),), timeout=30)
    async with client(api.url, tenant[1]) as http, running_worker(settings, [pipeline]):
        good = (await http.post("/v1/documents", files=multipart_file(text_pdf("fine")))).json()
        done = await wait_for_job(http, good["id"])
        async with redis.from_url(redis_server.url) as r:

            async def hostile_taken_off() -> bool:
                return not set(hostile) & {job_id.decode() for job_id in await r.zrange(queue, 0, -1)}

            await until(hostile_taken_off)  # all taken off the queue…
    assert done["status"] == "succeeded"  # the worker kept working
    assert not marker.exists() and not __import__("os").path.exists("/tmp/conveyor-pwned")  # …none executed


async def test_the_api_enqueues_json(api, tenant, redis_server, settings):
    async with client(api.url, tenant[1]) as http:
        job = (await http.post("/v1/documents", files=multipart_file(text_pdf("x")))).json()
    async with redis.from_url(redis_server.url) as r:
        raw = await r.get(f"arq:job:{job['id']}")
    import json

    assert json.loads(raw)["a"] == [job["id"]]
