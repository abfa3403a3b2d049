"""A trace as a waterfall: the spans of one trace as rows, nested by parent (pure).

``parse_span`` reads one finished span as the services write it
(``FR_OTEL_EXPORTER=jsonl``: the OpenTelemetry SDK's ``ReadableSpan.to_json``, one
per line); ``waterfall`` orders the spans of one trace depth-first, children by
start time, and measures each against the trace's first start. A span whose parent
is not among them (not exported yet, or sampled away) is shown as a root, so a
partial trace still reads. Both refuse nothing: a line that is not a span is None.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Span:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: str | None
    name: str
    service: str
    kind: str
    start: datetime
    end: datetime
    error: bool
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Row:
    depth: int
    service: str
    name: str
    offset_ms: float  # start - the trace's first start
    duration_ms: float
    error: bool
    span_id: str
    parent_id: str | None
    orphan: bool  # it names a parent the trace does not hold


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    rows: tuple[Row, ...]
    started_at: datetime | None
    total_ms: float

    @property
    def services(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(row.service, None)
        return list(seen)


def _hex(value: Any, digits: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.removeprefix("0x").lower()
    if len(text) != digits or any(c not in "0123456789abcdef" for c in text):
        return None
    return text


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_span(line: str | bytes) -> Span | None:
    """One exported span, or None for anything else (a torn line, another format)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    context = raw.get("context")
    if not isinstance(context, dict):
        return None
    trace_id, span_id = _hex(context.get("trace_id"), 32), _hex(context.get("span_id"), 16)
    start, end = _time(raw.get("start_time")), _time(raw.get("end_time"))
    if trace_id is None or span_id is None or start is None or end is None:
        return None
    resource = raw.get("resource")
    resource_attributes = resource.get("attributes") if isinstance(resource, dict) else None
    service = (
        resource_attributes.get("service.name") if isinstance(resource_attributes, dict) else None
    )
    status = raw.get("status")
    attributes = raw.get("attributes")
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_hex(raw.get("parent_id"), 16),
        name=str(raw.get("name", "")),
        service=str(service or "unknown"),
        kind=str(raw.get("kind", "")).removeprefix("SpanKind."),
        start=start,
        end=max(start, end),
        error=isinstance(status, dict) and status.get("status_code") == "ERROR",
        attributes=attributes if isinstance(attributes, dict) else {},
    )


def waterfall(trace_id: str, spans: Iterable[Span], *, hide: Iterable[str] = ()) -> Waterfall:
    """The spans of ``trace_id`` (others are ignored) as nested rows; services in ``hide``
    are left out, their children hung on the nearest shown ancestor."""
    hidden = set(hide)
    everything: dict[str, Span] = {}
    for span in spans:
        if span.trace_id == trace_id:
            everything.setdefault(span.span_id, span)  # a span exported twice is one span
    shown = {sid: s for sid, s in everything.items() if s.service not in hidden}
    if not shown:
        return Waterfall(trace_id, (), None, 0.0)

    def shown_parent(span: Span) -> str | None:
        parent, seen = span.parent_id, set()
        while parent is not None and parent not in shown and parent not in seen:
            seen.add(parent)
            ancestor = everything.get(parent)
            parent = ancestor.parent_id if ancestor is not None else None
        return parent if parent in shown else None

    children: dict[str | None, list[Span]] = {}
    for span in shown.values():
        children.setdefault(shown_parent(span), []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start, s.end, s.span_id))
    first = min(s.start for s in shown.values())
    last = max(s.end for s in shown.values())
    rows: list[Row] = []
    placed: set[str] = set()

    def visit(span: Span, depth: int) -> None:
        if span.span_id in placed:  # a cycle of parent ids (a forged file): stop there
            return
        placed.add(span.span_id)
        rows.append(
            Row(
                depth=depth,
                service=span.service,
                name=span.name,
                offset_ms=(span.start - first).total_seconds() * 1000,
                duration_ms=(span.end - span.start).total_seconds() * 1000,
                error=span.error,
                span_id=span.span_id,
                parent_id=span.parent_id,
                orphan=span.parent_id is not None and span.parent_id not in everything,
            )
        )
        for child in children.get(span.span_id, ()):
            visit(child, depth + 1)

    for root in children.get(None, ()):
        visit(root, 0)
    for span in sorted(shown.values(), key=lambda s: s.start):  # left over from a cycle
        if span.span_id not in placed:
            visit(span, 0)
    return Waterfall(trace_id, tuple(rows), first, (last - first).total_seconds() * 1000)
