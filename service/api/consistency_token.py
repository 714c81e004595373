"""The HTTP side of read-your-writes: the `Conveyor-Consistency` token a response that
wrote carries, and the one a client sends back (service/databases/consistency.py keeps the LSNs)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import Problem
from service.databases.consistency import HEADER, format_lsn, parse_lsn, writes_recorded


def requested_lsn(request: Request) -> int | None:
    """The consistency token the client sent back, if any."""
    token = request.headers.get(HEADER)
    if token is None:
        return None
    try:
        return parse_lsn(token)
    except ValueError:
        raise Problem(
            400, f"{HEADER} must be a token this API returned, like 0/16B3748", type="bad-consistency-token"
        ) from None


class ConsistencyMiddleware:
    """Puts `Conveyor-Consistency` on the response of every request that wrote."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with writes_recorded() as writes:

            async def send_with_token(message: Message) -> None:
                if message["type"] == "http.response.start" and writes:
                    MutableHeaders(scope=message).append(HEADER, format_lsn(max(writes)))
                await send(message)

            await self.app(scope, receive, send_with_token)
