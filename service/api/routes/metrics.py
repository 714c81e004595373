"""GET /metrics: Prometheus text format, counted metrics plus queue state read at scrape."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from service.telemetry.metrics import exposition


async def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(await exposition(state.redis, state.settings), media_type=CONTENT_TYPE_LATEST)


OPENAPI_PATHS = {
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "security": [],
            "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }
    },
}
