"""Spans as the services export them (``FR_OTEL_EXPORTER=jsonl``: one JSON object per
line, the SDK's ``ReadableSpan.to_json``), read back to check a trace's shape."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Span:
    name: str
    service: str
    kind: str  # INTERNAL | SERVER | CLIENT | PRODUCER | CONSUMER
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    links: tuple[Link, ...] = ()

    @property
    def destination(self) -> str | None:
        """The Kafka topic a messaging span published to or consumed from."""
        value = self.attributes.get("messaging.destination.name")
        return str(value) if value is not None else None

    @property
    def database(self) -> bool:
        return self.attributes.get("db.system") in ("postgresql", "postgres")

    def __str__(self) -> str:
        return f"{self.service}: {self.kind} {self.name!r}"


def parse(document: dict[str, Any]) -> Span:
    context = document["context"]
    resource = document.get("resource", {}).get("attributes", {})
    return Span(
        name=document["name"],
        service=str(resource.get("service.name", "?")),
        kind=str(document["kind"]).removeprefix("SpanKind."),
        trace_id=str(context["trace_id"]).removeprefix("0x"),
        span_id=str(context["span_id"]).removeprefix("0x"),
        parent_id=str(document["parent_id"]).removeprefix("0x") if document["parent_id"] else None,
        attributes=dict(document.get("attributes") or {}),
        links=tuple(
            Link(
                trace_id=str(link["context"]["trace_id"]).removeprefix("0x"),
                span_id=str(link["context"]["span_id"]).removeprefix("0x"),
                attributes=dict(link.get("attributes") or {}),
            )
            for link in document.get("links") or ()
        ),
    )


def read_spans(directory: Path) -> list[Span]:
    """Every span the services of a rig wrote to ``directory/traces-*.jsonl`` (a line a
    span; a line cut off by a kill is skipped)."""
    spans = []
    for path in sorted(directory.glob("traces-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                spans.append(parse(json.loads(line)))
            except (ValueError, KeyError):
                continue
    return spans


def from_sdk(spans: Iterable[ReadableSpan]) -> list[Span]:
    """Spans of this process's own provider (the lab's), in the same form."""
    return [parse(json.loads(span.to_json(indent=None))) for span in spans]


def ancestry(span: Span, by_id: dict[str, Span]) -> tuple[list[Span], str | None]:
    """``span`` and its ancestors up to the root, and the id of the first missing parent
    (None when the chain reaches a root span)."""
    chain = [span]
    while chain[-1].parent_id is not None:
        parent = by_id.get(chain[-1].parent_id)
        if parent is None:
            return chain, chain[-1].parent_id
        chain.append(parent)
    return chain, None
