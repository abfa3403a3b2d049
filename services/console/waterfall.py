"""A trace as a waterfall: the spans of one trace as rows, nested by parent (pure).

``parse_span`` reads one finished span as the services write it
(``FR_OTEL_EXPORTER=jsonl``: the OpenTelemetry SDK's ``ReadableSpan.to_json``, one
per line); ``waterfall`` orders the spans of one trace depth-first, children by
start time, and measures each against the trace's first start. A span whose parent
is not among them (not exported yet, or sampled away) is shown as a root, so a
partial trace still reads. A span of another trace that *links* to one of this
trace's (an outbox relay's Kafka transaction links every record it publishes) is
shown under the span it links to, marked linked: a submission's trace shows when its
event was published, though the transaction is a trace of its own. Both refuse
nothing: a line that is not a span is None.
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
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of each span it links to


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
    linked: bool = False  # a span of another trace, shown under the span it links to


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


# A relay transaction links at most its batch (500 by default); more is not a span of ours.
MAX_LINKS = 10_000


def _links(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        return ()
    links = []
    for link in value[:MAX_LINKS]:
        context = link.get("context") if isinstance(link, dict) else None
        if isinstance(context, dict):
            trace_id, span_id = _hex(context.get("trace_id"), 32), _hex(context.get("span_id"), 16)
            if trace_id is not None and span_id is not None:
                links.append((trace_id, span_id))
    return tuple(links)


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
        links=_links(raw.get("links")),
    )


def belongs(span: Span, trace_id: str) -> bool:
    """Whether ``span`` is of ``trace_id`` or links to a span of it."""
    return span.trace_id == trace_id or any(linked == trace_id for linked, _ in span.links)


def waterfall(trace_id: str, spans: Iterable[Span], *, hide: Iterable[str] = ()) -> Waterfall:
    """The spans of ``trace_id`` as nested rows, with the spans of other traces that link
    to them (others are ignored); services in ``hide`` are left out, their children hung
    on the nearest shown ancestor."""
    hidden = set(hide)
    everything: dict[str, Span] = {}
    linking: dict[str, Span] = {}
    for span in spans:
        if span.trace_id == trace_id:
            everything.setdefault(span.span_id, span)  # a span exported twice is one span
        elif belongs(span, trace_id):
            linking.setdefault(span.span_id, span)
    shown = {sid: s for sid, s in everything.items() if s.service not in hidden}
    if not shown:
        return Waterfall(trace_id, (), None, 0.0)

    def shown_parent(span_id: str | None) -> str | None:
        parent, seen = span_id, set()
        while parent is not None and parent not in shown and parent not in seen:
            seen.add(parent)
            ancestor = everything.get(parent)
            parent = ancestor.parent_id if ancestor is not None else None
        return parent if parent in shown else None

    children: dict[str | None, list[Span]] = {}
    for span in shown.values():
        children.setdefault(shown_parent(span.parent_id), []).append(span)
    linked: set[str] = set()
    for span in linking.values():
        target = next(
            (t for tid, sid in span.links if tid == trace_id and (t := shown_parent(sid))), None
        )
        if target is not None and span.service not in hidden and span.span_id not in shown:
            children.setdefault(target, []).append(span)
            linked.add(span.span_id)
    for group in children.values():
        group.sort(key=lambda s: (s.start, s.end, s.span_id))
    placed_spans = [*shown.values(), *(linking[sid] for sid in linked)]
    first = min(s.start for s in placed_spans)
    last = max(s.end for s in placed_spans)
    rows: list[Row] = []
    placed: set[str] = set()

    def visit(span: Span, depth: int) -> None:
        if span.span_id in placed:  # a cycle of parent ids (a forged file): stop there
            return
        placed.add(span.span_id)
        is_linked = span.span_id in linked
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
                orphan=not is_linked
                and span.parent_id is not None
                and span.parent_id not in everything,
                linked=is_linked,
            )
        )
        if not is_linked:  # a linked span's own children are of its own trace
            for child in children.get(span.span_id, ()):
                visit(child, depth + 1)

    for root in children.get(None, ()):
        visit(root, 0)
    for span in sorted(shown.values(), key=lambda s: s.start):  # left over from a cycle
        if span.span_id not in placed:
            visit(span, 0)
    return Waterfall(trace_id, tuple(rows), first, (last - first).total_seconds() * 1000)
