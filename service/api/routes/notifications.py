"""POST /v1/notifications: one message (a template and its data) to one or many recipients.

The kind judges its own input (pipelines/notifications/input.py), each problem a 422
naming its field; here are what any job has (metadata, Idempotency-Key) and where a
webhook may point (SSRF, resolved now), and which template the name means: the tenant's
own if it has one (`/v1/templates`), else the built-in. One recipient is a transactional
message someone is waiting for: it goes ahead of bulk.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from pipelines.notifications.channels import CHANNELS
from pipelines.notifications.input import FIELDS, MAX_RECIPIENTS, parse_notification
from pipelines.notifications.templates import TEMPLATES
from service import queue
from service.api import idempotency
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_body, json_request, problem
from service.api.routes.destinations import check_destinations
from service.api.routes.templates import NAME, find_template
from service.api.submissions import JobSpec, kind_spec, submit
from service.api.validation import invalid, parse_json_object, parse_metadata, read_json_body

MAX_BODY_BYTES = 4 * 1024 * 1024
REQUEST_FIELDS = (*FIELDS, "metadata")


async def create_notification(request: Request) -> Response:
    tenant = await authenticate(request)
    settings = request.app.state.settings

    async def read(job_id: uuid.UUID) -> JobSpec:
        body = parse_json_object(await read_json_body(request, MAX_BODY_BYTES))
        unknown = sorted(set(body) - set(REQUEST_FIELDS))
        if unknown:
            raise invalid(unknown[0], f"unknown field; the fields are {', '.join(REQUEST_FIELDS)}")
        template, channel = body.get("template"), body.get("channel")
        custom = None
        if isinstance(template, str) and channel != "webhook" and NAME.fullmatch(template):
            custom = await find_template(request, tenant.id, template)
        notification = parse_notification(body, settings, datetime.now(UTC), custom)
        metadata = parse_metadata(body.get("metadata"))
        if notification.channel == "webhook":
            await check_destinations([("to", url) for url in notification.to], settings.callback_allowed_hosts)
        payload = notification.payload()
        return JobSpec(
            fingerprint=idempotency.fingerprint("notifications", {**payload, "metadata": metadata}),
            payload=payload,
            metadata=metadata,
            run_at=notification.send_at,
            priority=queue.PRIORITIES["high" if len(notification.to) == 1 else "normal"],
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
                            "(`external_id:<id>` for a OneSignal alias), or webhook URL; in a list, a recipient "
                            "may be `{to, data}`, its own data merged over the request's",
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "array",
                                    "items": {
                                        "oneOf": [
                                            {"type": "string"},
                                            {
                                                "type": "object",
                                                "required": ["to"],
                                                "additionalProperties": False,
                                                "properties": {"to": {"type": "string"}, "data": {"type": "object"}},
                                            },
                                        ]
                                    },
                                    "minItems": 1,
                                    "maxItems": MAX_RECIPIENTS,
                                },
                            ],
                        },
                        "template": {
                            "type": "string",
                            "description": f"one of the tenant's templates (`/v1/templates`) or a built-in: "
                            f"{', '.join(TEMPLATES)}; for webhooks, the event type",
                        },
                        "data": {
                            "type": "object",
                            "description": "the template's variables (more are allowed); for webhooks, "
                            "the event's data",
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
