"""Notifications that do not go through at the first try: bulk fan-out, provider and
webhook retries, a worker dying mid-bulk, send_at deferral and cancellation, and per-recipient
refusals, end to end against the real API, worker, PostgreSQL, Redis and fake providers."""

from datetime import UTC, datetime, timedelta, timezone

from testkit.notifications import (  # noqa: F401 (fixtures)
    PIPELINES,
    mail_to,
    notify,
    phone,
    receiver,
    secret,
    sent,
    sent_through,
    settings,
    smtp,
    twilio,
    unique,
)
from testkit.service import client, running_worker, until, wait_for_job
from testkit.twilio_server import twilio_error
from testkit.webhook_receiver import Reply
from tests.test_notifications_email import plain_smtp  # noqa: F401 (fixture)
from tests.test_notifications_push import fcm  # noqa: F401 (fixture)


async def test_bulk_fans_out_and_each_recipient_gets_one(api, settings, tenant, twilio):
    numbers = [phone() for _ in range(50)]
    done = await sent_through(
        api, settings, tenant, channel="sms", to=numbers + numbers[:5], template="welcome", data={"name": "All"}
    )
    received = [m["to"] for m in twilio.messages if m["to"] in set(numbers)]
    assert sorted(received) == sorted(numbers)
    assert done["result"]["sent"] == 50 and done["result"]["failed"] == 0


async def test_transient_failures_retry_only_the_recipients_not_reached(api, settings, tenant, twilio):
    numbers = [phone() for _ in range(3)]
    twilio.inject(500, twilio_error(500, 20500, "Internal Server Error"), times=2)
    done = await sent_through(
        api, settings, tenant, channel="sms", to=numbers, template="welcome", data={"name": "All"}
    )
    assert sorted(m["to"] for m in twilio.messages if m["to"] in numbers) == sorted(numbers)
    assert done["attempts"] >= 2 and done["result"]["sent"] == 3


async def test_webhook_retries_after_500s_keep_the_same_webhook_id(api, settings, tenant, receiver):
    receiver.script("/hooks/flaky", Reply(500), Reply(503))
    done = await sent_through(
        api, settings, tenant, channel="webhook", to=f"{receiver.url}/hooks/flaky", template="ping"
    )
    requests = receiver.at("/hooks/flaky")
    assert len(requests) == 3 and done["attempts"] == 3
    assert len({request.headers["webhook-id"] for request in requests}) == 1
    assert len({request.body for request in requests}) == 1
    assert all(request.verified for request in requests)


async def test_webhook_410_stops_at_once(api, settings, tenant, receiver):
    receiver.script("/hooks/gone", Reply(410))
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        job = await notify(http, channel="webhook", to=f"{receiver.url}/hooks/gone", template="ping")
        done = await wait_for_job(http, job["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "endpoint_gone"
    assert len(receiver.at("/hooks/gone")) == 1


async def test_a_worker_dying_mid_bulk_resumes_without_duplicates(api, settings, tenant, twilio):
    numbers = set(phone() for _ in range(30))

    def delivered() -> list[str]:
        return [m["to"] for m in twilio.messages if m["to"] in numbers]

    twilio.delay = 0.3
    try:
        async with client(api.url, tenant[1]) as http:
            job = await notify(http, channel="sms", to=sorted(numbers), template="welcome", data={"name": "All"})
            doomed = await running_worker(settings, PIPELINES).__aenter__()
            await until(lambda: len(delivered()) >= 10, timeout=30)
            await doomed.crash()  # the process dies: no more heartbeats, its jobs stop where they were
            assert len(delivered()) < len(numbers)
            async with running_worker(settings, PIPELINES):
                done = await wait_for_job(http, job["id"], timeout=30)
    finally:
        twilio.delay = 0.0
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert sorted(delivered()) == sorted(numbers)
    assert done["result"]["sent"] == 30


async def test_send_at_defers_delivery(api, settings, tenant, smtp):
    address = f"{unique('later-')}@example.com"
    send_at = datetime.now(timezone(timedelta(hours=2))) + timedelta(seconds=3)
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        job = await notify(
            http, channel="email", to=address, template="welcome", data={"name": "Ada"}, send_at=send_at.isoformat()
        )
        # A job sent after it, due at once, runs while it waits.
        now = await notify(
            http, channel="email", to=f"{unique('now-')}@example.com", template="welcome", data={"name": "Bo"}
        )
        assert (await wait_for_job(http, now["id"]))["status"] == "succeeded"
        assert mail_to(smtp[0], address) == []
        assert (await http.get(f"/v1/jobs/{job['id']}")).json()["status"] == "queued"
        done = await wait_for_job(http, job["id"], timeout=30)
    assert done["status"] == "succeeded"
    assert datetime.fromisoformat(done["stages"][0]["started_at"]) >= send_at
    assert len(mail_to(smtp[0], address)) == 1


async def test_a_cancelled_send_at_is_never_delivered(api, settings, tenant, smtp):
    address = f"{unique('never-')}@example.com"
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        job = await notify(
            http, channel="email", to=address, template="welcome", data={"name": "Ada"}, send_at=send_at.isoformat()
        )
        cancelled = await http.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        # A job due after it has run: the worker was past its send_at.
        later = await notify(
            http,
            channel="email",
            to=f"{unique('later-')}@example.com",
            template="welcome",
            data={"name": "Bo"},
            send_at=(send_at + timedelta(seconds=0.5)).isoformat(),
        )
        assert (await wait_for_job(http, later["id"]))["status"] == "succeeded"
        after = (await http.get(f"/v1/jobs/{job['id']}")).json()
    assert after["status"] == "cancelled" and after["attempts"] == 0
    assert mail_to(smtp[0], address) == []


async def test_permanent_refusals_are_recorded_per_recipient(api, settings, tenant, smtp):
    good, bad = f"{unique('ok-')}@example.com", f"nobody@{unique()}.example.com"
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        mixed = await sent(http, channel="email", to=[bad, good], template="welcome", data={"name": "Ada"})
        job = await notify(http, channel="email", to=bad, template="welcome", data={"name": "Ada"})
        refused = await wait_for_job(http, job["id"])
    assert (mixed["result"]["sent"], mixed["result"]["failed"]) == (1, 1)
    [failure] = [entry for entry in mixed["result"]["deliveries"] if entry["status"] == "failed"]
    assert failure["to"] == bad and failure["error"]["type"] == "invalid_recipient"
    assert len(mail_to(smtp[0], good)) == 1
    assert refused["status"] == "failed" and refused["error"]["type"] == "invalid_recipient"
    assert refused["attempts"] == 1


async def test_a_webhook_out_of_tries_is_sent_again_when_the_job_is_retried(api, settings, tenant, receiver):
    receiver.script("/hooks/down", Reply(500), Reply(500))
    one_retry = settings.model_copy(update={"webhook_retry_schedule": ["0.2"]})
    async with client(api.url, tenant[1]) as http, running_worker(one_retry, PIPELINES):
        job = await notify(http, channel="webhook", to=f"{receiver.url}/hooks/down", template="ping")
        failed = await wait_for_job(http, job["id"])
        assert failed["status"] == "failed" and failed["error"]["type"] == "delivery_failed"
        assert (await http.post(f"/v1/jobs/{job['id']}/retry")).status_code == 202
        done = await wait_for_job(http, job["id"])
    requests = receiver.at("/hooks/down")
    assert done["status"] == "succeeded" and len(requests) == 3
    assert len({request.headers["webhook-id"] for request in requests}) == 1
