"""What the fake Twilio, FCM and OneSignal servers share: a real HTTP server, a record of
what was accepted, idempotency replays, and faults injected on demand."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from .served_app import Served, ServedApp


@dataclass
class Fault:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeProvider(Served):
    def __init__(self, routes: list[Route]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.requests = 0  # authenticated requests seen, served or faulted
        self._faults: deque[Fault] = deque()
        self._replies: dict[str, JSONResponse] = {}
        self.served = ServedApp(Starlette(routes=routes))

    def inject(self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next `times` authenticated requests answer this instead of being served."""
        for _ in range(times):
            self._faults.append(Fault(status, body, headers or {}))

    def take_fault(self) -> JSONResponse | None:
        self.requests += 1
        try:
            fault = self._faults.popleft()
        except IndexError:
            return None
        return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)

    def replay_or_record(self, key: str | None, message: dict[str, Any], reply: JSONResponse) -> JSONResponse:
        """Honour an idempotency key: the first request with it is recorded, later ones get
        the same answer and record nothing. (Handlers run on one event loop and this
        does not await, so two concurrent requests cannot both record.)"""
        if key and key in self._replies:
            return self._replies[key]
        self.messages.append(message)
        if key:
            self._replies[key] = reply
        return reply
