"""Standard Webhooks: signatures checked by a real receiver, retries, rotation, refusals."""

import base64
import json
import random
from datetime import UTC, datetime
from importlib.metadata import version

import pytest

from pipelines.notifications.ssrf import guarded_client
from pipelines.notifications.webhooks import (
    DEFAULT_SCHEDULE,
    InvalidSignature,
    event_body,
    generate_secret,
    next_retry_delay,
    send_webhook,
    sign,
    signed_headers,
    verify,
)
from service.errors import PermanentError, TransientError
from testkit.webhook_receiver import Reply, WebhookReceiver

LOOPBACK = ["127.0.0.1"]
BODY = event_body(
    "job.succeeded", {"id": "job_1", "kind": "document", "status": "succeeded"}, datetime(2026, 5, 3, 12, 0, tzinfo=UTC)
)


@pytest.fixture(scope="module")
def secret():
    return generate_secret()


@pytest.fixture(scope="module")
def receiver(secret):
    server = WebhookReceiver(secret).start()
    yield server
    server.stop()


def test_signature_matches_the_published_standard_webhooks_vector():
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_whsec_and_32_random_bytes():
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_verify_rejects_tampering_wrong_secrets_and_stale_timestamps(secret):
    headers = signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000)
    verify(secret, headers, BODY, now=1_700_000_100)
    cases = [
        (secret, headers, BODY + b" ", 1_700_000_100, "no signature matches"),
        (generate_secret(), headers, BODY, 1_700_000_100, "no signature matches"),
        (secret, headers, BODY, 1_700_000_000 + 301, "tolerance"),
        (secret, {**headers, "webhook-id": "msg_2"}, BODY, 1_700_000_100, "no signature matches"),
        (secret, {"webhook-id": "msg_1"}, BODY, 1_700_000_100, "missing"),
    ]
    for key, sent_headers, body, now, problem in cases:
        with pytest.raises(InvalidSignature) as caught:
            verify(key, sent_headers, body, now=now)
        assert problem in caught.value.message and caught.value.type == "invalid_signature"


def test_event_body_is_the_contract_shape():
    assert json.loads(BODY) == {
        "type": "job.succeeded",
        "timestamp": "2026-05-03T12:00:00+00:00",
        "data": {"id": "job_1", "kind": "document", "status": "succeeded"},
    }


async def test_delivery_is_signed_and_verified_by_the_receiver(receiver, secret):
    status = await send_webhook(
        f"{receiver.url}/hooks/ok", BODY, webhook_id="msg_ok", secrets=secret, allowed_hosts=LOOPBACK
    )
    [received] = receiver.at("hooks/ok")
    assert status == 200 and received.verified and received.body == BODY
    assert received.headers["webhook-id"] == "msg_ok" and received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == f"Conveyor/{version('conveyor')}"


async def test_a_retry_keeps_the_webhook_id_and_signs_afresh(receiver, secret):
    receiver.script("hooks/flaky", Reply(500))
    with pytest.raises(TransientError) as caught:
        await send_webhook(
            f"{receiver.url}/hooks/flaky", BODY, webhook_id="msg_retry", secrets=secret, allowed_hosts=LOOPBACK
        )
    assert caught.value.type == "delivery_failed" and "500" in caught.value.message
    assert (
        await send_webhook(
            f"{receiver.url}/hooks/flaky", BODY, webhook_id="msg_retry", secrets=secret, allowed_hosts=LOOPBACK
        )
        == 200
    )
    first, second = receiver.at("hooks/flaky")
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_retry"


