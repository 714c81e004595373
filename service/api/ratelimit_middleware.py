"""The API's per-key rate limits with the IETF RateLimit headers, on `service.ratelimit`'s buckets.

Each API key (by its id, however the `Authorization` header spells it; clients without a
valid key by address) has a token bucket of `RATE_LIMIT_PER_MINUTE` requests refilled
continuously. Every answer carries `RateLimit-Policy` and `RateLimit`; past the limit the
answer is 429 with `Retry-After`.
If Redis is unreachable the limit is not enforced: availability over strictness.
"""

from __future__ import annotations

import math

from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import auth
from service.api.problems import Problem, problem_response
from service.errors import DependencyUnavailable
from service.ratelimit import Rate

BUCKET_PREFIX = "conveyor:api-rate:"  # the buckets: `app.state.rate_limits`, one `TokenBucket` per process
UNLIMITED_PATHS = frozenset({"/livez", "/readyz", "/metrics", "/openapi.json"})
WINDOW_SECONDS = 60


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = request.app.state
        per_minute = state.settings.rate_limit_per_minute
        rate = Rate.per_minute(per_minute, burst=per_minute)
        try:
            taken = await state.rate_limits.take(await _client_key(request), rate)
        except (RedisError, OSError):
            await self.app(scope, receive, send)
            return
        reset = math.ceil((rate.burst - taken.remaining) / rate.per_second)
        headers = {
            "RateLimit-Policy": f'"default";q={per_minute};w={WINDOW_SECONDS}',
            "RateLimit": f'"default";r={taken.remaining};t={reset}',
        }
        if not taken.taken:
            retry_after = str(max(1, math.ceil(taken.wait)))
            problem = Problem(
                429,
                f"more than {per_minute} requests a minute; retry after {retry_after} s",
                type="rate-limited",
                headers={**headers, "Retry-After": retry_after},
            )
            await problem_response(request, problem)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _client_key(request: Request) -> str:
    try:
        caller = await auth.identify(request)
    except DependencyUnavailable:  # the route's own authentication answers 503
        caller = None
    return f"key:{caller.key_id}" if caller else "addr:" + auth.client_address(request)
