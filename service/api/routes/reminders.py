"""Things the schedule acts on later: reminders to send when due, memberships to warn about.

Neither is a job yet. The reminders cron (every 5 minutes) turns each due reminder into
one notification job; the memberships cron (daily) sends one `membership_expiry` email
per membership expiring within MEMBERSHIP_NOTICE_DAYS. A reminder's channel (configured
on this server), recipients, webhook destinations (SSRF), template (the tenant's own or a
built-in) and data are checked here, as a notification's are, so a bad reminder is a 422
today rather than a failed job next month.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from pipelines.notifications import require_channel, validate
from pipelines.notifications.input import parse_content
from pipelines.notifications.recipients import check_recipient
from pipelines.scheduled.memberships import EXPIRY_TEMPLATE, template_data
from service import ledger
from service.api import idempotency
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_answer, json_request, problem
from service.api.problems import Problem
from service.api.routes.destinations import check_destinations
from service.api.routes.templates import NAME, find_template
from service.api.validation import Moment, StrictModel, invalid, parse_json, read_json_body, refused
from service.errors import PermanentError

MAX_BODY_BYTES = 64 * 1024
MAX_RECIPIENTS = 100
Text = Annotated[str, StringConstraints(min_length=1, max_length=320)]
Member = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]


class ReminderIn(StrictModel):
    due_at: Moment
    channel: Literal["email", "sms", "push", "webhook"]
    to: Text | list[Text]
    template: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: str | list[str]) -> list[str]:
        recipients = [value] if isinstance(value, str) else value
        if not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise ValueError(f"give 1 to {MAX_RECIPIENTS} recipients")
        return recipients


class MembershipIn(StrictModel):
    email: Email
    expires_at: Moment
    data: dict[str, Any] = Field(default_factory=dict)


def _checked(field: str, check, *args) -> None:
    """Run a notifications check; its PermanentError becomes a 422 on `field`."""
    try:
        check(*args)
    except PermanentError as exc:
        raise refused(field, exc) from None


def _reminder_view(row) -> dict:
    return {
        "id": str(row["id"]),
        "due_at": row["due_at"].isoformat(),
        "channel": row["channel"],
        "to": row["recipients"],
        "template": row["template"],
        "data": row["data"],
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "created_at": row["created_at"].isoformat(),
    }


REMINDER_COLUMNS = "id, due_at, channel, recipients, template, data, job_id, created_at"


async def create_reminder(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    reminder = parse_json(ReminderIn, await read_json_body(request, MAX_BODY_BYTES))
    settings = request.app.state.settings
    _checked("channel", require_channel, settings, reminder.channel)
    for index, recipient in enumerate(reminder.to):
        _checked(f"to[{index}]", check_recipient, reminder.channel, recipient)
    if reminder.channel == "webhook":
        await check_destinations(
            [(f"to[{index}]", url) for index, url in enumerate(reminder.to)], settings.callback_allowed_hosts
        )
    else:
        custom = (
            await find_template(request, tenant.id, reminder.template) if NAME.fullmatch(reminder.template) else None
        )
        try:
            parse_content(reminder.channel, reminder.template, reminder.data, custom=custom)
        except PermanentError as exc:
            raise refused("data", exc) from None

    async def schedule(conn) -> idempotency.Answer:
        row = await conn.fetchrow(
            f"""
            INSERT INTO reminders (tenant_id, due_at, channel, recipients, template, data)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {REMINDER_COLUMNS}
            """,
            tenant.id,
            reminder.due_at,
            reminder.channel,
            reminder.to,
            reminder.template,
            reminder.data,
        )
        return 201, _reminder_view(row), {"Location": f"/v1/reminders/{row['id']}"}

    return await idempotency.answer_once(
        request,
        tenant.id,
        idempotency.fingerprint("reminders", reminder.model_dump(mode="json")),
        schedule,
        track=(f"tenant:{tenant.id}",),
    )


async def get_reminder(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    reminder_id = ledger.parse_job_id(request.path_params["reminder_id"])
    row = None
    if reminder_id is not None:
        async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
            row = await conn.fetchrow(
                f"SELECT {REMINDER_COLUMNS} FROM reminders WHERE id = $1 AND tenant_id = $2", reminder_id, tenant.id
            )
    if row is None:
        raise Problem(404, "no such reminder", type="not-found")
    return JSONResponse(_reminder_view(row))


async def put_membership(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    member = request.path_params["member"]
    if not 1 <= len(member) <= 200 or not member.isprintable():
        raise invalid("member", "must be 1 to 200 printable characters")
    membership = parse_json(MembershipIn, await read_json_body(request, MAX_BODY_BYTES))
    _checked("data", validate, EXPIRY_TEMPLATE, template_data(membership.data, membership.expires_at))
    async with request.app.state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO memberships AS m (tenant_id, member, email, data, expires_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (tenant_id, member) DO UPDATE SET
                email = excluded.email, data = excluded.data, expires_at = excluded.expires_at, updated_at = now(),
                notified_at = CASE WHEN m.expires_at = excluded.expires_at THEN m.notified_at END
            RETURNING member, email, data, expires_at, notified_at, xmax = 0 AS created
            """,
            tenant.id,
            member,
            membership.email,
            membership.data,
            membership.expires_at,
        )
    return JSONResponse(_membership_view(row), status_code=201 if row["created"] else 200)


