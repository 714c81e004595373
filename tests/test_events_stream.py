"""GET /v1/jobs/{id}/events: live events from the workers' Redis streams, replay, tokens."""

import asyncio
import hashlib
import hmac
import uuid

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from conveyor.kinds import Pipeline, Stage
from service import queue
from service.cli import app as cli
from service.databases.database import Database
from service.ledger.signing import InvalidToken, Signer, SigningKeys
from service.queue import events
from service.telemetry.logs import secret_values
from testkit.files import multipart_file, text_pdf
from testkit.service import ApiServer, client, new_tenant, running_worker, until, wait_for_job
from testkit.sse import read_stream


async def _step(run, input):
    await run.progress(1.0)
    return {}


async def _until_cancelled(run, input):
    while True:
        await asyncio.sleep(0.05)


def three_stages():
    return Pipeline("document", (Stage("one", _step), Stage("two", _step), Stage("three", _step)), timeout=30)


def endless():
    return Pipeline("document", (Stage("wait", _until_cancelled),), timeout=60)


async def upload(http):
    response = await http.post("/v1/documents", files=multipart_file(text_pdf("hi")))
    assert response.status_code == 202
    return response.json()["id"]


def _id(event) -> tuple[int, int]:
    millis, _, sequence = event["id"].partition("-")
    return int(millis), int(sequence)


async def test_live_stream_is_ordered_and_ends_with_the_job(api, settings, tenant):
    async with client(api.url, tenant[1]) as http:
        job_id = await upload(http)
        reader = asyncio.create_task(read_stream(http, f"/v1/jobs/{job_id}/events"))
        await asyncio.sleep(0.3)  # connected while still queued, before any worker event
        async with running_worker(settings, [three_stages()]):
            async with asyncio.timeout(30):
                received = await reader
    assert received.status == 200 and received.ended
    first, *live = received.events
    assert "id" not in first and first["data"]["status"] == "queued"  # the snapshot of a job with no history
    ids = [_id(event) for event in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stages = [(event["data"]["stage"], event["data"]["status"]) for event in live if event["event"] == "stage"]
    assert stages == [
        ("one", "running"),
        ("one", "succeeded"),
        ("two", "running"),
        ("two", "succeeded"),
        ("three", "running"),
        ("three", "succeeded"),
    ]
    assert live[0]["event"] == "status" and live[0]["data"]["status"] == "running"
    assert live[-1]["event"] == "status" and live[-1]["data"]["status"] == "succeeded"
    assert all(event["data"]["job_id"] == job_id for event in received.events)
    redis = Redis.from_url(settings.redis_url)
    try:
        assert 0 < await redis.ttl(events.stream_key(job_id)) <= events.KEEP_SECONDS  # the stream expires
    finally:
        await redis.aclose()


async def test_events_written_after_a_newer_snapshot_never_take_progress_back(api, settings, tenant, redis_server):
    """The worker wrote 0.25 to the ledger, but its events (status, stage at 0.0) reach
    Redis only after a client connected and got the ledger's snapshot."""
    async with client(api.url, tenant[1]) as http:
        job_id = await upload(http)
        db = Database(settings)
        await db.open()
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    "UPDATE jobs SET status = 'running', stage = 'one', progress = 0.25 WHERE id = $1",
                    uuid.UUID(job_id),
                )
            reader = asyncio.create_task(read_stream(http, f"/v1/jobs/{job_id}/events"))
            await asyncio.sleep(0.3)  # connected: the snapshot is out, no event in Redis yet
            redis = Redis.from_url(redis_server.url)
            late = [
                {"type": "status", "status": "running", "attempt": 1},
                {"type": "stage", "stage": "one", "status": "running", "progress": 0.0},
                {"type": "progress", "stage": "one", "progress": 0.25},
                {"type": "progress", "stage": "one", "progress": 0.5},
            ]
            await events.publish_many(redis, [(job_id, {**event, "job_id": job_id}) for event in late])
            async with db.transaction() as conn:
                await conn.execute(
                    "UPDATE jobs SET status = 'succeeded', progress = 1 WHERE id = $1", uuid.UUID(job_id)
                )
            await events.publish_many(
                redis, [(job_id, {"type": "status", "status": "succeeded", "progress": 1.0, "job_id": job_id})]
            )
            await redis.aclose()
            async with asyncio.timeout(20):
                received = await reader
        finally:
            await db.close()
    assert received.ended
    snapshot, *live = received.events
    assert "id" not in snapshot and snapshot["data"]["progress"] == 0.25
    assert [event["data"].get("progress") for event in live] == [None, 0.25, 0.25, 0.5, 1.0]
    assert live[1]["data"]["stage"] == "one" and live[1]["data"]["status"] == "running"


