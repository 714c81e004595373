"""The notification templates: what each one needs, and rendering it for every channel.

The registry (`TEMPLATES`) is the documentation of each template's `data`: the API calls
`validate` before accepting a request, so a missing field is a 422 at once rather than a
failed job later. Rendering goes through Jinja2 with `StrictUndefined` (a typo in a
template fails loudly) and autoescaping for `.html` files only, so hostile `data` cannot
inject markup into the HTML part while the plain-text part stays readable.

A tenant's own template (`service.templating.tenant_templates`) is rendered apart, in the sandbox
(`render_tenant`), and wins over a built-in of the same name for that tenant.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import jinja2

from service.errors import PermanentError
from service.templating.sandbox import renderer
from service.templating.tenant_templates import TenantTemplate

FieldKind = Literal["text", "url", "number", "items"]
MAX_TEXT_LENGTH = 2000
MAX_ITEMS = 100


@dataclass(frozen=True)
class Field:
    description: str
    _: KW_ONLY
    required: bool = True
    kind: FieldKind = "text"


def _optional(description: str, kind: FieldKind = "text") -> Field:
    return Field(description, required=False, kind=kind)


# Fields every template may use, so the sender can brand the message.
COMMON_FIELDS: dict[str, Field] = {
    "product_name": _optional("Name of the product or organisation sending the message"),
    "support_email": _optional("Where the recipient can ask for help"),
}


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    subject: str  # a Jinja expression over the same data, rendered as plain text
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def all_fields(self) -> dict[str, Field]:
        return {**COMMON_FIELDS, **self.fields}


_APPOINTMENT_FIELDS = {
    "name": Field("Recipient's name"),
    "starts_at": Field("When the appointment starts, already formatted for the reader"),
    "location": _optional("Address or meeting link"),
    "provider": _optional("Who the appointment is with"),
    "manage_url": _optional("Where to reschedule or cancel", "url"),
}

TEMPLATES: dict[str, Template] = {
    template.name: template
    for template in (
        Template(
            "welcome",
            "Greets a new user after sign-up.",
            "Welcome{% if product_name %} to {{ product_name }}{% endif %}, {{ name }}",
            {"name": Field("Recipient's name"), "login_url": _optional("Where to sign in", "url")},
        ),
        Template(
            "password_reset",
            "Carries a single-use password reset link.",
            "Reset your{% if product_name %} {{ product_name }}{% endif %} password",
            {
                "name": Field("Recipient's name"),
                "reset_url": Field("The single-use reset link", kind="url"),
                "expires_in_minutes": _optional("How long the link stays valid", "number"),
            },
        ),
        Template(
            "payment_receipt",
            "Confirms a payment with its amount and reference.",
            "Receipt {{ receipt_number }}: {{ amount }} {{ currency }}",
            {
                "name": Field("Recipient's name"),
                "amount": Field("Total paid, formatted (e.g. 49.00)"),
                "currency": Field("Currency code (e.g. EUR)"),
                "receipt_number": Field("Receipt or invoice reference"),
                "paid_at": _optional("When the payment was made"),
                "description": _optional("What the payment was for"),
                "payment_method": _optional("How it was paid (e.g. Visa ending 4242)"),
                "items": _optional("Line items: a list of {description, amount}", "items"),
                "receipt_url": _optional("Where to view or download the receipt", "url"),
            },
        ),
        Template(
            "job_application",
            "Tells an applicant their application was received.",
            "We received your application for {{ job_title }}",
            {
                "name": Field("Applicant's name"),
                "job_title": Field("The position applied for"),
                "company": _optional("The hiring company"),
                "reference": _optional("Application reference number"),
                "next_steps": _optional("What happens next"),
                "application_url": _optional("Where to follow the application", "url"),
            },
        ),
        Template(
            "appointment_confirmation",
            "Confirms a booked appointment.",
            "Appointment confirmed: {{ starts_at }}",
            _APPOINTMENT_FIELDS,
        ),
        Template(
            "appointment_reminder",
            "Reminds of an upcoming appointment.",
            "Reminder: your appointment on {{ starts_at }}",
            _APPOINTMENT_FIELDS,
        ),
        Template(
            "membership_expiry",
            "Warns that a membership is about to expire.",
            "Your{% if plan %} {{ plan }}{% endif %} membership expires on {{ expires_on }}",
            {
                "name": Field("Recipient's name"),
                "expires_on": Field("Expiry date, already formatted for the reader"),
                "plan": _optional("Membership plan name"),
                "renew_url": _optional("Where to renew", "url"),
            },
        ),
    )
}

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("pipelines.notifications", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None  # None: plain text only


@dataclass(frozen=True)
class RenderedShort:
    """The same message for SMS and push: a title and one short paragraph."""

    title: str
    body: str


Rendered = RenderedEmail | RenderedShort


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, type="invalid_template_data")


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise PermanentError(f"unknown template {name!r}; known: {known}", type="unknown_template") from None


def _check_value(name: str, spec: Field, value: Any) -> None:
    if spec.kind == "items":
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise _invalid(f"{name!r} must be a list of at most {MAX_ITEMS} items")
        for item in value:
            if not isinstance(item, dict) or set(item) != {"description", "amount"}:
                raise _invalid(f"each item of {name!r} must be an object with description and amount")
            for key, part in item.items():
                _check_value(f"{name}.{key}", Field(""), part)
        return
    if spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(f"{name!r} must be a number")
        return
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _invalid(f"{name!r} must be a string or a number")
    text = str(value)
    if len(text) > MAX_TEXT_LENGTH:
        raise _invalid(f"{name!r} is longer than {MAX_TEXT_LENGTH} characters")
    if spec.kind == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid(f"{name!r} must be an http(s) URL")


def validate(template: str, data: Any) -> dict[str, Any]:
    """Check `data` against the template's fields; return them, absent optionals as None.
    Keys the template does not use are left out (one context may serve several templates).

    Raises PermanentError `unknown_template` or `invalid_template_data` (the API's 422).
    """
    spec = get_template(template)
    if not isinstance(data, dict):
        raise _invalid("data must be a JSON object")
    fields = spec.all_fields
    missing = [name for name, f in fields.items() if f.required and data.get(name) in (None, "")]
    if missing:
        raise _invalid(f"template {template!r} needs {', '.join(map(repr, missing))}")
    for name, spec_field in fields.items():
        if data.get(name) is not None:
            _check_value(name, spec_field, data[name])
    return {name: data.get(name) for name in fields}


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _paragraphs(text: str) -> str:
    """Plain text with at most one blank line between paragraphs, whatever the tags left."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _prepare(template: str, data: Any) -> tuple[dict[str, Any], str]:
    """The validated context and the rendered one-line subject."""
    context = validate(template, data)
    return context, _one_line(_environment.from_string(TEMPLATES[template].subject).render(context))


def render_email(template: str, data: Any) -> RenderedEmail:
    context, subject = _prepare(template, data)
    return RenderedEmail(
        subject=subject,
        text=_paragraphs(_environment.get_template(f"{template}.txt").render(context)),
        html=_environment.get_template(f"{template}.html").render(context),
    )


def render_short(template: str, data: Any) -> RenderedShort:
    context, title = _prepare(template, data)
    return RenderedShort(
        title=title, body=_one_line(_environment.get_template(f"{template}.short.txt").render(context))
    )


async def render_tenant(template: TenantTemplate, data: dict[str, Any]) -> Rendered:
    """A tenant's own template rendered in the sandbox: an email, or an SMS or push message
    (its subject the push title)."""
    parts = await renderer().render(template.source, data)
    if template.channel == "email":
        return RenderedEmail(subject=parts.get("subject", ""), text=parts["text"], html=parts.get("html"))
    return RenderedShort(title=parts.get("subject", ""), body=parts["text"].strip())