async def test_rotation_signs_with_both_secrets_so_either_receiver_verifies(secret):
    new_secret = generate_secret()
    old_receiver, new_receiver = WebhookReceiver(secret).start(), WebhookReceiver(new_secret).start()
    try:
        for server in (old_receiver, new_receiver):
            await send_webhook(
                f"{server.url}/rotating",
                BODY,
                webhook_id="msg_rot",
                secrets=[secret, new_secret],
                allowed_hosts=LOOPBACK,
            )
        [at_old], [at_new] = old_receiver.at("rotating"), new_receiver.at("rotating")
        assert at_old.verified and at_new.verified
        assert len(at_old.headers["webhook-signature"].split()) == 2
        # A receiver holding only a retired secret refuses what is signed with the new one alone.
        with pytest.raises(TransientError) as caught:
            await send_webhook(
                f"{old_receiver.url}/rotated", BODY, webhook_id="msg_new", secrets=new_secret, allowed_hosts=LOOPBACK
            )
        assert "401" in caught.value.message and not old_receiver.at("rotated")[0].verified
    finally:
        old_receiver.stop()
        new_receiver.stop()


async def test_redirects_are_failures_and_never_followed(receiver, secret):
    receiver.script("hooks/moved", Reply(302, {"Location": "/hooks/elsewhere"}))
    with pytest.raises(TransientError) as caught:
        await send_webhook(
            f"{receiver.url}/hooks/moved", BODY, webhook_id="msg_302", secrets=secret, allowed_hosts=LOOPBACK
        )
    assert caught.value.type == "delivery_failed" and "/hooks/elsewhere" in caught.value.message
    assert receiver.at("hooks/elsewhere") == []


async def test_410_gone_stops_retrying(receiver, secret):
    receiver.script("hooks/gone", Reply(410))
    with pytest.raises(PermanentError) as caught:
        await send_webhook(
            f"{receiver.url}/hooks/gone", BODY, webhook_id="msg_410", secrets=secret, allowed_hosts=LOOPBACK
        )
    assert caught.value.type == "endpoint_gone"


async def test_429_slows_down_with_retry_after(receiver, secret):
    receiver.script("hooks/busy", Reply(429, {"Retry-After": "120"}))
    with pytest.raises(TransientError) as caught:
        await send_webhook(
            f"{receiver.url}/hooks/busy", BODY, webhook_id="msg_429", secrets=secret, allowed_hosts=LOOPBACK
        )
    assert caught.value.type == "rate_limited" and caught.value.retry_after == 120


async def test_a_slow_endpoint_times_out_as_transient(receiver, secret):
    receiver.script("hooks/slow", Reply(200, delay=3))
    with pytest.raises(TransientError) as caught:
        await send_webhook(
            f"{receiver.url}/hooks/slow",
            BODY,
            webhook_id="msg_slow",
            secrets=secret,
            allowed_hosts=LOOPBACK,
            timeout=0.5,
        )
    assert caught.value.type == "delivery_failed" and "0.5s" in caught.value.message


async def test_a_shared_guarded_client_can_be_passed_in(receiver, secret):
    async with guarded_client(LOOPBACK, timeout=5) as client:
        for n in range(2):
            await send_webhook(
                f"{receiver.url}/hooks/pooled", BODY, webhook_id=f"msg_pool_{n}", secrets=secret, client=client
            )
    assert [item.verified for item in receiver.at("hooks/pooled")] == [True, True]


async def test_loopback_is_refused_without_the_allow_list(receiver, secret):
    with pytest.raises(PermanentError) as caught:
        await send_webhook(f"{receiver.url}/hooks/private", BODY, webhook_id="msg_ssrf", secrets=secret)
    assert caught.value.type == "destination_refused" and receiver.at("hooks/private") == []


def test_retry_schedule_follows_standard_webhooks_with_jitter():
    rng = random.Random(7)
    delays = [next_retry_delay(attempt, DEFAULT_SCHEDULE, rng) for attempt in range(1, 11)]
    assert delays[-1] is None and next_retry_delay(0) is None
    for delay, nominal in zip(delays, DEFAULT_SCHEDULE, strict=False):  # the last delay is None: given up
        assert nominal * 0.9 <= delay <= nominal * 1.1
    assert len({round(d / n, 6) for d, n in zip(delays, DEFAULT_SCHEDULE, strict=False)}) > 1  # jittered, not scaled
    assert next_retry_delay(2, ["1", "2", "3"], random.Random(1)) == next_retry_delay(
        2, ["1", "2", "3"], random.Random(1)
    )
    assert next_retry_delay(4, ["1", "2", "3"]) is None
