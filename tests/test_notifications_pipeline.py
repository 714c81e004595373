"""POST /v1/notifications end to end: the real API, an in-process arq worker, PostgreSQL,
Redis, aiosmtpd and the protocol-faithful Twilio, FCM, OneSignal and webhook servers."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from starlette.requests import Request

from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from pipelines.notifications.webhooks import generate_secret
from service.databases.database import Database
from testkit.notifications import local_settings, receiver, secret  # noqa: F401 (fixtures)
from testkit.onesignal_server import OneSignalServer
from testkit.service import ApiServer, client, make_settings, running_worker, until, wait_for_job
from testkit.twilio_server import TwilioServer, twilio_error
from testkit.webhook_receiver import Reply
from tests.test_notifications_email import parts, plain_smtp  # noqa: F401 (fixture)
from tests.test_notifications_push import fcm  # noqa: F401 (fixture)

PIPELINES = (NOTIFICATION_PIPELINE, CALLBACK_PIPELINE)
PROBLEM = "application/problem+json"


class SlowTwilio(TwilioServer):
    """Twilio taking its time over each message, so a worker can die mid-bulk."""

    delay = 0.0

    async def create_message(self, request: Request):
        await asyncio.sleep(self.delay)
        return await super().create_message(request)


@pytest.fixture(scope="module")
def smtp(plain_smtp):
    return plain_smtp


@pytest.fixture(scope="module")
def twilio():
    server = SlowTwilio().start()
    yield server
    server.stop()


def channel_settings(smtp, twilio, fcm) -> dict:
    return {
        "smtp_url": smtp[1],
        "smtp_from": "Acme <no-reply@acme.example>",
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from": "+15005550006",
        "twilio_base_url": twilio.url,
        "fcm_project_id": fcm.project_id,
        "fcm_access_token": fcm.access_token,
        "fcm_base_url": fcm.url,
    }


@pytest.fixture
def settings(database_url, redis_server, tmp_path, smtp, twilio, fcm):
    """Every channel configured, local receivers allowed, retries in fractions of a second."""
    return local_settings(database_url, redis_server.url, tmp_path / "storage", **channel_settings(smtp, twilio, fcm))


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def phone() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def mail_to(mailbox, address: str) -> list:
    return [message for message in mailbox.messages if address in message["To"]]


async def notify(http, **body):
    response = await http.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def sent(http, **body) -> dict:
    job = await notify(http, **body)
    done = await wait_for_job(http, job["id"], timeout=30)
    assert done["status"] == "succeeded", done
    return done


async def test_email_is_received_once_with_both_alternatives(api, settings, tenant, smtp):
    address = f"{unique('ada-')}@example.com"
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        done = await sent(
            http,
            channel="email",
            to=f"Ada <{address}>",
            template="welcome",
            data={"name": "Ada <b>", "product_name": "Acme"},
        )
    [message] = mail_to(smtp[0], address)
    body = parts(message)
    assert message["Subject"] == "Welcome to Acme, Ada <b>"
    assert "Ada <b>" in body["text/plain"] and "Ada &lt;b&gt;" in body["text/html"]
    assert done["result"]["sent"] == 1 and done["result"]["deliveries"][0]["message_id"] == message["Message-ID"]


async def test_sms_goes_through_twilio_with_our_idempotency_token(api, settings, tenant, twilio):
    number = phone()
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        done = await sent(
            http,
            channel="sms",
            to=number,
            template="password_reset",
            data={"name": "Ada", "reset_url": "https://acme.example/r/1"},
        )
    [message] = [m for m in twilio.messages if m["to"] == number]
    assert "https://acme.example/r/1" in message["body"]
    assert done["result"]["deliveries"] == [
        {"to": number, "status": "sent", "provider": "twilio", "message_id": message["sid"]}
    ]


async def test_push_through_fcm(api, settings, tenant, fcm):
    token = unique("device-token-")
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        await sent(
            http,
            channel="push",
            to=token,
            template="appointment_reminder",
            data={"name": "Ada", "starts_at": "Monday 9:00"},
        )
    [message] = [m for m in fcm.messages if m["token"] == token]
    assert message["notification"]["title"] == "Reminder: your appointment on Monday 9:00"
    assert message["data"]["template"] == "appointment_reminder"


async def test_push_through_onesignal(database_url, redis_server, tmp_path, tenant):
    onesignal = OneSignalServer().start()
    subscription = str(uuid.uuid4())
    onesignal.subscriptions.add(subscription)
    settings = local_settings(
        database_url,
        redis_server.url,
        tmp_path / "s",
        onesignal_app_id=onesignal.app_id,
        onesignal_api_key=onesignal.api_key,
        onesignal_base_url=onesignal.url,
    )
    try:
        async with ApiServer(settings) as api, client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
            done = await sent(
                http,
                channel="push",
                to=[subscription, "not-subscribed"],
                template="membership_expiry",
                data={"name": "Ada", "expires_on": "1 May"},
            )
    finally:
        onesignal.stop()
    [message] = onesignal.messages
    assert message["include_subscription_ids"] == [subscription]
    assert uuid.UUID(message["idempotency_key"])
    outcomes = {entry["to"]: entry for entry in done["result"]["deliveries"]}
    assert outcomes[subscription]["status"] == "sent" and outcomes[subscription]["message_id"] == message["id"]
    assert outcomes["not-subscribed"]["status"] == "failed"
    assert outcomes["not-subscribed"]["error"]["type"] == "invalid_recipient"


async def test_webhook_is_signed_with_every_live_secret(api, settings, tenant, receiver, secret):
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:  # a rotation: a new secret, the old one still live
            await conn.execute(
                "UPDATE tenants SET webhook_secrets = ARRAY[$2, $3] WHERE id = $1", tenant[0], generate_secret(), secret
            )
    finally:
        await db.close()
    url = f"{receiver.url}/hooks/orders"
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        await sent(http, channel="webhook", to=url, template="order.paid", data={"order": 42})
    [request] = receiver.at("/hooks/orders")
    assert request.verified, request.problem
    assert len(request.headers["webhook-signature"].split()) == 2
    assert request.headers["webhook-id"].startswith("msg_")
    event = json.loads(request.body)
    assert event["type"] == "order.paid" and event["data"] == {"order": 42}
    assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None


async def test_invalid_requests_are_precise_422s(api, tenant):
    cases = [
        ({"channel": "fax", "to": "x", "template": "welcome"}, "channel", "invalid-field"),
        ({"channel": "email", "to": "a@example.com", "template": "nope", "data": {}}, "template", "unknown-template"),
        (
            {"channel": "email", "to": "a@example.com", "template": "welcome", "data": {}},
            "data",
            "invalid-template-data",
        ),
        (
            {"channel": "email", "to": "not an address", "template": "welcome", "data": {"name": "A"}},
            "to",
            "invalid-recipient",
        ),
        (
            {"channel": "sms", "to": ["+15551234567", "0612"], "template": "welcome", "data": {"name": "A"}},
            "to[1]",
            "invalid-recipient",
        ),
        ({"channel": "sms", "to": [], "template": "welcome", "data": {"name": "A"}}, "to", "invalid-field"),
        (
            {
                "channel": "sms",
                "to": [f"+1555{n:07d}" for n in range(1001)],
                "template": "welcome",
                "data": {"name": "A"},
            },
            "to",
            "invalid-field",
        ),
        (
            {
                "channel": "email",
                "to": "a@example.com",
                "template": "welcome",
                "data": {"name": "A"},
                "send_at": "2030-01-01T09:00:00",
            },
            "send_at",
            "invalid-field",
        ),
        (
            {
                "channel": "email",
                "to": "a@example.com",
                "template": "welcome",
                "data": {"name": "A"},
                "send_at": "tomorrow",
            },
            "send_at",
            "invalid-field",
        ),
        (
            {
                "channel": "email",
                "to": "a@example.com",
                "template": "welcome",
                "data": {"name": "A"},
                "send_at": "2999-01-01T00:00:00Z",
            },
            "send_at",
            "invalid-field",
        ),
        ({"channel": "webhook", "to": "ftp://example.com/x", "template": "order.paid"}, "to", "invalid-url"),
        ({"channel": "webhook", "to": "https://example.com/x", "template": "has spaces"}, "template", "invalid-field"),
        (
            {"channel": "email", "to": "a@example.com", "template": "welcome", "data": {"name": "A"}, "colour": "red"},
            "colour",
            "invalid-field",
        ),
    ]
    async with client(api.url, tenant[1]) as http:
        for body, field, kind in cases:
            response = await http.post("/v1/notifications", json=body)
            assert response.status_code == 422, (body, response.text)
            problem = response.json()
            assert response.headers["content-type"] == PROBLEM
            assert (problem["field"], problem["type"].rsplit("/", 1)[1]) == (field, kind), problem
        not_json = await http.post(
            "/v1/notifications", content=b"channel=email", headers={"content-type": "application/json"}
        )
        not_declared_json = await http.post("/v1/notifications", content=b"{}", headers={"content-type": "text/plain"})
        not_object = await http.post("/v1/notifications", json=["email"])
        malformed = await http.post(
            "/v1/notifications", content=b'{"channel": "email",}', headers={"content-type": "application/json"}
        )
        listed = (await http.get("/v1/jobs", params={"kind": "notification"})).json()["items"]
    assert not_json.status_code == not_object.status_code == malformed.status_code == 400
    assert not_declared_json.status_code == 415
    assert malformed.headers["content-type"] == PROBLEM
    assert (
        malformed.json()["detail"] == "the body is not valid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 21 (char 20)"
    )
    assert listed == []


async def test_unconfigured_channel_and_private_destinations_are_refused(database_url, redis_server, tmp_path, tenant):
    bare = make_settings(database_url, redis_server.url, tmp_path / "s")  # no provider, no allowed hosts
    async with ApiServer(bare) as api, client(api.url, tenant[1]) as http:
        sms = await http.post(
            "/v1/notifications",
            json={"channel": "sms", "to": "+15551234567", "template": "welcome", "data": {"name": "A"}},
        )
        push = await http.post(
            "/v1/notifications",
            json={"channel": "push", "to": "token-123456", "template": "welcome", "data": {"name": "A"}},
        )
        hooks = [
            await http.post("/v1/notifications", json={"channel": "webhook", "to": url, "template": "ping"})
            for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/x")
        ]
    assert sms.status_code == push.status_code == 422
    assert sms.json()["type"].endswith("/channel-not-configured")
    assert "TWILIO_ACCOUNT_SID" in sms.json()["detail"]
    assert "FCM_PROJECT_ID" in push.json()["detail"] and "ONESIGNAL_APP_ID" in push.json()["detail"]
    for response in hooks:
        assert response.status_code == 422
        assert response.json()["type"].endswith("/destination-refused")
        assert "CALLBACK_ALLOWED_HOSTS" in response.json()["detail"]


async def test_idempotency_key_returns_the_same_notification(api, tenant):
    body = {"channel": "email", "to": "a@example.com", "template": "welcome", "data": {"name": "A"}}
    async with client(api.url, tenant[1]) as http:
        first = await http.post("/v1/notifications", json=body, headers={"Idempotency-Key": "n1"})
        again = await http.post(
            "/v1/notifications",
            content=json.dumps(body, indent=2),
            headers={"Idempotency-Key": "n1", "content-type": "application/json"},
        )
        other = await http.post(
            "/v1/notifications", json={**body, "to": "b@example.com"}, headers={"Idempotency-Key": "n1"}
        )
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 422


async def test_bulk_fans_out_and_each_recipient_gets_one(api, settings, tenant, twilio):
    numbers = [phone() for _ in range(50)]
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        done = await sent(http, channel="sms", to=numbers + numbers[:5], template="welcome", data={"name": "All"})
    received = [m["to"] for m in twilio.messages if m["to"] in set(numbers)]
    assert sorted(received) == sorted(numbers)
    assert done["result"]["sent"] == 50 and done["result"]["failed"] == 0


async def test_transient_failures_retry_only_the_recipients_not_reached(api, settings, tenant, twilio):
    numbers = [phone() for _ in range(3)]
    twilio.inject(500, twilio_error(500, 20500, "Internal Server Error"), times=2)
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        done = await sent(http, channel="sms", to=numbers, template="welcome", data={"name": "All"})
    assert sorted(m["to"] for m in twilio.messages if m["to"] in numbers) == sorted(numbers)
    assert done["attempts"] >= 2 and done["result"]["sent"] == 3


async def test_webhook_retries_after_500s_keep_the_same_webhook_id(api, settings, tenant, receiver):
    receiver.script("/hooks/flaky", Reply(500), Reply(503))
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        done = await sent(http, channel="webhook", to=f"{receiver.url}/hooks/flaky", template="ping")
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
    send_at = datetime.now(timezone(timedelta(hours=2))) + timedelta(seconds=2)
    async with client(api.url, tenant[1]) as http, running_worker(settings, PIPELINES):
        job = await notify(
            http, channel="email", to=address, template="welcome", data={"name": "Ada"}, send_at=send_at.isoformat()
        )
        await asyncio.sleep(0.5)
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
        await asyncio.sleep(3)  # well past send_at, with a worker polling the queue
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
