"""Bearer API keys: who is calling, as a tenant and one of its keys, looked up by hash.

Each process caches lookups: a valid key for `CACHE_SECONDS` (a revoked key stops working
within that time), an invalid one for `INVALID_CACHE_SECONDS`, so repeating a bad key costs
no database round trip. No key can be cached as invalid before it exists: keys are 256
random bits made by `create_api_key` and first shown once stored, so nobody presents one
earlier (and a revoked key is never valid again).

Failed authentications are budgeted per client address, shared by every API process
(`AUTH_FAILURES_PER_MINUTE`): past the budget the address is answered 429 with
`Retry-After`, and until then this process refuses its keys without asking the database
(keys it has already cached as valid keep working).

With `admin`, a route also takes `ADMIN_KEY` itself, as the system tenant
(service/ledger/schedules.py `SYSTEM_TENANT`): the schedules' and jobs' routes, so an operator
sees and adjusts the built-in schedules and reads their jobs.

A key's `last_used_at` is stamped when a lookup reaches the database, beside the request
and never in its way (a primary that does not answer costs the stamp, not the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import time
import uuid
from dataclasses import dataclass

from cachetools import TLRUCache, TTLCache
from redis.exceptions import RedisError
from starlette.requests import Request

from service.api.problems import Problem
from service.databases.database import Database
from service.errors import DependencyUnavailable
from service.ledger import schedules
from service.ledger.tenants import Tenant, hash_key, key_owner, note_key_used
from service.ratelimit import Rate, TokenBucket

CACHE_SECONDS = 5.0
INVALID_CACHE_SECONDS = 30.0
CACHE_ENTRIES = 10_000
FAILURES_PREFIX = "conveyor:auth-failures:"


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    key_id: uuid.UUID


def bearer_token(request: Request) -> str | None:
    """The key of `Authorization: Bearer <key>`, however the scheme is cased or spaced."""
    parts = request.headers.get("authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1].strip()
    return None


def holds_admin_key(request: Request) -> bool:
    """Whether the bearer key is `ADMIN_KEY` (compared in constant time)."""
    admin_key = request.app.state.settings.admin_key
    token = bearer_token(request)
    if admin_key is None or token is None:
        return False
    return hmac.compare_digest(token.encode(), admin_key.get_secret_value().encode())


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, type="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="conveyor"'})


def _throttled(wait: float, per_minute: int) -> Problem:
    retry_after = str(max(1, math.ceil(wait)))
    return Problem(
        429,
        f"more than {per_minute} failed authentications a minute from this address; retry after {retry_after} s",
        type="rate-limited",
        headers={"Retry-After": retry_after},
    )


class KeyRing:
    """One per API process (`app.state.keys`): the caches and the failure budget."""

    def __init__(self, db: Database, failures: TokenBucket, failures_per_minute: int) -> None:
        self.db = db
        self.failures = failures
        self.failures_per_minute = failures_per_minute
        self._valid: TTLCache[bytes, Caller] = TTLCache(CACHE_ENTRIES, CACHE_SECONDS, timer=time.monotonic)
        self._invalid: TTLCache[bytes, bool] = TTLCache(CACHE_ENTRIES, INVALID_CACHE_SECONDS, timer=time.monotonic)
        self._blocked: TLRUCache[str, float] = TLRUCache(
            CACHE_ENTRIES, ttu=lambda _address, until, _now: until, timer=time.monotonic
        )
        self._stamps: set[asyncio.Task] = set()
        self._system: Tenant | None = None

    async def lookup(self, key: str, address: str) -> Caller | None:
        """The key's owner, or None: unknown, revoked, or its address is waiting out its failures."""
        digest = hash_key(key)
        if (caller := self._valid.get(digest)) is not None:
            return caller
        if digest in self._invalid or address in self._blocked:
            return None
        async with self.db.read() as conn:
            owner = await key_owner(conn, digest)
        if owner is None:
            self._invalid[digest] = True
            return None
        tenant, key_id = owner
        caller = self._valid[digest] = Caller(tenant, key_id)
        stamp = asyncio.create_task(self._note_use(key_id))
        self._stamps.add(stamp)
        stamp.add_done_callback(self._stamps.discard)
        return caller

    async def system_tenant(self) -> Tenant:
        """The system tenant, made if new (looked up once per process)."""
        if self._system is None:
            async with self.db.transaction() as conn:
                self._system = await schedules.system_tenant(conn)
        return self._system

    async def _note_use(self, key_id: uuid.UUID) -> None:
        with contextlib.suppress(DependencyUnavailable):
            async with self.db.transaction() as conn:
                await note_key_used(conn, key_id)

    async def refusal(self, address: str) -> Problem:
        """The answer to a failed authentication from `address`: 401, or 429 once over budget."""
        now = time.monotonic()
        if (until := self._blocked.get(address)) is not None:
            return _throttled(until - now, self.failures_per_minute)
        rate = Rate.per_minute(self.failures_per_minute, burst=self.failures_per_minute)
        try:
            taken = await self.failures.take(address, rate)
        except (RedisError, OSError):
            taken = None  # Redis away: the budget is not enforced, as for the API's rate limits
        if taken is not None and not taken.taken:
            self._blocked[address] = now + taken.wait
            return _throttled(taken.wait, self.failures_per_minute)
        return _unauthorized("invalid or revoked API key")


async def identify(request: Request) -> Caller | None:
    """The caller named by the request's bearer key, or None; looked up once per request."""
    state = request.state
    if not hasattr(state, "caller"):
        token = bearer_token(request)
        keys: KeyRing = request.app.state.keys
        state.caller = None if token is None else await keys.lookup(token, client_address(request))
    return state.caller


async def authenticate(request: Request, *, admin: bool = False) -> Tenant:
    """The calling tenant, or with `admin` the system tenant for `ADMIN_KEY`; a revoked key
    stops working within `CACHE_SECONDS`."""
    if admin and holds_admin_key(request):
        return await request.app.state.keys.system_tenant()
    if bearer_token(request) is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    caller = await identify(request)
    if caller is None:
        raise await request.app.state.keys.refusal(client_address(request))
    return caller.tenant
