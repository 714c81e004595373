"""POST /v1/notifications: one message (a template and its data) to one or many recipients.

Everything that can be judged now is judged now, each a 422 naming its field: the
channel and whether this server can send on it, every recipient's shape, the template
and its data, where a webhook may point (SSRF), and `send_at`. What is accepted is the
normalised request, which is also what Idempotency-Key compares.

For the webhook channel, `template` is the event's `type` (e.g. `order.paid`) and `data`
any JSON object: receivers get the Standard Webhooks body {"type", "timestamp", "data"}.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from pipelines.errors import PermanentError, TransientError
from pipelines.notifications.channels import CHANNELS, require_channel
from pipelines.notifications.pipeline import NOTIFICATION_PIPELINE
from pipelines.notifications.recipients import check_recipient
from pipelines.notifications.ssrf import check_destination
from pipelines.notifications.templates import TEMPLATES, validate
from service import idempotency, queue
from service.auth import authenticate
from service.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_body, problem
from service.problems import Problem
from service.submissions import JobSpec, submit
from service.validation import check_storable, invalid, parse_metadata

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_RECIPIENTS = 1000
MAX_WEBHOOK_DATA_BYTES = 64 * 1024
MAX_SEND_AHEAD = timedelta(days=30)
DESTINATION_CHECK_SECONDS = 5.0
EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
FIELDS = ("channel", "to", "template", "data", "send_at", "metadata")


def refused(field: str, error: PermanentError) -> Problem:
    """A 422 carrying the pipeline's own error type (`unknown-template`, …)."""
    return Problem(422, f"{field}: {error.message}", type=error.type.replace("_", "-"), field=field)


async def read_json_object(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object, read up to `limit` bytes: 413 beyond, 400 if not JSON."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"the body exceeds the limit of {limit} bytes", type="payload-too-large", limit=limit)
    try:
        value = json.loads(body)
    except ValueError as exc:  # JSONDecodeError says where (line, column, char), as UnicodeDecodeError does
        declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        detail = f"the body is not valid JSON: {exc}" if declared == "application/json" else \
            "the body must be JSON (Content-Type: application/json)"
        raise Problem(400, detail, type="bad-request") from None
    if not isinstance(value, dict):
        raise Problem(400, "the body must be a JSON object", type="bad-request")
    check_storable(value)
    return value


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
        raise refused("template", PermanentError(
            f"unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}", type="unknown_template"))
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
    if moment - now > MAX_SEND_AHEAD:
        raise invalid("send_at", f"is more than {MAX_SEND_AHEAD.days} days ahead")
    return moment.astimezone(timezone.utc) if moment > now else None


async def check_destinations(urls: list[str], allowed_hosts: list[str]) -> None:
    """Refuse webhook URLs that point inside our network (unless allowed) before accepting.

    Each host is resolved once; a host that does not resolve right now is not refused (the
    worker checks again when it connects, and retries).
    """
    first_url = {}
    for url in urls:
        parts = urlsplit(url)
        first_url.setdefault((parts.hostname, parts.port, parts.scheme), url)

    async def check(url: str) -> None:
        try:
            await check_destination(url, allowed_hosts)
        except TransientError:
            pass
        except PermanentError as error:
            raise refused("to", error) from None

    try:
        async with asyncio.timeout(DESTINATION_CHECK_SECONDS):
            async with asyncio.TaskGroup() as group:
                for url in first_url.values():
                    group.create_task(check(url))
    except* Problem as problems:
        raise problems.exceptions[0] from None
    except* TimeoutError:
        pass  # slow DNS: leave it to the worker's check at connect time


async def create_notification(request: Request) -> Response:
    tenant = await authenticate(request)
    settings = request.app.state.settings

    async def read(job_id: uuid.UUID) -> JobSpec:
        body = await read_json_object(request)
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
        send_at = parse_send_at(body.get("send_at"), datetime.now(timezone.utc))
        metadata = parse_metadata(body.get("metadata"))
        if channel == "webhook":
            await check_destinations(recipients, settings.callback_allowed_hosts)
        payload = {"channel": channel, "to": recipients, "template": body["template"], "data": data,
                   "send_at": send_at.isoformat() if send_at else None}
        # One recipient is a transactional message someone is waiting for: ahead of bulk.
        priority = queue.PRIORITIES["high" if len(recipients) == 1 else "normal"]
        return JobSpec(kind=NOTIFICATION_PIPELINE.kind, fingerprint=idempotency.fingerprint("notifications", {**payload, "metadata": metadata}),
                       payload=payload, metadata=metadata, run_at=send_at, priority=priority)

    # Enough tries for the webhook retry schedule (the first try plus one per delay).
    tries = max(NOTIFICATION_PIPELINE.max_tries, len(settings.webhook_retry_schedule) + 1)
    return await submit(request, tenant, read, max_tries=tries)


OPENAPI_PATHS = {
    "/v1/notifications": {"post": {
        "summary": "Send a templated email, SMS or push, or a signed webhook, to one or many recipients",
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["channel", "to", "template"],
            "additionalProperties": False,
            "properties": {
                "channel": {"type": "string", "enum": list(CHANNELS)},
                "to": {
                    "description": "email address, E.164 phone number, device token or subscription id "
                                   "(`external_id:<id>` for a OneSignal alias), or webhook URL",
                    "oneOf": [{"type": "string"},
                              {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_RECIPIENTS}],
                },
                "template": {"type": "string",
                             "description": f"one of {', '.join(TEMPLATES)}; for webhooks, the event type"},
                "data": {"type": "object", "description": "the template's fields; for webhooks, the event's data"},
                "send_at": {"type": "string", "format": "date-time",
                            "description": "deliver at this time (with a UTC offset); cancellable until then"},
                "metadata": {"type": "object"},
            },
        }}}},
        "responses": {
            "202": json_body("Job", "Accepted: the notification job is recorded"),
            "409": problem("The same Idempotency-Key is still being accepted"),
            "413": problem("Body too large"),
            "422": problem("Invalid fields, channel not configured, refused destination, "
                           "or Idempotency-Key reused with another request"),
            **COMMON_ERRORS,
        },
    }},
}
