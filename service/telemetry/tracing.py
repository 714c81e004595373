"""OpenTelemetry spans from the HTTP request through the enqueue to each stage in a worker.

Off by default (`OTEL_EXPORTER=none`: a no-op tracer, nothing recorded or sent).
`console` writes finished spans to stderr; `otlp` sends them over OTLP/HTTP, configured
by the standard `OTEL_EXPORTER_OTLP_*` variables. The trace crosses processes inside
the job: the ledger keeps the W3C `traceparent` of the request that created it, and the
worker's attempt continues that trace.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.config import Settings

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()
_users = 0


def _exporter(settings: Settings) -> SpanExporter | None:
    if settings.otel_exporter == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def configure(settings: Settings, service: str, exporter: SpanExporter | None = None) -> None:
    """Start tracing for this process as `service` ("conveyor-api", "conveyor-worker").

    One provider per process, outside OpenTelemetry's global one: when the API and
    workers share a process (`conveyor up`) the first to start sets it up, and it stops
    with the last `shutdown`.
    """
    global _provider, _tracer, _users
    _users += 1
    if _provider is not None:
        return
    exporter = exporter or _exporter(settings)
    if exporter is None:
        return
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer("conveyor")


def shutdown() -> None:
    """Flush and stop once the last user is done: spans still buffered are exported first."""
    global _provider, _tracer, _users
    _users = max(_users - 1, 0)
    if _provider is None:
        return
    if _users == 0:
        _provider.shutdown()
        _provider, _tracer = None, trace.NoOpTracer()
    else:
        _provider.force_flush()  # another user (or one that died without saying so) remains


def tracer() -> trace.Tracer:
    return _tracer


def enabled() -> bool:
    return _provider is not None


def extract(traceparent: str | None) -> Context | None:
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def traceparent_for_job(incoming: str | None) -> str | None:
    """What the ledger keeps for a new job: the current span when tracing (so the worker's
    spans join this request's trace), else whatever the caller sent."""
    return (current_traceparent() if enabled() else None) or incoming


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: dict[str, str | int | float] | None = None,
) -> Iterator[trace.Span]:
    """A span around a block, as a child of the current span or of `parent` (a traceparent)."""
    with _tracer.start_as_current_span(name, context=extract(parent), kind=kind, attributes=attributes) as current:
        yield current


def trace_id() -> str | None:
    """The current trace id in hex, for logs; None when not tracing."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
