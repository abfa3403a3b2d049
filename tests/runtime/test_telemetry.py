"""Local trace files and JSON logs carry the service name and the trace ids."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags

from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import (
    JsonLogFormatter,
    build_tracer_provider,
    stored_span_context,
)


def test_jsonl_exporter_and_json_logs_share_the_trace_id(tmp_path: Path) -> None:
    settings = RuntimeSettings(
        service_name="intake", otel_exporter="jsonl", otel_file=tmp_path / "traces.jsonl"
    )
    provider = build_tracer_provider(settings)
    record = logging.LogRecord("intake", logging.INFO, __file__, 1, "accepted %s", ("s1",), None)
    with provider.get_tracer("test").start_as_current_span("decide") as span:
        line = json.loads(JsonLogFormatter().format(record))
    provider.shutdown()

    spans = [json.loads(text) for text in settings.otel_file.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["decide"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "intake"
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert spans[0]["context"]["trace_id"] == f"0x{trace_id}"
    assert line["trace_id"] == trace_id
    assert line["message"] == "accepted s1"


def test_a_bytes_attribute_does_not_lose_the_span(tmp_path: Path) -> None:
    settings = RuntimeSettings(otel_exporter="jsonl", otel_file=tmp_path / "traces.jsonl")
    provider = build_tracer_provider(settings)
    with provider.get_tracer("test").start_as_current_span("publish") as span:
        span.set_attribute("messaging.kafka.message.key", b"submission-1")
    provider.shutdown()
    (written,) = [json.loads(t) for t in settings.otel_file.read_text().splitlines()]
    assert written["attributes"]["messaging.kafka.message.key"] == "submission-1"


def test_the_jsonl_exporter_writes_the_sdks_json_layout_of_each_span(tmp_path: Path) -> None:
    # The console's waterfall and the system tests read the SDK's ReadableSpan.to_json;
    # the exporter writes it without re-encoding the resource for every span.
    settings = RuntimeSettings(
        service_name="risk", otel_exporter="jsonl", otel_file=tmp_path / "traces.jsonl"
    )
    provider = build_tracer_provider(settings)
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("parent") as parent,
        tracer.start_as_current_span(
            "child",
            links=[Link(parent.get_span_context(), {"why": "batch"})],
            attributes={"n": 3, "tags": ("a", "b"), "ok": True},
        ) as child,
    ):
        child.add_event("claimed", {"offset": 7})
        child.set_status(Status(StatusCode.ERROR, "it failed"))
    provider.shutdown()
    finished = [child, parent]
    written = [json.loads(t) for t in settings.otel_file.read_text().splitlines()]
    assert written == [json.loads(span.to_json(indent=None)) for span in finished]  # type: ignore[attr-defined]


def test_otel_exporter_none_from_the_environment_is_the_choice_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "none" also means None for optional settings (FR_HTTP_PORT=none); not here.
    monkeypatch.setenv("FR_OTEL_EXPORTER", "none")
    monkeypatch.setenv("FR_HTTP_PORT", "none")
    settings = RuntimeSettings()
    assert (settings.otel_exporter, settings.http_port) == ("none", None)


def _context(sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(random.getrandbits(128), random.getrandbits(64), True, flags)


def test_a_root_span_linking_to_traces_is_sampled_with_them_and_keeps_a_batchs_links() -> None:
    """The relay's transaction span is a root linked to each record's trace: it is kept
    when a record's trace is (whatever the root ratio), dropped when none is, and keeps
    a link for every record of a full batch (the SDK's default keeps 128)."""
    exporter = InMemorySpanExporter()
    settings = RuntimeSettings(otel_sample_ratio=0.0, relay_batch_size=500)
    tracer = build_tracer_provider(settings, exporter).get_tracer("test")
    no_parent = otel_context.Context()
    tracer.start_span("unlinked root", context=no_parent).end()  # ratio 0: dropped
    dropped = [Link(_context(sampled=False)) for _ in range(3)]
    tracer.start_span("links unsampled traces", context=no_parent, links=dropped).end()
    kept = [Link(_context(sampled=False)) for _ in range(499)] + [Link(_context(sampled=True))]
    tracer.start_span("links a sampled trace", context=no_parent, links=kept).end()
    (span,) = exporter.get_finished_spans()
    assert span.name == "links a sampled trace" and len(span.links) == 500


def test_a_stored_carrier_names_its_span_or_none() -> None:
    context = _context(sampled=True)
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    named = stored_span_context(traceparent, "vendor=1")
    assert named is not None and (named.trace_id, named.span_id) == (
        context.trace_id,
        context.span_id,
    )
    assert named.trace_flags.sampled and named.trace_state.get("vendor") == "1"
    for forged in (None, "", "00-zz-11-01", f"00-{0:032x}-{context.span_id:016x}-01"):
        assert stored_span_context(forged, None) is None
