"""A notification's input, judged before its job exists: every problem a 422 naming its
field (a `PermanentError` with `field`).

The channel and whether this deployment can send on it, every recipient's shape, the
template (the tenant's own, else a built-in) and every recipient's data (its own merged
over the request's: extra keys are allowed, a missing one is named), and `send_at` are
judged here, beside the kind's stages; what is accepted is the normalised input the job
carries (and what Idempotency-Key compares).
Where a webhook may point is judged by the API with the same SSRF rules the sender uses.

For the webhook channel, `template` is the event's `type` (e.g. `order.paid`) and `data`
any JSON object: receivers get the Standard Webhooks body {"type", "timestamp", "data"}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.config import Settings
from service.errors import PermanentError
from service.moments import utc_moment
from service.templating.tenant_templates import TenantTemplate

from .channels import CHANNELS, require_channel
from .recipients import check_recipient
from .templates import TEMPLATES, validate

MAX_RECIPIENTS = 1000
MAX_WEBHOOK_DATA_BYTES = 64 * 1024
MAX_SEND_AHEAD = timedelta(days=30)
EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
FIELDS = ("channel", "to", "template", "data", "send_at")


@dataclass(frozen=True)
class Notification:
    channel: str
    to: list[str]
    template: str
    data: dict[str, Any]
    send_at: datetime | None  # None: now
    recipient_data: dict[str, dict[str, Any]] = field(default_factory=dict)  # merged over `data`

    def payload(self) -> dict[str, Any]:
        """What the job carries: its stages read these fields."""
        return {
            "channel": self.channel,
            "to": self.to,
            "template": self.template,
            "data": self.data,
            "recipient_data": self.recipient_data,
            "send_at": self.send_at.isoformat() if self.send_at else None,
        }


def recipient_data(payload: dict[str, Any], recipient: str) -> dict[str, Any]:
    """What one recipient's message is made of: its own data merged over the request's."""
    return {**payload["data"], **payload.get("recipient_data", {}).get(recipient, {})}


def invalid(field: str, detail: str) -> PermanentError:
    return PermanentError(detail, type="invalid_field", field=field)


def refused(field: str, error: PermanentError) -> PermanentError:
    """`error` (its own type, e.g. `unknown_template`) on `field`."""
    return PermanentError(error.message, type=error.type, field=field)


def parse_notification(
    body: dict[str, Any], settings: Settings, now: datetime, custom: TenantTemplate | None = None
) -> Notification:
    """The notification `body` asks for (its FIELDS; others are the caller's to judge).
    `custom`: the tenant's own template of the name `body` gives, if it has one."""
    channel = parse_channel(body.get("channel"))
    try:
        require_channel(settings, channel)
    except PermanentError as error:
        raise refused("channel", error) from None
    to, own = parse_recipients(channel, body.get("to"))
    template = body.get("template")
    data = parse_content(channel, template, body.get("data"), own, custom)
    assert isinstance(template, str)  # parse_content refused anything else
    personal = {recipient: value for recipient, (_, value) in own.items() if value is not None}
    return Notification(channel, to, template, data, parse_send_at(body.get("send_at"), now), personal)


def parse_channel(raw: Any) -> str:
    if raw not in CHANNELS:
        raise invalid("channel", f"must be one of {', '.join(CHANNELS)}")
    return raw


Own = dict[str, tuple[str, dict[str, Any] | None]]  # recipient: (where it was given, its own data)


def parse_recipients(channel: str, raw: Any) -> tuple[list[str], Own]:
    """One recipient or a list of 1 to MAX_RECIPIENTS, each a recipient or `{to, data}`;
    a duplicate is sent to once, with the data it was first given."""
    values = raw if isinstance(raw, list) else [raw]
    if not 1 <= len(values) <= MAX_RECIPIENTS:
        raise invalid("to", f"must be one recipient or a list of 1 to {MAX_RECIPIENTS}")
    own: Own = {}
    for index, given in enumerate(values):
        where = f"to[{index}]" if isinstance(raw, list) else "to"
        value, data, named = given, None, where
        if isinstance(given, dict) and isinstance(raw, list):
            unknown = sorted(set(given) - {"to", "data"})
            if unknown:
                raise invalid(f"{where}.{unknown[0]}", "unknown field; a recipient object has to and data")
            value, data, named = given.get("to"), given.get("data"), f"{where}.to"
            if data is not None and not isinstance(data, dict):
                raise invalid(f"{where}.data", "must be a JSON object")
        try:
            check_recipient(channel, value)
        except PermanentError as error:
            raise refused(named, error) from None
        own.setdefault(value, (where, data))
    return list(own), own


def parse_content(
    channel: str, template: Any, data: Any, own: Own | None = None, custom: TenantTemplate | None = None
) -> dict[str, Any]:
    """The template's data for email/SMS/push, judged merged with each recipient's own;
    for webhooks, the event's `data` object."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise invalid("data", "must be a JSON object")
    merged = [
        (f"{where}.data" if value is not None else "data", {**data, **(value or {})})
        for where, value in (own or {"": ("", None)}).values()
    ]
    if channel == "webhook":
        if not isinstance(template, str) or not EVENT_TYPE.match(template):
            raise invalid("template", "for webhooks, the event type: letters, digits and . _ : - (at most 100)")
        for where, value in merged:
            if len(json.dumps(value).encode()) > MAX_WEBHOOK_DATA_BYTES:
                raise invalid(where, f"larger than {MAX_WEBHOOK_DATA_BYTES} bytes")
        return data
    if custom is not None:
        _check_custom(channel, custom, merged)
        return data
    if not isinstance(template, str) or template not in TEMPLATES:
        known = ", ".join(sorted(TEMPLATES))
        raise PermanentError(
            f"unknown template {template!r}; known: {known}", type="unknown_template", field="template"
        )
    for where, value in merged:
        try:
            validate(template, value)
        except PermanentError as error:
            raise refused(where, error) from None
    return data


def _check_custom(channel: str, custom: TenantTemplate, merged: list[tuple[str, dict[str, Any]]]) -> None:
    """The tenant's template is for `channel`, and every recipient's data has what it reads."""
    if custom.channel != channel:
        raise PermanentError(
            f"template {custom.name!r} is for {custom.channel}, not {channel}",
            type="template_channel",
            field="template",
        )
    for where, value in merged:
        lacking = custom.lacking(value)
        if lacking:
            raise PermanentError(
                f"template {custom.name!r} needs {', '.join(map(repr, lacking))}",
                type="invalid_template_data",
                field=where,
            )


def parse_send_at(raw: Any, now: datetime) -> datetime | None:
    """ISO 8601 with a UTC offset, at most MAX_SEND_AHEAD away; a past time means now."""
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise invalid("send_at", "must be an ISO 8601 date-time string, e.g. 2030-01-31T09:00:00+01:00")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid("send_at", f"{raw!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise invalid("send_at", "needs a UTC offset (Z or ±hh:mm), so the moment is unambiguous")
    try:
        moment = utc_moment(moment)
    except ValueError as exc:
        raise invalid("send_at", str(exc)) from None
    if moment - now > MAX_SEND_AHEAD:
        raise invalid("send_at", f"is more than {MAX_SEND_AHEAD.days} days ahead")
    return moment if moment > now else None
