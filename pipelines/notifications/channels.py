"""Which channels exist, which settings each needs, and what a successful send returns.

The API asks `missing_settings` before accepting a notification, so "SMS is not
configured on this server" is a clear 422 at request time instead of a failed job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipelines.errors import PermanentError
from service.config import Settings

Channel = Literal["email", "sms", "push", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push", "webhook")

_REQUIRED: dict[str, tuple[str, ...]] = {
    "email": ("smtp_url",),
    "sms": ("twilio_account_sid", "twilio_auth_token", "twilio_from"),
    "fcm": ("fcm_project_id", "fcm_access_token"),
    "onesignal": ("onesignal_app_id", "onesignal_api_key"),
    "webhook": (),  # the signing secret is the tenant's, created on demand
}


@dataclass(frozen=True)
class Delivery:
    """One message accepted by its provider; `message_id` is the provider's reference."""

    channel: Channel
    provider: str
    recipient: str
    message_id: str


def _missing(settings: Settings, provider: str) -> list[str]:
    return [name.upper() for name in _REQUIRED[provider] if not getattr(settings, name)]


def push_provider(settings: Settings) -> Literal["fcm", "onesignal"] | None:
    """FCM when it is configured, else OneSignal when it is, else None."""
    for provider in ("fcm", "onesignal"):
        if not _missing(settings, provider):
            return provider
    return None


def missing_settings(settings: Settings, channel: str) -> list[str]:
    """The environment variables still to set before `channel` can send (empty: ready)."""
    if channel not in CHANNELS:
        raise PermanentError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}", type="unknown_channel")
    if channel == "push":
        if push_provider(settings):
            return []
        return _missing(settings, "fcm") + _missing(settings, "onesignal")
    return _missing(settings, channel)


def channel_configured(settings: Settings, channel: str) -> bool:
    return not missing_settings(settings, channel)


def require_channel(settings: Settings, channel: str) -> None:
    """Raise PermanentError `channel_not_configured`, naming what to set, unless ready."""
    if not missing_settings(settings, channel):
        return
    if channel == "push":
        wanted = f"{' and '.join(_missing(settings, 'fcm'))} (FCM), or {' and '.join(_missing(settings, 'onesignal'))} (OneSignal)"
    else:
        wanted = " and ".join(missing_settings(settings, channel))
    raise PermanentError(f"the {channel} channel is not configured: set {wanted}", type="channel_not_configured")
