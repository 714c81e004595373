"""Notification channels: email (SMTP), SMS (Twilio), push (FCM, OneSignal), webhooks.

Each sender is a self-contained async call that renders a template and hands the message
to its provider exactly once per delivery `key` where the provider allows it, raising
PermanentError or TransientError (service.errors) with a precise `type` otherwise.
Recording deliveries and scheduling retries is the caller's job.
"""

from __future__ import annotations

from .bulk import Outcome, fan_out
from .channels import (
    CHANNELS,
    DEFAULT_RATES,
    Delivery,
    Sender,
    channel_configured,
    configured_rates,
    missing_settings,
    push_provider,
    require_channel,
)
from .mail import send_email
from .push import send_push
from .sms import send_sms
from .ssrf import check_destination, guarded_client, validate_url
from .templates import TEMPLATES, render_email, render_short, validate
from .webhooks import event_body, generate_secret, next_retry_delay, send_webhook, sign, verify

# Channels whose message comes from a template; webhooks carry the event JSON instead.
SENDERS: dict[str, Sender] = {"email": send_email, "sms": send_sms, "push": send_push}

__all__ = [
    "CHANNELS",
    "DEFAULT_RATES",
    "SENDERS",
    "TEMPLATES",
    "Delivery",
    "Outcome",
    "Sender",
    "channel_configured",
    "check_destination",
    "configured_rates",
    "event_body",
    "fan_out",
    "generate_secret",
    "guarded_client",
    "missing_settings",
    "next_retry_delay",
    "push_provider",
    "render_email",
    "render_short",
    "require_channel",
    "send_email",
    "send_push",
    "send_sms",
    "send_webhook",
    "sign",
    "validate",
    "validate_url",
    "verify",
]
