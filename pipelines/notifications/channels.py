"""Which channels exist, which settings each needs, and what a successful send returns.

The API asks `missing_settings` before accepting a notification, so "SMS is not
configured on this server" is a clear 422 at request time instead of a failed job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from service.config import Settings
from service.errors import PermanentError
from service.ratelimit import Rate

if TYPE_CHECKING:
    import httpx

    from .templates import Rendered

Channel = Literal["email", "sms", "push", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push", "webhook")

# Conservative provider defaults: Twilio long codes take ~1 SMS/s; the rest are generous.
DEFAULT_RATES: dict[str, Rate] = {
    "email": Rate(10, 20),
    "sms": Rate(1, 5),
    "push": Rate(100, 200),
    "webhook": Rate(50, 100),
}
RATES_PREFIX = "conveyor:ratelimit:"  # the channels' buckets, shared by every worker


def configured_rates(overrides: Mapping[str, tuple[float, int | None]]) -> dict[str, Rate]:
    """DEFAULT_RATES with the operator's (per second, burst) overrides; no burst keeps the default's."""
    rates = dict(DEFAULT_RATES)
    for channel, (per_second, burst) in overrides.items():
        default = DEFAULT_RATES.get(channel)
        rates[channel] = Rate(per_second, burst or (default.burst if default else 1))
    return rates


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


class Sender(Protocol):
    """How every templated channel (email, SMS, push) sends: render `template` with `data`
    for one recipient (unless the message comes `rendered`, from a tenant's own template)
    and hand it to the provider once per delivery `key`; `client` is the worker's HTTP
    client, for providers reached over HTTP. Raises PermanentError or
    TransientError. Webhooks carry an event, not a template, and are sent apart."""

    def __call__(
        self,
        settings: Settings,
        *,
        to: str,
        template: str,
        data: dict[str, Any],
        key: str,
        client: httpx.AsyncClient | None = None,
        rendered: Rendered | None = None,
    ) -> Awaitable[Delivery]: ...


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
