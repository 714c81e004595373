"""A local endpoint speaking the ingest side of OTLP/HTTP traces and Sentry envelopes.

`POST /v1/traces` takes an `ExportTraceServiceRequest` (protobuf, as the OTLP/HTTP
exporter sends it); `POST /api/{project}/envelope/` takes a Sentry envelope (newline-
separated JSON: envelope header, then item header and payload pairs; gzip allowed).
"""

from __future__ import annotations

import gzip
import json
import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .served_app import Served, ServedApp


class TelemetryReceiver(Served):
    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.sentry_items: list[tuple[dict, dict]] = []  # (item header, payload)
        self.sentry_auth: list[str] = []
        self._lock = threading.Lock()
        self.served = ServedApp(
            Starlette(
                routes=[
                    Route("/v1/traces", self._traces, methods=["POST"]),
                    Route("/api/{project}/envelope/", self._envelope, methods=["POST"]),
                ]
            )
        )

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            for resource_spans in export.resource_spans:
                service = next(
                    (
                        attribute.value.string_value
                        for attribute in resource_spans.resource.attributes
                        if attribute.key == "service.name"
                    ),
                    None,
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "service": service,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "attributes": {attribute.key: attribute.value for attribute in span.attributes},
                            }
                        )
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def _envelope(self, request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.split(b"\n")
        with self._lock:
            self.sentry_auth.append(request.headers.get("x-sentry-auth", ""))
            index = 1  # lines[0] is the envelope header
            while index + 1 < len(lines) and lines[index]:
                header = json.loads(lines[index])
                self.sentry_items.append((header, json.loads(lines[index + 1])))
                index += 2
        return JSONResponse({"id": "0" * 32})

    def events(self) -> list[dict]:
        with self._lock:
            return [payload for header, payload in self.sentry_items if header.get("type") == "event"]
