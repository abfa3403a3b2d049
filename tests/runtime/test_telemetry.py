"""Local trace files and JSON logs carry the service name and the trace ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.trace import Link, Status, StatusCode

from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import JsonLogFormatter, build_tracer_provider


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
