"""SMS through Twilio's Messages API (REST, form-encoded, HTTP basic auth)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from service.config import Settings
from service.errors import PermanentError, TransientError

from .channels import Delivery, require_channel
from .provider_http import json_body, post, refusal, secret_value
from .templates import Rendered, RenderedShort, render_short

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio error codes that say the number itself is wrong or cannot take SMS.
RECIPIENT_ERRORS = {21211, 21214, 21217, 21401, 21407, 21408, 21421, 21610, 21612, 21614}


def _twilio_error(response: httpx.Response) -> PermanentError | TransientError:
    body = json_body(response)
    code = body.get("code") if isinstance(body, dict) else None
    detail = f"{body.get('message', response.reason_phrase)} (Twilio error {code})" if code else response.reason_phrase
    return refusal(
        response,
        "Twilio",
        detail,
        recipient="Twilio refused the recipient" if code in RECIPIENT_ERRORS else None,
        credentials=code == 20003,
    )


async def send_sms(
    settings: Settings,
    *,
    to: str,
    template: str,
    data: dict[str, Any],
    key: str,
    client: httpx.AsyncClient | None = None,
    rendered: Rendered | None = None,
) -> Delivery:
    """Send the template's short text (or the `rendered` one) to `to` (E.164); `key` makes a
    resend the same message."""
    require_channel(settings, "sms")
    if not E164.match(to):
        raise PermanentError(f"{to!r} is not an E.164 phone number (+ and 7-15 digits)", type="invalid_recipient")
    body = (rendered if isinstance(rendered, RenderedShort) else render_short(template, data)).body
    sid = settings.twilio_account_sid or ""
    token = secret_value(settings.twilio_auth_token)
    response = await post(
        client,
        "Twilio",
        f"{settings.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json",
        data={"To": to, "From": settings.twilio_from, "Body": body},
        auth=(sid, token),
        headers={IDEMPOTENCY_HEADER: key},
    )
    if response.status_code not in (200, 201):
        raise _twilio_error(response)
    return Delivery(channel="sms", provider="twilio", recipient=to, message_id=json_body(response).get("sid", ""))
