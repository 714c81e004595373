"""The third-party APIs the example apps' jobs call (examples/), on a real HTTP server:
a mail provider, a business-profile API, a push service, an applicant-tracking system
and a payments API, each under its own path, recording every request it is sent. The
payments API declines the customer `DECLINED`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .served_app import Served, ServedApp

DECLINED = "cus_declined"
POSTINGS = [{"id": 101, "title": "Backend engineer"}, {"id": 102, "title": "Product designer"}]


@dataclass(frozen=True)
class Sent:
    path: str
    body: dict
    idempotency_key: str | None


class ExampleProviders(Served):
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.served = ServedApp(
            Starlette(
                routes=[
                    Route("/mail/messages", self._accept, methods=["POST"]),
                    Route("/push/notifications", self._accept, methods=["POST"]),
                    Route("/payments/charges", self._charge, methods=["POST"]),
                    Route("/profiles/locations/{place_id}", self._location),
                    Route("/ats/boards/{board}/jobs", self._postings),
                ]
            )
        )

    def api(self, name: str) -> str:
        """The base URL of one of the APIs: `mail`, `push`, `payments`, `profiles`, `ats`."""
        return f"{self.url}/{name}"

    def received(self, path: str, idempotency_key: str | None = None) -> list[Sent]:
        """What was sent to `path` (with that Idempotency-Key, if one is given)."""
        return [sent for sent in self.sent if sent.path == path and idempotency_key in (None, sent.idempotency_key)]

    async def _accept(self, request: Request) -> JSONResponse:
        self.sent.append(Sent(request.url.path, await request.json(), request.headers.get("idempotency-key")))
        return JSONResponse({"id": f"{request.url.path.split('/')[1]}-{len(self.sent)}"})

    async def _charge(self, request: Request) -> JSONResponse:
        if (await request.json())["customer"] == DECLINED:
            return JSONResponse({"message": "Your card was declined."}, status_code=402)
        return await self._accept(request)

    async def _location(self, request: Request) -> JSONResponse:
        return JSONResponse({"name": request.path_params["place_id"], "rating": 4.6, "reviewCount": 128})

    async def _postings(self, request: Request) -> JSONResponse:
        return JSONResponse({"jobs": POSTINGS})
