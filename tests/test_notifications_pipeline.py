"""POST /v1/notifications end to end, one channel at a time, and the requests it refuses:
the real API, an in-process arq worker, PostgreSQL, Redis, aiosmtpd and the
protocol-faithful Twilio, FCM, OneSignal and webhook servers."""

import json
import uuid
from datetime import datetime

from pipelines.notifications.webhooks import generate_secret
from service.databases.database import Database
from testkit.notifications import (  # noqa: F401 (fixtures)
    PIPELINES,
    local_settings,
    mail_to,
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
from testkit.onesignal_server import OneSignalServer
from testkit.service import ApiServer, client, make_settings, running_worker
from tests.test_notifications_email import parts, plain_smtp  # noqa: F401 (fixture)
from tests.test_notifications_push import fcm  # noqa: F401 (fixture)

PROBLEM = "application/problem+json"


async def test_email_is_received_once_with_both_alternatives(api, settings, tenant, smtp):
    address = f"{unique('ada-')}@example.com"
    done = await sent_through(
        api,
        settings,
        tenant,
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
    done = await sent_through(
        api,
        settings,
        tenant,
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
    await sent_through(
        api,
        settings,
        tenant,
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
    await sent_through(api, settings, tenant, channel="webhook", to=url, template="order.paid", data={"order": 42})
    [request] = receiver.at("/hooks/orders")
    assert request.verified, request.problem
    assert len(request.headers["webhook-signature"].split()) == 2
    assert request.headers["webhook-id"].startswith("msg_")
    event = json.loads(request.body)
    assert event["type"] == "order.paid" and event["data"] == {"order": 42}
    assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None


async def test_invalid_requests_are_precise_422s(api, tenant):
    email = {"channel": "email", "to": "a@example.com", "template": "welcome", "data": {"name": "A"}}
    sms = {**email, "channel": "sms"}
    cases = [
        ({"channel": "fax", "to": "x", "template": "welcome"}, "channel", "invalid-field"),
        ({**email, "template": "nope", "data": {}}, "template", "unknown-template"),
        ({**email, "data": {}}, "data", "invalid-template-data"),
        ({**email, "to": "not an address"}, "to", "invalid-recipient"),
        ({**sms, "to": ["+15551234567", "0612"]}, "to[1]", "invalid-recipient"),
        ({**sms, "to": []}, "to", "invalid-field"),
        ({**sms, "to": [f"+1555{n:07d}" for n in range(1001)]}, "to", "invalid-field"),
        ({**email, "send_at": "2030-01-01T09:00:00"}, "send_at", "invalid-field"),
        ({**email, "send_at": "tomorrow"}, "send_at", "invalid-field"),
        ({**email, "send_at": "2999-01-01T00:00:00Z"}, "send_at", "invalid-field"),
        ({"channel": "webhook", "to": "ftp://example.com/x", "template": "order.paid"}, "to", "invalid-url"),
        ({"channel": "webhook", "to": "https://example.com/x", "template": "has spaces"}, "template", "invalid-field"),
        ({**email, "colour": "red"}, "colour", "invalid-field"),
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
