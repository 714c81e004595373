"""What every HTTP provider client shares: timeouts, Retry-After, and transport failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import SecretStr

from conveyor.client.errors import retry_after_seconds as retry_after
from service import outbound
from service.errors import PermanentError, TransientError

PROVIDER_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def secret_value(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret else ""


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or an empty dict when there is none (a proxy's HTML page)."""
    try:
        return response.json()
    except ValueError:
        return {}


def unavailable(response: httpx.Response, provider: str, detail: str) -> TransientError:
    """A 429 or 5xx: worth retrying, as soon as the provider said."""
    throttled = response.status_code == 429
    return TransientError(
        f"{provider} {'throttled us' if throttled else 'is unavailable'} ({response.status_code}): {detail}",
        type="rate_limited" if throttled else "provider_unavailable",
        retry_after=retry_after(response),
    )


def auth_failed(response: httpx.Response, provider: str, detail: str) -> PermanentError:
    return PermanentError(
        f"{provider} refused our credentials ({response.status_code}): {detail}", type="channel_auth_failed"
    )


def refusal(
    response: httpx.Response, provider: str, detail: str, *, recipient: str | None = None, credentials: bool = False
) -> PermanentError | TransientError:
    """What a provider's answer other than success means, the same for every provider: a 429
    or 5xx is worth retrying; `recipient`, the provider's words for a recipient it refused, is
    the caller's mistake (even on a 403); 401, 403 or the provider's own credentials error
    (`credentials`) is our configuration; anything else refuses the message."""
    if response.status_code == 429 or response.status_code >= 500:
        return unavailable(response, provider, detail)
    if recipient is not None:
        return PermanentError(f"{recipient}: {detail}", type="invalid_recipient")
    if response.status_code in (401, 403) or credentials:
        return auth_failed(response, provider, detail)
    return PermanentError(
        f"{provider} refused the message ({response.status_code}): {detail}", type="destination_refused"
    )


@asynccontextmanager
async def provider_client(client: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    """The caller's pooled client, or a short-lived one closed afterwards."""
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, headers=outbound.HEADERS) as own:
        yield own


async def post(client: httpx.AsyncClient | None, provider: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST, turning timeouts and connection failures into TransientErrors."""
    try:
        async with provider_client(client) as http:
            return await http.post(url, **kwargs)
    except httpx.TimeoutException:
        raise TransientError(f"{provider} did not answer in time", type="provider_timeout") from None
    except httpx.TransportError as exc:
        raise TransientError(f"{provider} is unreachable: {exc}", type="provider_unavailable") from None
