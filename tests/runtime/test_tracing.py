"""One trace follows an event across consume -> outbox -> relay -> consume, and the relay's
Kafka transaction is one span that links to each record it published."""

from __future__ import annotations

import uuid
from functools import partial

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.runtime import RuntimeSettings, Service
from services.runtime.telemetry import current_trace_headers
from tests.kit import NewTopic, drop_schema, produce, wait_for
from tests.runtime.support import (
    MIGRATIONS,
    Ping,
    Pong,
    counting_handler,
    ping_record,
    ping_topic,
)
from tests.runtime.test_consumer import count_applied


async def test_trace_survives_the_outbox(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    first, second = await new_topic("trace-in"), await new_topic("trace-out")
    downstream_schema = f"{schema}_down"
    exporter = InMemorySpanExporter()
    up = settings.model_copy(
        update={"service_name": f"test-trace-up-{uuid.uuid4().hex[:6]}", "db_schema": schema}
    )
    down = settings.model_copy(
        update={
            "service_name": f"test-trace-down-{uuid.uuid4().hex[:6]}",
            "db_schema": downstream_schema,
        }
    )
    upstream = Service(up, migrations=[MIGRATIONS], span_exporter=exporter)
    upstream.consume(ping_topic(first), {Ping: counting_handler(forward_to=second)}, ignore=[Pong])
    downstream = Service(down, migrations=[MIGRATIONS], span_exporter=exporter)
    downstream.consume(ping_topic(second), {Ping: counting_handler()}, ignore=[Pong])
    await upstream.start()
    await downstream.start()
    try:
        lab = TracerProvider()
        lab.add_span_processor(SimpleSpanProcessor(exporter))
        with lab.get_tracer("lab").start_as_current_span("lab submits") as root:
            headers = [(k, v.encode()) for k, v in current_trace_headers().items()]
            await produce(settings, first, [("s1", ping_record("s1", 0))], headers=headers)
        await wait_for(
            partial(count_applied, settings.database_url, downstream_schema, 1),
            what="event applied downstream",
        )
    finally:
        await upstream.stop()
        await downstream.stop()
        await drop_schema(settings, downstream_schema)

    trace_id = root.get_span_context().trace_id
    finished = exporter.get_finished_spans()
    spans = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in spans}

    def destination(span: ReadableSpan) -> object:
        attributes = span.attributes or {}
        # FastStream names the consumed topic "messaging.destination_publish.name".
        return attributes.get("messaging.destination.name") or attributes.get(
            "messaging.destination_publish.name"
        )

    consumed_first = [s for s in spans if s.kind == SpanKind.CONSUMER and destination(s) == first]
    consumed_second = [s for s in spans if s.kind == SpanKind.CONSUMER and destination(s) == second]
    assert consumed_first, f"no consume span for {first} in the trace: {[s.name for s in spans]}"
    assert consumed_second, "the downstream consume span is not in the trace"

    def ancestors(span_id: int) -> set[int]:
        seen: set[int] = set()
        span = by_id.get(span_id)
        while span is not None and span.parent is not None:
            seen.add(span.parent.span_id)
            span = by_id.get(span.parent.span_id)
        return seen

    # The chain is causal, not just the same trace id: the downstream consume span is
    # a child of the span that wrote the outbox row (the record carries its context).
    parent = consumed_second[0].parent
    assert parent is not None and parent.span_id in by_id
    assert ancestors(consumed_second[0].context.span_id) & {
        s.context.span_id for s in consumed_first
    }
    # The relay's transaction: a root span of its own that links to that same span.
    (relayed,) = [
        s
        for s in finished
        if s.kind == SpanKind.PRODUCER and any(link.context == parent for link in s.links)
    ]
    assert relayed.parent is None and relayed.context.trace_id != trace_id
    assert destination(relayed) == second
    assert relayed.resource.attributes["service.name"] == up.service_name
    (link,) = [link for link in relayed.links if link.context == parent]
    assert (link.attributes or {})["messaging.destination.name"] == second
    assert (relayed.attributes or {})["messaging.batch.message_count"] == len(relayed.links)
    assert any(s.resource.attributes["service.name"] == down.service_name for s in consumed_second)
