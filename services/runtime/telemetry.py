"""OpenTelemetry setup and W3C trace-context helpers.

One tracer provider per process with ``service.name``; the consumer starts a span
per record (a child of the context in its headers) and asyncpg is instrumented. The
outbox stores the producing span's traceparent and the relay puts it on the record,
so the next service continues the same trace, later, from another process; the
relay's Kafka transaction is one span linking each record's (``FollowLinks``
samples it with them).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk import util
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from services.runtime.settings import RuntimeSettings

_instrumented = False


def _text(value: object) -> str:
    """A bytes attribute (FastStream records the Kafka key as bytes) is not JSON:
    it is written as text rather than losing the span."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class JsonLinesExporter(SpanExporter):
    """Finished spans as JSON lines, in the SDK's ``ReadableSpan.to_json`` layout
    (services/console/waterfall.py and the tests read it), written once per batch.

    The SDK's own formatter encodes, decodes and re-encodes the process's resource
    for every span, and a line-buffered file makes one write per span: here the
    resource is encoded once per provider and a batch is one write.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._resources: dict[int, tuple[Resource, str]] = {}

    def _resource(self, resource: Resource) -> str:
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            cached = (resource, resource.to_json(indent=None))
            self._resources[id(resource)] = cached
        return cached[1]

    def line(self, span: ReadableSpan) -> str:
        context, parent, status = span.context, span.parent, span.status
        body: dict[str, Any] = {
            "name": span.name,
            "context": {
                "trace_id": f"0x{context.trace_id:032x}",
                "span_id": f"0x{context.span_id:016x}",
                "trace_state": repr(context.trace_state),
            }
            if context
            else None,
            "kind": str(span.kind),
            "parent_id": f"0x{parent.span_id:016x}" if parent is not None else None,
            "start_time": util.ns_to_iso_str(span.start_time) if span.start_time else None,
            "end_time": util.ns_to_iso_str(span.end_time) if span.end_time else None,
            "status": {"status_code": status.status_code.name}
            | ({"description": status.description} if status.description else {}),
            "attributes": dict(span.attributes or {}),
            "events": [
                {
                    "name": event.name,
                    "timestamp": util.ns_to_iso_str(event.timestamp),
                    "attributes": dict(event.attributes or {}),
                }
                for event in span.events
            ],
            "links": [
                {
                    "context": {
                        "trace_id": f"0x{link.context.trace_id:032x}",
                        "span_id": f"0x{link.context.span_id:016x}",
                        "trace_state": repr(link.context.trace_state),
                    },
                    "attributes": dict(link.attributes or {}),
                }
                for link in span.links
            ],
        }
        text = json.dumps(body, default=_text)
        return f'{text[:-1]}, "resource": {self._resource(span.resource)}}}\n'

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._out.write("".join(self.line(span) for span in spans))
        self._out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()


class FollowLinks(Sampler):
    """A root span that links to other traces (the relay's Kafka transaction, linked to
    each record's) is sampled when any span it links to was, so a sampled submission's
    trace keeps its publish; other roots are ``root``'s to decide."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not links:
            return self._root.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        if any(link.context.trace_flags.sampled for link in links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return f"FollowLinks{{{self._root.get_description()}}}"


def build_tracer_provider(
    settings: RuntimeSettings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider for this service; ``exporter`` overrides the settings (tests)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(FollowLinks(TraceIdRatioBased(settings.otel_sample_ratio))),
        # A relay transaction's span links every record it publishes (the SDK keeps 128).
        span_limits=SpanLimits(max_links=max(128, settings.relay_batch_size)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif settings.otel_exporter in ("jsonl", "console"):
        out: TextIO = sys.stdout
        if settings.otel_exporter == "jsonl":
            settings.otel_file.parent.mkdir(parents=True, exist_ok=True)
            out = settings.otel_file.open("a")
        provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(out)))
    return provider


def instrument_asyncpg(provider: TracerProvider) -> None:
    """asyncpg spans (one per query) under the current trace; once per process."""
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _instrumented = True


def current_trace_headers() -> dict[str, str]:
    """traceparent (and tracestate) of the current span, W3C format."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_trace(headers: Mapping[str, str | None]) -> otel_context.Context:
    """The trace context a stored or received carrier names (empty values ignored)."""
    return propagate.extract({k: v for k, v in headers.items() if v})


def stored_span_context(traceparent: str | None, tracestate: str | None) -> SpanContext | None:
    """The span a stored carrier (an outbox row's) names, or None if it names none."""
    context = trace.get_current_span(
        extract_trace({"traceparent": traceparent, "tracestate": tracestate})
    ).get_span_context()
    return context if context.is_valid else None


def attach_trace(headers: Mapping[str, str | None]) -> object:
    """Make the trace in ``headers`` current; returns a token for ``detach_trace``."""
    return otel_context.attach(extract_trace(headers))


def detach_trace(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


@contextmanager
def continue_trace(
    traceparent: str | None, tracestate: str | None = None
) -> Iterator[Callable[[], dict[str, str]]]:
    """Make the trace named by a stored carrier (an outbox row, a timer, a job)
    current for the block; yields ``current_trace_headers`` for its callers."""
    token = attach_trace({"traceparent": traceparent, "tracestate": tracestate})
    try:
        yield current_trace_headers
    finally:
        detach_trace(token)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the trace and span ids of the current span."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key in ("service", "topic", "partition", "offset", "event_id", "event_type"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: RuntimeSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
