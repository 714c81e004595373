import pytest
from pydantic import SecretStr

from pipelines.notifications.channels import channel_configured, missing_settings, push_provider, require_channel
from service.config import Settings
from service.errors import PermanentError


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_nothing_but_webhooks_is_configured_by_default():
    empty = settings()
    assert [channel for channel in ("email", "sms", "push", "webhook") if channel_configured(empty, channel)] == [
        "webhook"
    ]
    assert missing_settings(empty, "sms") == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"]
    assert missing_settings(empty, "email") == ["SMTP_URL"]


def test_push_is_ready_with_either_provider_and_prefers_fcm():
    onesignal = settings(onesignal_app_id="app", onesignal_api_key=SecretStr("key"))
    both = settings(
        onesignal_app_id="app", onesignal_api_key=SecretStr("key"), fcm_project_id="p", fcm_access_token=SecretStr("t")
    )
    assert channel_configured(onesignal, "push") and push_provider(onesignal) == "onesignal"
    assert push_provider(both) == "fcm"
    assert push_provider(settings(fcm_project_id="p")) is None


def test_require_channel_names_the_variables_to_set():
    with pytest.raises(PermanentError) as caught:
        require_channel(settings(twilio_account_sid="AC1"), "sms")
    assert caught.value.type == "channel_not_configured"
    assert "TWILIO_AUTH_TOKEN and TWILIO_FROM" in caught.value.message
    with pytest.raises(PermanentError) as caught:
        require_channel(settings(), "push")
    assert (
        "FCM_PROJECT_ID and FCM_ACCESS_TOKEN (FCM), or ONESIGNAL_APP_ID and ONESIGNAL_API_KEY (OneSignal)"
        in caught.value.message
    )


def test_unknown_channel_is_refused():
    with pytest.raises(PermanentError) as caught:
        missing_settings(settings(), "pigeon")
    assert caught.value.type == "unknown_channel"