def _membership_view(row) -> dict:
    notified: datetime | None = row["notified_at"]
    return {
        "member": row["member"],
        "email": row["email"],
        "data": row["data"],
        "expires_at": row["expires_at"].isoformat(),
        "notified_at": notified.isoformat() if notified else None,
    }


_TIME = {"type": "string", "format": "date-time"}
_REMINDER_FIELDS = {
    "due_at": {**_TIME, "description": "with an offset"},
    "channel": {"type": "string", "enum": ["email", "sms", "push", "webhook"]},
    "to": {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_RECIPIENTS},
        ]
    },
    "template": {"type": "string"},
    "data": {"type": "object", "description": "the template's fields"},
}
_REMINDER = {
    "type": "object",
    "required": ["id", "due_at", "channel", "to", "template", "data", "job_id", "created_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        **_REMINDER_FIELDS,
        "job_id": {"type": ["string", "null"], "description": "the notification job, once due"},
        "created_at": _TIME,
    },
}
_MEMBERSHIP_FIELDS = {
    "email": {"type": "string", "format": "email"},
    "expires_at": _TIME,
    "data": {"type": "object", "description": "membership_expiry fields: name (required), plan, renew_url, …"},
}


_ERRORS = {
    "413": problem("Body too large"),
    "415": problem("Not application/json"),
    "422": problem("Invalid fields"),
    **COMMON_ERRORS,
}
OPENAPI_PATHS = {
    "/v1/reminders": {
        "post": {
            "summary": "Send a notification when it is due (checked every 5 minutes by default)",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["due_at", "channel", "to", "template"],
                    "additionalProperties": False,
                    "properties": _REMINDER_FIELDS,
                }
            ),
            "responses": {"201": json_answer(_REMINDER, "Scheduled"), **_ERRORS},
        }
    },
    "/v1/reminders/{reminder_id}": {
        "get": {
            "summary": "A reminder, and the notification job it became once due",
            "parameters": [{"name": "reminder_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": json_answer(_REMINDER, "The reminder"),
                "404": problem("Unknown reminder"),
                **COMMON_ERRORS,
            },
        }
    },
    "/v1/memberships/{member}": {
        "put": {
            "summary": "Create or update a membership; a membership_expiry email goes out days before it expires",
            "parameters": [
                {
                    "name": "member",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                }
            ],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["email", "expires_at"],
                    "additionalProperties": False,
                    "properties": _MEMBERSHIP_FIELDS,
                }
            ),
            "responses": {
                "201": json_answer({"type": "object"}, "Created"),
                "200": json_answer({"type": "object"}, "Updated (a changed expiry will be notified again)"),
                **_ERRORS,
            },
        }
    },
}
