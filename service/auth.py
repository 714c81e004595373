"""Bearer API keys: who is calling, as a tenant. Keys are looked up by their hash."""

from __future__ import annotations

import time

from starlette.requests import Request

from service.problems import Problem
from service.tenants import Tenant, hash_key, tenant_for_key

CACHE_SECONDS = 5.0
_cache: dict[bytes, tuple[float, Tenant]] = {}


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, type="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="conveyor"'})


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: Request) -> Tenant:
    """The calling tenant; a revoked key stops working within `CACHE_SECONDS`."""
    key = bearer_token(request)
    if key is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    digest = hash_key(key)
    cached = _cache.get(digest)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    async with request.app.state.db.read() as conn:
        tenant = await tenant_for_key(conn, key)
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (time.monotonic() + CACHE_SECONDS, tenant)
    request.state.tenant = tenant
    return tenant
