"""SMS through a Twilio-compatible server over real HTTP."""

import httpx
import pytest
from pydantic import SecretStr

from pipelines.notifications.sms import send_sms
from service.config import Settings
from service.errors import PermanentError, TransientError
from testkit.twilio_server import TwilioServer, twilio_error

APPOINTMENT = {"name": "Ada", "starts_at": "Tue 14:30", "location": "12 High St"}


@pytest.fixture(scope="module")
def twilio():
    server = TwilioServer().start()
    yield server
    server.stop()


def settings(twilio: TwilioServer, **overrides) -> Settings:
    values = dict(
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=SecretStr(twilio.auth_token),
        twilio_from="+15005550006",
        twilio_base_url=twilio.url,
    )
    return Settings(_env_file=None, **{**values, **overrides})


async def test_sends_the_rendered_short_text(twilio):
    delivery = await send_sms(
        settings(twilio), to="+447700900123", template="appointment_reminder", data=APPOINTMENT, key="job-1:0"
    )
    sent = twilio.messages[-1]
    assert sent["to"] == "+447700900123" and sent["from"] == "+15005550006"
    assert sent["body"] == "Reminder: Ada, your appointment is on Tue 14:30 at 12 High St."
    assert delivery.message_id == sent["sid"] and delivery.message_id.startswith("SM")
    assert (delivery.channel, delivery.provider) == ("sms", "twilio")


async def test_the_same_key_is_one_message(twilio):
    before = len(twilio.messages)
    async with httpx.AsyncClient() as client:
        first = await send_sms(
            settings(twilio), to="+447700900124", template="welcome", data={"name": "Bo"}, key="job-2:0", client=client
        )
        again = await send_sms(
            settings(twilio), to="+447700900124", template="welcome", data={"name": "Bo"}, key="job-2:0", client=client
        )
        other = await send_sms(
            settings(twilio), to="+447700900124", template="welcome", data={"name": "Bo"}, key="job-3:0", client=client
        )
    assert first.message_id == again.message_id != other.message_id
    assert len(twilio.messages) == before + 2


async def test_a_number_that_is_not_e164_is_refused_before_sending(twilio):
    before = twilio.requests
    with pytest.raises(PermanentError) as caught:
        await send_sms(settings(twilio), to="07700 900123", template="welcome", data={"name": "Bo"}, key="k")
    assert caught.value.type == "invalid_recipient" and twilio.requests == before


async def test_twilio_refusing_the_number_is_invalid_recipient(twilio):
    twilio.inject(400, twilio_error(400, 21614, "'To' number is not a valid mobile number"))
    with pytest.raises(PermanentError) as caught:
        await send_sms(settings(twilio), to="+15005550009", template="welcome", data={"name": "Bo"}, key="k")
    assert caught.value.type == "invalid_recipient" and "21614" in caught.value.message


@pytest.mark.parametrize(
    ("overrides", "kind", "code"),
    [
        ({"twilio_from": "+15550001111"}, "destination_refused", "21606"),
        ({"twilio_auth_token": SecretStr("wrong")}, "channel_auth_failed", "20003"),
    ],
    ids=["unknown-from-number", "bad-credentials"],
)
async def test_twilio_refusing_our_settings_is_permanent(twilio, overrides, kind, code):
    """A From number Twilio does not know is a refused message; a wrong token, our credentials."""
    with pytest.raises(PermanentError) as caught:
        await send_sms(
            settings(twilio, **overrides), to="+447700900123", template="welcome", data={"name": "Bo"}, key="k"
        )
    assert caught.value.type == kind and code in caught.value.message


async def test_throttling_is_transient_with_the_retry_after_hint(twilio):
    twilio.inject(429, twilio_error(429, 20429, "Too Many Requests"), {"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        await send_sms(settings(twilio), to="+447700900123", template="welcome", data={"name": "Bo"}, key="k")
    assert caught.value.type == "rate_limited" and caught.value.retry_after == 7


async def test_server_errors_are_transient_and_a_retry_succeeds(twilio):
    twilio.inject(500, twilio_error(500, 20500, "Internal Server Error"))
    with pytest.raises(TransientError) as caught:
        await send_sms(settings(twilio), to="+447700900125", template="welcome", data={"name": "Bo"}, key="job-4:0")
    assert caught.value.type == "provider_unavailable"
    delivery = await send_sms(
        settings(twilio), to="+447700900125", template="welcome", data={"name": "Bo"}, key="job-4:0"
    )
    assert delivery.message_id == twilio.messages[-1]["sid"]


async def test_an_unreachable_twilio_is_transient(twilio):
    from testkit.net import free_port

    with pytest.raises(TransientError) as caught:
        await send_sms(
            settings(twilio, twilio_base_url=f"http://127.0.0.1:{free_port()}"),
            to="+447700900123",
            template="welcome",
            data={"name": "Bo"},
            key="k",
        )
    assert caught.value.type == "provider_unavailable"
