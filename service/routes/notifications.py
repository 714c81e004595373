"""POST /v1/notifications: one message (a template and its data) to one or many recipients.

Everything that can be judged now is judged now, each a 422 naming its field: the
channel and whether this server can send on it, every recipient's shape, the template
and its data, where a webhook may point (SSRF), and `send_at`. What is accepted is the
normalised request, which is also what Idempotency-Key compares.

For the webhook channel, `template` is the event's `type` (e.g. `order.paid`) and `data`
any JSON object: receivers get the Standard Webhooks body {"type", "timestamp", "data"}.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipelines.notifications.channels import CHANNELS, require_channel
from pipelines.notifications.recipients import check_recipient
from pipelines.notifications.templates import TEMPLATES, validate
from service import idempotency, queue
from service.auth import authenticate
from service.errors import PermanentError
from service.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_body, json_request, problem
from service.routes.destinations import check_destinations
from service.submissions import JobSpec, kind_spec, submit
from service.validation import invalid, parse_json_object, parse_metadata, read_json_body, refused, utc_moment

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_RECIPIENTS = 1000
MAX_WEBHOOK_DATA_BYTES = 64 * 1024
MAX_SEND_AHEAD = timedelta(days=30)
EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
FIELDS = ("channel", "to", "template", "data", "send_at", "metadata")


def parse_channel(raw: Any) -> str:
    if raw not in CHANNELS:
        raise invalid("channel", f"must be one of {', '.join(CHANNELS)}")
    return raw


def parse_recipients(channel: str, raw: Any) -> list[str]:
    """One recipient or a list of 1 to MAX_RECIPIENTS; duplicates are sent to once."""
    values = raw if isinstance(raw, list) else [raw]
    if not 1 <= len(values) <= MAX_RECIPIENTS:
        raise invalid("to", f"must be one recipient or a list of 1 to {MAX_RECIPIENTS}")
    for index, value in enumerate(values):
        try:
            check_recipient(channel, value)
        except PermanentError as error:
            where = "to" if not isinstance(raw, list) else f"to[{index}]"
            raise refused(where, error) from None
    return list(dict.fromkeys(values))


def parse_content(channel: str, template: Any, data: Any) -> dict[str, Any]:
    """The template's data for email/SMS/push; for webhooks, the event's `data` object."""
    data = {} if data is None else data
    if channel == "webhook":
        if not isinstance(template, str) or not EVENT_TYPE.match(template):
            raise invalid("template", "for webhooks, the event type: letters, digits and . _ : - (at most 100)")
        if not isinstance(data, dict):
            raise invalid("data", "must be a JSON object")
        if len(json.dumps(data).encode()) > MAX_WEBHOOK_DATA_BYTES:
            raise invalid("data", f"larger than {MAX_WEBHOOK_DATA_BYTES} bytes")
        return data
    if not isinstance(template, str) or template not in TEMPLATES:
        raise refused(
            "template",
            PermanentError(
                f"unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}", type="unknown_template"
            ),
        )
    try:
        validate(template, data)
    except PermanentError as error:
        raise refused("data", error) from None
    return data


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


async def create_notification(request: Request) -> Response:
    tenant = await authenticate(request)
    settings = request.app.state.settings

    async def read(job_id: uuid.UUID) -> JobSpec:
        body = parse_json_object(await read_json_body(request, MAX_BODY_BYTES))
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise invalid(unknown[0], f"unknown field; the fields are {', '.join(FIELDS)}")
        channel = parse_channel(body.get("channel"))
        try:
            require_channel(settings, channel)
        except PermanentError as error:
            raise refused("channel", error) from None
        recipients = parse_recipients(channel, body.get("to"))
        data = parse_content(channel, body.get("template"), body.get("data"))
        send_at = parse_send_at(body.get("send_at"), datetime.now(UTC))
        metadata = parse_metadata(body.get("metadata"))
        if channel == "webhook":
            await check_destinations([("to", url) for url in recipients], settings.callback_allowed_hosts)
        payload = {
            "channel": channel,
            "to": recipients,
            "template": body["template"],
            "data": data,
            "send_at": send_at.isoformat() if send_at else None,
        }
        # One recipient is a transactional message someone is waiting for: ahead of bulk.
        priority = queue.PRIORITIES["high" if len(recipients) == 1 else "normal"]
        return JobSpec(
            fingerprint=idempotency.fingerprint("notifications", {**payload, "metadata": metadata}),
            payload=payload,
            metadata=metadata,
            run_at=send_at,
            priority=priority,
        )

    return await submit(request, tenant, read, kind=kind_spec(request, "notification"))


OPENAPI_PATHS = {
    "/v1/notifications": {
        "post": {
            "summary": "Send a templated email, SMS or push, or a signed webhook, to one or many recipients",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["channel", "to", "template"],
                    "additionalProperties": False,
                    "properties": {
                        "channel": {"type": "string", "enum": list(CHANNELS)},
                        "to": {
                            "description": "email address, E.164 phone number, device token or subscription id "
                            "(`external_id:<id>` for a OneSignal alias), or webhook URL",
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "minItems": 1,
                                    "maxItems": MAX_RECIPIENTS,
                                },
                            ],
                        },
                        "template": {
                            "type": "string",
                            "description": f"one of {', '.join(TEMPLATES)}; for webhooks, the event type",
                        },
                        "data": {
                            "type": "object",
                            "description": "the template's fields; for webhooks, the event's data",
                        },
                        "send_at": {
                            "type": "string",
                            "format": "date-time",
                            "description": "deliver at this time (with a UTC offset); cancellable until then",
                        },
                        "metadata": {"type": "object"},
                    },
                }
            ),
            "responses": {
                "202": json_body("Job", "Accepted: the notification job is recorded"),
                "409": problem("The same Idempotency-Key is still being accepted"),
                "413": problem("Body too large"),
                "415": problem("Not application/json"),
                "422": problem(
                    "Invalid fields, channel not configured, refused destination, "
                    "or Idempotency-Key reused with another request"
                ),
                **COMMON_ERRORS,
            },
        }
    },
}
