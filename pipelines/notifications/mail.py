"""Email over SMTP: a templated message with both alternatives, sent with aiosmtplib.

`SMTP_URL=file:///DIR` is a local sink instead (`conveyor up` uses one in its data
directory): each message is written to DIR as an .eml file, for `conveyor mail` to list.

The Message-ID is derived from our delivery key, so if a crash makes us send the same
delivery twice, the copies carry the same Message-ID and mail clients and filters can
tell they are one message.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx

from service.config import Settings
from service.errors import PermanentError, TransientError

from .channels import Delivery, require_channel
from .templates import Rendered, RenderedEmail, render_email

SMTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """`smtp://host:port` (STARTTLS when offered) or `smtps://user:pass@host` (TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise PermanentError(
                "SMTP_URL must be smtp://host:port or smtps://user:pass@host", type="channel_not_configured"
            )
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _address(value: str, role: str) -> Address:
    display, addr = parseaddr(value)
    try:
        if any(char in value for char in "\r\n") or not addr:
            raise ValueError("header injection or empty address")
        address = Address(display_name=display, addr_spec=addr)
        if not (address.username and address.domain):
            raise ValueError("no local part or domain")
    except (ValueError, IndexError, HeaderParseError):
        kind = "invalid_recipient" if role == "recipient" else "channel_not_configured"
        raise PermanentError(f"{value!r} is not a valid {role} email address", type=kind) from None
    return address


def message_id(delivery_key: str, sender_domain: str) -> str:
    """The same delivery key always gives the same Message-ID."""
    digest = hashlib.sha256(delivery_key.encode()).hexdigest()[:40]
    return f"<{digest}@{sender_domain}>"


def build_message(rendered: RenderedEmail, *, sender: str, to: str, delivery_key: str) -> EmailMessage:
    sender_address = _address(sender, "sender")
    message = EmailMessage()
    message["From"] = sender_address
    message["To"] = _address(to, "recipient")
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(delivery_key, sender_address.domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message


def _smtp_error(exc: aiosmtplib.SMTPException, server: SmtpServer) -> Exception:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        detail = "; ".join(f"{refusal.code} {refusal.message}" for refusal in exc.recipients)
        if all(500 <= code < 600 for code in codes):
            return PermanentError(f"the SMTP server refused the recipient: {detail}", type="invalid_recipient")
        return TransientError(f"the SMTP server deferred the recipient: {detail}", type="smtp_deferred")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentError(f"SMTP authentication failed: {exc.code} {exc.message}", type="channel_auth_failed")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600:
        return PermanentError(f"the SMTP server rejected the message: {exc.code} {exc.message}", type="smtp_rejected")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return TransientError(f"the SMTP server deferred the message: {exc.code} {exc.message}", type="smtp_deferred")
    return TransientError(f"cannot talk to SMTP server {server.hostname}:{server.port}: {exc}", type="smtp_unavailable")


async def send_message(
    message: EmailMessage,
    server: SmtpServer,
    *,
    tls_context: ssl.SSLContext | None = None,
    timeout: float = SMTP_TIMEOUT,
) -> None:
    """Hand one message to the server; 5xx → PermanentError, 4xx or no answer → TransientError."""
    try:
        await aiosmtplib.send(
            message,
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=False if server.implicit_tls else None,  # None: upgrade when offered
            tls_context=tls_context,
            timeout=timeout,
        )
    except aiosmtplib.SMTPException as exc:
        raise _smtp_error(exc, server) from None
    except OSError as exc:
        raise TransientError(
            f"cannot reach SMTP server {server.hostname}:{server.port}: {exc}", type="smtp_unavailable"
        ) from None


def deliver_to_sink(message: EmailMessage, directory: Path) -> Path:
    """Write `message` into the sink directory, named after its Message-ID, so a delivery
    repeated after a crash replaces its own copy; written whole, then renamed into place."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{message['Message-ID'].strip('<>').split('@')[0]}.eml"
    partial = path.with_suffix(".partial")
    partial.write_bytes(bytes(message))
    os.replace(partial, path)
    return path


async def send_email(
    settings: Settings,
    *,
    to: str,
    template: str,
    data: dict[str, Any],
    key: str,
    client: httpx.AsyncClient | None = None,
    rendered: Rendered | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> Delivery:
    """Render `template` with `data` (unless it comes `rendered`) and send it to `to`; `key`
    identifies this delivery. (`client` is the `Sender` protocol's HTTP client: SMTP has no use for it.)"""
    require_channel(settings, "email")
    assert settings.smtp_url  # require_channel checked it
    if not isinstance(rendered, RenderedEmail):
        rendered = render_email(template, data)
    message = build_message(rendered, sender=settings.smtp_from, to=to, delivery_key=key)
    if settings.smtp_url.startswith("file://"):
        await asyncio.to_thread(deliver_to_sink, message, Path(urlsplit(settings.smtp_url).path))
        return Delivery(channel="email", provider="sink", recipient=to, message_id=message["Message-ID"])
    await send_message(message, SmtpServer.from_url(settings.smtp_url), tls_context=tls_context)
    return Delivery(channel="email", provider="smtp", recipient=to, message_id=message["Message-ID"])
