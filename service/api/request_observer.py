"""The HTTP side of observability: `RequestObserver` wraps the API with a server span per
request (continuing the caller's `traceparent`) and the request counters and latency,
labelled by route template."""

from __future__ import annotations

import time

from opentelemetry import trace
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.telemetry import metrics, tracing


def _route(scope: Scope) -> str:
    """The matched route's template, with the prefix of any mount it sits in."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    root = scope.get("root_path", "")
    return root if isinstance(route, Mount) else root + route.path  # a mount's path is in root_path already


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"traceparent", b"").decode("latin-1") or None
        method = scope["method"]
        started = time.perf_counter()
        code = 500

        async def observed_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                metrics.http_request(method, _route(scope), code, time.perf_counter() - started)
            await send(message)

        with tracing.span(
            method,
            parent=incoming,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                route = _route(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", code)
