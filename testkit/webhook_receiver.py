"""A webhook endpoint on a real HTTP server: verifies Standard Webhooks signatures and
answers with scripted replies (500 then 200, 410, a redirect, a slow answer)."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipelines.notifications.webhooks import verify
from service.errors import PermanentError

from .served_app import Served, ServedApp
from .tls import Certificate


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str | None


class WebhookReceiver(Served):
    def __init__(self, secret: str, *, host: str = "127.0.0.1", certificate: Certificate | None = None) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        app = Starlette(routes=[Route("/{path:path}", self.receive, methods=["POST", "GET"])])
        self.served = ServedApp(
            app,
            host=host,
            ssl_certfile=certificate.certfile if certificate else None,
            ssl_keyfile=certificate.keyfile if certificate else None,
        )

    def script(self, path: str, *replies: Reply) -> None:
        """The next requests to `/path` get these replies in order, then 200."""
        self._scripts["/" + path.lstrip("/")].extend(replies)

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == "/" + path.lstrip("/")]

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            verify(self.secret, request.headers, body)
            verified, problem = True, None
        except PermanentError as exc:
            verified, problem = False, exc.message
        self.received.append(Received(request.url.path, dict(request.headers), body, verified, problem))
        script = self._scripts[request.url.path]
        reply = script.popleft() if script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if not verified:
            return Response(problem, status_code=401)
        return Response(status_code=reply.status, headers=reply.headers)