async def test_last_event_id_replays_what_came_after(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, [three_stages()]):
        job_id = await upload(http)
        await wait_for_job(http, job_id)
        full = await read_stream(http, f"/v1/jobs/{job_id}/events")
        resumed = await read_stream(http, f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": full.events[3]["id"]})
        bad = await http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "not-an-id"})
    assert full.ended and resumed.ended
    assert next(event["id"] for event in full.events if "id" in event) == full.events[0]["id"]
    assert resumed.events == full.events[4:]
    assert resumed.events[-1]["data"]["status"] == "succeeded"
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def pinging(settings, every: float) -> ApiServer:
    return ApiServer(settings.model_copy(update={"event_stream_keepalive_seconds": every}))


async def test_stream_of_a_cancelled_job_pings_then_ends(settings, tenant):
    async with pinging(settings, 0.2) as api, client(api.url, tenant[1]) as http, running_worker(settings, [endless()]):
        job_id = await upload(http)
        await wait_for_job(http, job_id, statuses=("running",))
        reader = asyncio.create_task(read_stream(http, f"/v1/jobs/{job_id}/events"))
        await asyncio.sleep(0.7)  # nothing happens meanwhile: the server pings
        assert (await http.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202
        async with asyncio.timeout(20):
            received = await reader
    assert received.ended
    assert any(comment.startswith("ping") for comment in received.comments)
    assert received.events[-1]["data"]["status"] == "cancelled"


async def test_a_quiet_job_keeps_its_stream_open_with_keepalives(settings, tenant):
    """Nothing happens for longer than the Redis client's socket timeout (5 s), which
    used to end the stream: it stays open, a `: ping` comment every half second."""
    async with pinging(settings, 0.5) as api, client(api.url, tenant[1]) as http, running_worker(settings, [endless()]):
        job_id = await upload(http)
        await wait_for_job(http, job_id, statuses=("running",))
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(30):
            received = await read_stream(http, f"/v1/jobs/{job_id}/events", max_events=1, min_comments=13)
        open_for = asyncio.get_running_loop().time() - started
    assert not received.ended, f"the stream ended after {open_for:.1f} s"
    assert open_for > queue.SOCKET_TIMEOUT_SECONDS + 1
    assert len(received.comments) >= 13 and all(comment.startswith("ping") for comment in received.comments)


async def test_stream_of_a_finished_job_without_history_ends_at_once(api, settings, tenant, redis_server):
    from redis.asyncio import Redis

    async with client(api.url, tenant[1]) as http, running_worker(settings, [three_stages()]):
        job_id = await upload(http)
        await wait_for_job(http, job_id)
    redis = Redis.from_url(redis_server.url)
    await redis.delete(f"conveyor:events:{job_id}")  # expired, or lost with Redis
    await redis.aclose()
    async with client(api.url, tenant[1]) as http:
        async with asyncio.timeout(10):
            received = await read_stream(http, f"/v1/jobs/{job_id}/events")
    assert received.ended and len(received.events) == 1
    assert received.events[0]["data"]["status"] == "succeeded"


async def test_tokens_open_one_job_only_and_expire(api, settings, tenant):
    _, other_key = await new_tenant(settings)
    async with client(api.url, tenant[1]) as http, client(api.url) as browser, client(api.url, other_key) as other:
        job_a, job_b = await upload(http), await upload(http)
        issued = await http.post(f"/v1/jobs/{job_a}/events/token")
        assert issued.status_code == 201
        token = issued.json()["token"]
        assert issued.json()["expires_at"].endswith("Z")
        ok = await read_stream(browser, f"/v1/jobs/{job_a}/events?token={token}", max_events=1)
        wrong_job = await browser.get(f"/v1/jobs/{job_b}/events", params={"token": token})
        not_elsewhere = await browser.get(f"/v1/jobs/{job_a}", params={"token": token})
        tampered = await browser.get(f"/v1/jobs/{job_a}/events", params={"token": token[:-2] + "xx"})
        other_tenant = await other.post(f"/v1/jobs/{job_a}/events/token")
        unknown = await http.post(f"/v1/jobs/{uuid.uuid4()}/events/token")
    assert ok.status == 200 and ok.events[0]["data"]["job_id"] == job_a
    assert wrong_job.status_code == 403 and wrong_job.json()["type"].endswith("token-wrong-job")
    assert not_elsewhere.status_code == 401
    assert tampered.status_code == 401 and tampered.json()["type"].endswith("token-invalid")
    assert other_tenant.status_code == 404 and unknown.status_code == 404


async def ledger_signer(settings, purpose: str) -> Signer:
    """A signer under the secret the ledger holds now, as the API derives it for `purpose`."""
    db = Database(settings)
    await db.open()
    try:
        return await SigningKeys(db).signer(purpose)
    finally:
        await db.close()


async def test_expired_token_is_refused(api, settings, tenant):
    tenant_id, key = tenant
    async with client(api.url, key) as http, client(api.url) as browser:
        job_id = await upload(http)
        signer = await ledger_signer(settings, "job-events-token")
        expired, _ = signer.sign(job_id, str(tenant_id), ttl=-5)
        fresh, _ = signer.sign(job_id, str(tenant_id), ttl=60)
        refused = await browser.get(f"/v1/jobs/{job_id}/events", params={"token": expired})
        other_purpose, _ = (await ledger_signer(settings, "another-purpose")).sign(job_id, str(tenant_id), ttl=60)
        wrong_purpose = await browser.get(f"/v1/jobs/{job_id}/events", params={"token": other_purpose})
        accepted = await read_stream(browser, f"/v1/jobs/{job_id}/events?token={fresh}", max_events=1)
    assert refused.status_code == 401 and refused.json()["type"].endswith("token-expired")
    assert wrong_purpose.status_code == 401
    assert accepted.status == 200


async def test_a_token_forged_from_the_public_settings_is_refused(api, settings, tenant):
    """The signing key was derived from the database and Redis URLs (public in a
    docker-compose file) and the secret settings: whoever reads them must forge nothing."""
    tenant_id, key = tenant
    material = "\0".join([settings.database_url, settings.redis_url, *sorted(secret_values(settings))])
    derived = hmac.new(material.encode(), b"conveyor:job-events-token", hashlib.sha256).digest()
    async with client(api.url, key) as http, client(api.url) as attacker:
        job_id = await upload(http)
        forged, _ = Signer([derived]).sign(job_id, str(tenant_id), ttl=60)
        response = await attacker.get(f"/v1/jobs/{job_id}/events", params={"token": forged})
    assert response.status_code == 401 and response.json()["type"].endswith("token-invalid")


async def test_a_rotation_keeps_tokens_given_out_valid_and_reaches_every_process(api, settings, tenant):
    """Two API processes agree on the secret; after `conveyor secrets rotate` tokens given
    out before still open their stream, on either process, until the next rotation."""
    rotate = ["secrets", "rotate", "--database-url", settings.database_url]
    async with ApiServer(settings) as second, client(api.url, tenant[1]) as http, client(second.url) as browser:
        job_id = await upload(http)
        before = (await http.post(f"/v1/jobs/{job_id}/events/token")).json()["token"]
        assert (await read_stream(browser, f"/v1/jobs/{job_id}/events?token={before}", max_events=1)).status == 200
        assert (await asyncio.to_thread(CliRunner().invoke, cli, rotate)).exit_code == 0
        current = await ledger_signer(settings, "job-events-token")

        async def signs_with_the_new_secret():
            token = (await http.post(f"/v1/jobs/{job_id}/events/token")).json()["token"]
            try:
                return current.verify(token)
            except InvalidToken:
                return None

        await until(signs_with_the_new_secret, timeout=15)
        assert (await read_stream(browser, f"/v1/jobs/{job_id}/events?token={before}", max_events=1)).status == 200
        assert (await asyncio.to_thread(CliRunner().invoke, cli, rotate)).exit_code == 0

        async def refused_after_the_second_rotation():  # streamed: a 200 would never end
            async with browser.stream("GET", f"/v1/jobs/{job_id}/events", params={"token": before}) as response:
                return response.status_code == 401

        await until(refused_after_the_second_rotation, timeout=15)


@pytest.mark.parametrize("path", ["/v1/jobs/{job}/events", "/v1/jobs/{job}/events/token"])
async def test_events_need_a_key_or_token(api, tenant, path):
    async with client(api.url, tenant[1]) as http, client(api.url) as anonymous:
        job_id = await upload(http)
        method = anonymous.post if path.endswith("token") else anonymous.get
        response = await method(path.format(job=job_id))
    assert response.status_code == 401


async def test_hanging_up_mid_read_leaves_no_transaction_open(api, tenant, redis_server, caplog):
    """A client that hangs up as soon as the final event arrives cancels the relay while it
    reads the ledger: its read-only transaction must still end cleanly (asyncpg logs
    "Resetting connection with an active transaction" for one left open)."""
    redis = Redis.from_url(redis_server.url)
    async with client(api.url, tenant[1]) as http:
        for _ in range(20):
            job_id = await upload(http)
            async with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                lines = response.aiter_lines()
                async for line in lines:
                    if line.startswith("data:"):  # the snapshot: the relay now waits on Redis
                        break
                final = {"type": "status", "status": "succeeded", "job_id": job_id}
                await events.publish(redis, job_id, final)  # the ledger still says queued: it reads on
                async for line in lines:
                    if line.startswith("data:"):
                        break  # hang up at once
        await asyncio.sleep(0.5)
    await redis.aclose()
    assert "active transaction" not in caplog.text
