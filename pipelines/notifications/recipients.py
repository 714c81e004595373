"""What a recipient looks like on each channel, checked before a notification is accepted.

The senders check again when they send; this is the early answer, so a typo in one of a
thousand addresses is a 422 naming it rather than one failed delivery among many.
"""

from __future__ import annotations

from collections.abc import Callable

from service.errors import PermanentError

from .mail import _address
from .sms import E164
from .ssrf import validate_url

# The delivery log's unique key includes the recipient; PostgreSQL's btree entries must
# stay well under 2,700 bytes.
MAX_RECIPIENT_BYTES = 2048


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, type="invalid_recipient")


def _email(value: str) -> None:
    _address(value, "recipient")


def _phone(value: str) -> None:
    if not E164.match(value):
        raise _invalid(f"{value!r} is not an E.164 phone number (+ and 7-15 digits)")


def _device(value: str) -> None:
    if not value.isprintable() or any(char.isspace() for char in value):
        raise _invalid("a push recipient is a device token or subscription id, without spaces")


def _url(value: str) -> None:
    validate_url(value, max_length=MAX_RECIPIENT_BYTES)


CHECKS: dict[str, Callable[[str], None]] = {"email": _email, "sms": _phone, "push": _device, "webhook": _url}


def check_recipient(channel: str, value: object) -> str:
    """`value` if it is a well-formed recipient for `channel`; PermanentError otherwise."""
    if not isinstance(value, str) or not value:
        raise _invalid("each recipient must be a non-empty string")
    if len(value.encode()) > MAX_RECIPIENT_BYTES:
        raise _invalid(f"a recipient is longer than {MAX_RECIPIENT_BYTES} bytes")
    CHECKS[channel](value)
    return value
