"""Push through FCM v1- and OneSignal-compatible servers over real HTTP."""

import uuid

import pytest
from pydantic import SecretStr

from pipelines.notifications.push import onesignal_idempotency_key, send_push
from service.config import Settings
from service.errors import PermanentError, TransientError
from testkit.fcm_server import FcmServer
from testkit.onesignal_server import OneSignalServer

TOKEN = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH"
RECEIPT = {
    "name": "Ada",
    "amount": "49.00",
    "currency": "EUR",
    "receipt_number": "R-1",
    "items": [{"description": "Pro", "amount": "49.00"}],
}


@pytest.fixture(scope="module")
def fcm():
    server = FcmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def onesignal():
    server = OneSignalServer().start()
    server.subscriptions.update({"sub-1", "sub-2"})
    server.external_ids.add("user-42")
    yield server
    server.stop()


def fcm_settings(fcm: FcmServer, **overrides) -> Settings:
    values = dict(fcm_project_id=fcm.project_id, fcm_access_token=SecretStr(fcm.access_token), fcm_base_url=fcm.url)
    return Settings(_env_file=None, **{**values, **overrides})


def onesignal_settings(onesignal: OneSignalServer, **overrides) -> Settings:
    values = dict(
        onesignal_app_id=onesignal.app_id,
        onesignal_api_key=SecretStr(onesignal.api_key),
        onesignal_base_url=onesignal.url,
    )
    return Settings(_env_file=None, **{**values, **overrides})


async def refusal(settings: Settings, to: str, key: str = "k") -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        await send_push(settings, to=to, template="welcome", data={"name": "A"}, key=key)
    return caught.value


async def test_fcm_gets_title_body_and_string_data(fcm):
    delivery = await send_push(fcm_settings(fcm), to=TOKEN, template="payment_receipt", data=RECEIPT, key="job-1:0")
    sent = fcm.messages[-1]
    assert sent["token"] == TOKEN
    assert sent["notification"] == {
        "title": "Receipt R-1: 49.00 EUR",
        "body": "Payment received: 49.00 EUR, receipt R-1. Thank you, Ada!",
    }
    assert sent["data"]["template"] == "payment_receipt" and sent["data"]["amount"] == "49.00"
    assert "items" not in sent["data"]  # FCM data values are strings only
    assert delivery.message_id == sent["name"] and delivery.provider == "fcm"


async def test_fcm_unregistered_token_is_invalid_recipient(fcm):
    fcm.unregistered.add("gone-token-123456")
    error = await refusal(fcm_settings(fcm), "gone-token-123456")
    assert error.type == "invalid_recipient" and "UNREGISTERED" in error.message


async def test_fcm_invalid_argument_is_permanent(fcm):
    error = await refusal(fcm_settings(fcm), "not a token!")
    assert error.type == "destination_refused" and "INVALID_ARGUMENT" in error.message


async def test_fcm_invalid_access_token_is_channel_auth_failed(fcm):
    error = await refusal(fcm_settings(fcm, fcm_access_token=SecretStr("expired")), TOKEN)
    assert error.type == "channel_auth_failed" and "UNAUTHENTICATED" in error.message


@pytest.mark.parametrize(
    ("http_status", "status", "code", "expected_type"),
    [
        (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "rate_limited"),
        (503, "UNAVAILABLE", "UNAVAILABLE", "provider_unavailable"),
        (500, "INTERNAL", "INTERNAL", "provider_unavailable"),
    ],
)
async def test_fcm_overload_is_transient_with_retry_after(fcm, http_status, status, code, expected_type):
    fcm.inject_error(http_status, status, code, retry_after=30)
    with pytest.raises(TransientError) as caught:
        await send_push(fcm_settings(fcm), to=TOKEN, template="welcome", data={"name": "A"}, key="k")
    assert caught.value.type == expected_type and caught.value.retry_after == 30 and code in caught.value.message


async def test_onesignal_targets_a_subscription_with_an_idempotency_uuid(onesignal):
    delivery = await send_push(
        onesignal_settings(onesignal), to="sub-1", template="welcome", data={"name": "Ada"}, key="job-5:0"
    )
    sent = onesignal.messages[-1]
    assert sent["app_id"] == onesignal.app_id and sent["include_subscription_ids"] == ["sub-1"]
    assert sent["headings"] == {"en": "Welcome, Ada"} and sent["contents"]["en"].startswith("Welcome, Ada!")
    assert uuid.UUID(sent["idempotency_key"]).version == 3
    assert sent["idempotency_key"] == onesignal_idempotency_key("job-5:0")
    assert delivery.message_id == sent["id"] and delivery.provider == "onesignal"


async def test_onesignal_same_key_is_one_notification(onesignal):
    before = len(onesignal.messages)
    first = await send_push(
        onesignal_settings(onesignal), to="sub-2", template="welcome", data={"name": "Bo"}, key="job-6:0"
    )
    again = await send_push(
        onesignal_settings(onesignal), to="sub-2", template="welcome", data={"name": "Bo"}, key="job-6:0"
    )
    assert first.message_id == again.message_id and len(onesignal.messages) == before + 1


async def test_onesignal_external_id_alias(onesignal):
    await send_push(
        onesignal_settings(onesignal), to="external_id:user-42", template="welcome", data={"name": "C"}, key="job-7:0"
    )
    sent = onesignal.messages[-1]
    assert sent["include_aliases"] == {"external_id": ["user-42"]} and sent["target_channel"] == "push"


async def test_onesignal_nobody_subscribed_is_invalid_recipient(onesignal):
    error = await refusal(onesignal_settings(onesignal), "sub-unknown", key="job-8:0")
    assert error.type == "invalid_recipient" and "not subscribed" in error.message


async def test_onesignal_wrong_key_is_channel_auth_failed(onesignal):
    assert (
        await refusal(onesignal_settings(onesignal, onesignal_api_key=SecretStr("nope")), "sub-1")
    ).type == "channel_auth_failed"


async def test_onesignal_throttling_and_outage_are_transient(onesignal):
    onesignal.inject(429, {"errors": ["API rate limit exceeded"]}, {"Retry-After": "12"})
    with pytest.raises(TransientError) as caught:
        await send_push(onesignal_settings(onesignal), to="sub-1", template="welcome", data={"name": "A"}, key="k")
    assert caught.value.type == "rate_limited" and caught.value.retry_after == 12
    onesignal.inject(500, {"errors": ["Internal server error"]})
    with pytest.raises(TransientError) as caught:
        await send_push(onesignal_settings(onesignal), to="sub-1", template="welcome", data={"name": "A"}, key="k")
    assert caught.value.type == "provider_unavailable"


async def test_push_without_a_provider_is_not_configured():
    assert (await refusal(Settings(_env_file=None), TOKEN)).type == "channel_not_configured"
