"""Standard Webhooks: secrets, signatures, verification, sending, and the retry schedule.

The receiver checks `webhook-signature` (HMAC-SHA256 over "{id}.{timestamp}.{body}") with
its copy of the secret; during a rotation we sign with every live secret, space-separated,
so receivers holding either one accept. `webhook-id` stays the same across retries (the
receiver's deduplication key); the timestamp and signature are fresh on every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import secrets as random_source
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from service.errors import PermanentError, TransientError

from .provider_http import retry_after
from .ssrf import guarded_client

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between our timestamp and its clock
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.1  # ± this fraction of each delay, so retries of many deliveries spread out


def generate_secret(nbytes: int = 32) -> str:
    """A new signing secret, `whsec_` + base64 of `nbytes` random bytes (24–64 per the spec)."""
    if not 24 <= nbytes <= 64:
        raise ValueError("Standard Webhooks secrets are 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(nbytes)).decode()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise PermanentError("the webhook secret is not whsec_ + base64", type="invalid_secret") from None


def _signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def sign(secrets: str | Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise PermanentError("no webhook secret to sign with", type="invalid_secret")
    return " ".join(_signature(secret, webhook_id, timestamp, body) for secret in keys)


def signed_headers(
    secrets: str | Sequence[str], webhook_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


class InvalidSignature(PermanentError):
    type = "invalid_signature"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """What a receiver does: raise InvalidSignature unless one signature matches in time.

    `headers` must look names up case-insensitively (Starlette's, httpx's and Django's do;
    for a plain dict, pass lower-case names).
    """
    webhook_id, timestamp, signatures = (
        headers.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (webhook_id and timestamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a Unix time") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise InvalidSignature("webhook-timestamp is outside the tolerance window")
    expected = _signature(secret, webhook_id, sent_at, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise InvalidSignature("no signature matches")


def event_body(event_type: str, data: Mapping[str, Any], timestamp: datetime) -> bytes:
    """The JSON a webhook carries: `{"type", "timestamp", "data"}`, compact and stable."""
    payload = {"type": event_type, "timestamp": timestamp.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def next_retry_delay(
    attempt: int, schedule: Sequence[float | str] = DEFAULT_SCHEDULE, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1-based), or None: give up.

    The first delivery is immediate; failure 1 waits schedule[0], failure 2 schedule[1], …
    """
    if attempt < 1 or attempt > len(schedule):
        return None
    delay = float(schedule[attempt - 1])
    return max(0.0, delay * (1 + (rng or random).uniform(-JITTER, JITTER)))


async def send_webhook(
    url: str,
    body: bytes,
    *,
    webhook_id: str,
    secrets: str | Sequence[str],
    allowed_hosts: Iterable[str] = (),
    timeout: float = 15.0,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Deliver one signed POST; return the 2xx status, or raise.

    410 → PermanentError `endpoint_gone` (stop retrying); 429 → TransientError
    `rate_limited`; any other non-2xx (3xx included: redirects are never followed),
    a timeout or a refused connection → TransientError `delivery_failed`; a forbidden
    destination → PermanentError `destination_refused`. `client` must come from
    `ssrf.guarded_client` (one is made when it is None).
    """
    headers = signed_headers(secrets, webhook_id, body)
    own = client is None
    http = client or guarded_client(allowed_hosts, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            # Streamed and never read: the receiver's body is not ours to buffer.
            async with http.stream("POST", url, content=body, headers=headers, follow_redirects=False) as response:
                status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        raise TransientError(f"{url} did not answer within {timeout}s", type="delivery_failed") from None
    except httpx.TransportError as exc:
        raise TransientError(f"cannot reach {url}: {exc}", type="delivery_failed") from None
    finally:
        if own:
            await http.aclose()
    if 200 <= status < 300:
        return status
    if status == 410:
        raise PermanentError(f"{url} answered 410 Gone: the endpoint is disabled", type="endpoint_gone")
    if status == 429:
        raise TransientError(
            f"{url} asked us to slow down (429)", type="rate_limited", retry_after=retry_after(response)
        )
    if 300 <= status < 400:
        where = response.headers.get("location", "elsewhere")
        raise TransientError(
            f"{url} redirected ({status}) to {where}; redirects are not followed", type="delivery_failed"
        )
    raise TransientError(f"{url} answered {status}", type="delivery_failed", retry_after=retry_after(response))
