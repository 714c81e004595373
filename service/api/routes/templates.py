"""A tenant's own notification templates: `PUT`, `GET`, `DELETE /v1/templates/{name}`,
`GET /v1/templates` and `POST /v1/templates/{name}/preview`.

A template is judged when it is stored: each part must be valid Jinja (a 422 naming the
part, line and column) and may not name an internal (`__class__`, …). Preview renders it
as a notification would: in the sandbox, a variable the data lacks a 422 naming it. A
name without a template of the tenant's previews the built-in of that name, if any.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipelines.notifications.templates import TEMPLATES, RenderedShort, render_email, render_tenant, validate
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, json_request, problem
from service.api.problems import Problem
from service.api.validation import StrictModel, invalid, parse_json, read_json_body, refused
from service.errors import PermanentError
from service.templating import MAX_SOURCE, Source, SyntaxProblem, tenant_templates
from service.templating.tenant_templates import TenantTemplate

MAX_BODY_BYTES = 1024 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class TemplateIn(StrictModel):
    channel: Literal["email", "sms", "push"]
    subject: str | None = Field(default=None, max_length=MAX_SOURCE)
    text: str = Field(max_length=MAX_SOURCE)
    html: str | None = Field(default=None, max_length=MAX_SOURCE)


class PreviewIn(StrictModel):
    data: dict[str, Any] = Field(default_factory=dict)


def template_view(template: TenantTemplate) -> dict:
    source = template.source
    return {
        "name": template.name,
        "channel": template.channel,
        "subject": source.subject,
        "text": source.text,
        "html": source.html,
        "variables": template.variables,
        "created_at": template.created_at.isoformat(),
        "updated_at": template.updated_at.isoformat(),
    }


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not NAME.fullmatch(name):
        raise invalid("name", "1 to 100 letters, digits and . _ - (starting with a letter or digit)")
    return name


def _not_found(name: str) -> Problem:
    return Problem(404, f"you have no template {name!r}", type="not-found")


async def find_template(request: Request, tenant_id: uuid.UUID, name: str) -> TenantTemplate | None:
    """The tenant's own template `name`, read where the tenant's last write is visible."""
    async with request.app.state.db.read(follow=(f"tenant:{tenant_id}",)) as conn:
        return await tenant_templates.find(conn, tenant_id, name)


async def put_template(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    name = _name(request)
    body = parse_json(TemplateIn, await read_json_body(request, MAX_BODY_BYTES))
    if body.channel == "email" and not body.subject:
        raise invalid("subject", "an email template needs a subject")
    if body.channel != "email" and body.html is not None:
        raise invalid("html", "only email templates have an HTML part")
    source = Source(body.subject, body.text, body.html)
    try:
        async with request.app.state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
            template, created = await tenant_templates.put(conn, tenant.id, name, body.channel, source)
    except SyntaxProblem as error:
        raise Problem(
            422,
            f"{error.field}: {error.message}",
            type=error.type.replace("_", "-"),
            field=error.field,
            line=error.line,
            column=error.column,
        ) from None
    headers = {"Location": f"/v1/templates/{name}"} if created else None
    return JSONResponse(template_view(template), status_code=201 if created else 200, headers=headers)


async def list_templates(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
        templates = await tenant_templates.list_all(conn, tenant.id)
    return JSONResponse({"items": [template_view(template) for template in templates]})


async def get_template(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    name = _name(request)
    template = await find_template(request, tenant.id, name)
    if template is None:
        raise _not_found(name)
    return JSONResponse(template_view(template))


async def delete_template(request: Request) -> Response:
    tenant = await authenticate(request)
    name = _name(request)
    async with request.app.state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
        deleted = await tenant_templates.delete(conn, tenant.id, name)
    if not deleted:
        raise _not_found(name)
    return Response(status_code=204)


async def preview_template(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    name = _name(request)
    data = parse_json(PreviewIn, await read_json_body(request, MAX_BODY_BYTES)).data
    template = await find_template(request, tenant.id, name)
    if template is not None:
        lacking = template.lacking(data)
        if lacking:
            raise Problem(
                422,
                f"data: template {name!r} needs {', '.join(map(repr, lacking))}",
                type="invalid-template-data",
                field="data",
                missing=lacking,
            )
        rendered = await render_tenant(template, data)
        if isinstance(rendered, RenderedShort):
            return JSONResponse({"subject": rendered.title or None, "text": rendered.body, "html": None})
        return JSONResponse({"subject": rendered.subject, "text": rendered.text, "html": rendered.html})
    if name not in TEMPLATES:
        raise _not_found(name)
    try:
        validate(name, data)
    except PermanentError as error:
        raise refused("data", error) from None
    email = render_email(name, data)
    return JSONResponse({"subject": email.subject, "text": email.text, "html": email.html})


NAME_PARAMETER = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": NAME.pattern}}
PART = {"type": ["string", "null"], "maxLength": MAX_SOURCE}
TEMPLATE = {
    "type": "object",
    "required": ["name", "channel", "subject", "text", "html", "variables", "created_at", "updated_at"],
    "properties": {
        "name": {"type": "string"},
        "channel": {"type": "string", "enum": ["email", "sms", "push"]},
        "subject": PART,
        "text": {"type": "string"},
        "html": PART,
        "variables": {
            "type": "array",
            "items": {"type": "string"},
            "description": "what the template reads from `data`: a notification lacking one is refused",
        },
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_NOT_FOUND = {
    "404": problem("The tenant has no template of that name"),
    "422": problem("Not a template name: 1 to 100 letters, digits and . _ - (starting with a letter or digit)"),
}
OPENAPI_PATHS = {
    "/v1/templates": {
        "get": {
            "summary": "The tenant's own templates",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": TEMPLATE}},
                    },
                    "Every template of the tenant's, by name",
                ),
                **COMMON_ERRORS,
            },
        }
    },
    "/v1/templates/{name}": {
        "put": {
            "summary": "Store a template (Jinja, sandboxed), used by the tenant's notifications by name",
            "description": "A tenant's template overrides a built-in of the same name, for that tenant only.",
            "parameters": [NAME_PARAMETER],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["channel", "text"],
                    "additionalProperties": False,
                    "properties": {
                        "channel": {"type": "string", "enum": ["email", "sms", "push"]},
                        "subject": {**PART, "description": "required for email; the title of a push"},
                        "text": {"type": "string", "maxLength": MAX_SOURCE},
                        "html": {**PART, "description": "email only; autoescaped"},
                    },
                }
            ),
            "responses": {
                "200": _json(TEMPLATE, "Replaced"),
                "201": _json(TEMPLATE, "Created"),
                "413": problem("Body too large"),
                "415": problem("Not application/json"),
                "422": problem("Invalid fields, or a part that is not valid Jinja (with its line and column)"),
                **COMMON_ERRORS,
            },
        },
        "get": {
            "summary": "One of the tenant's templates",
            "parameters": [NAME_PARAMETER],
            "responses": {"200": _json(TEMPLATE, "The template"), **_NOT_FOUND, **COMMON_ERRORS},
        },
        "delete": {
            "summary": "Delete one of the tenant's templates (a built-in of its name applies again)",
            "parameters": [NAME_PARAMETER],
            "responses": {"204": {"description": "Deleted"}, **_NOT_FOUND, **COMMON_ERRORS},
        },
    },
    "/v1/templates/{name}/preview": {
        "post": {
            "summary": "Render the tenant's template (or the built-in of that name) with `data`",
            "parameters": [NAME_PARAMETER],
            "requestBody": json_request(
                {"type": "object", "additionalProperties": False, "properties": {"data": {"type": "object"}}}
            ),
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["subject", "text", "html"],
                        "properties": {"subject": PART, "text": {"type": "string"}, "html": PART},
                    },
                    "The rendered parts (null where the template has none)",
                ),
                **_NOT_FOUND,
                "413": problem("Body too large"),
                "415": problem("Not application/json"),
                "422": problem(
                    "Not a template name, a variable the template needs that `data` lacks (named), or a render "
                    "refused by the sandbox (an internal reached for, output too large, too slow)"
                ),
                **COMMON_ERRORS,
            },
        }
    },
}
