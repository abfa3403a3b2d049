"""Reading one trace's spans from the local trace file (``FR_OTEL_FILE``).

The file grows for as long as the services run, so it is streamed, and a line is
parsed only when it holds the trace id; a trace keeps at most ``max_spans`` spans
(the rest are counted, not held). The file is the services' own output, but it is
read like anything else: a line that is not a span is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.console.waterfall import Span, Waterfall, belongs, parse_span, waterfall

MAX_SPANS = 5000
MAX_LINE_BYTES = 1_000_000


@dataclass(frozen=True)
class TraceRead:
    waterfall: Waterfall
    file_found: bool
    dropped: int  # spans beyond max_spans


def read_spans(path: Path, trace_id: str, *, max_spans: int = MAX_SPANS) -> tuple[list[Span], int]:
    """The spans of ``trace_id`` in ``path``, and those that link to it (in file order),
    and how many were dropped."""
    needle = trace_id.lower().encode()
    spans: list[Span] = []
    dropped = 0
    with path.open("rb") as lines:
        for line in lines:
            if needle not in line or len(line) > MAX_LINE_BYTES:
                continue
            span = parse_span(line)
            if span is None or not belongs(span, trace_id):
                continue
            if len(spans) >= max_spans:
                dropped += 1
                continue
            spans.append(span)
    return spans, dropped


def read_trace(
    path: Path, trace_id: str, *, hide: tuple[str, ...] = (), max_spans: int = MAX_SPANS
) -> TraceRead:
    if not path.is_file():
        return TraceRead(Waterfall(trace_id, (), None, 0.0), False, 0)
    spans, dropped = read_spans(path, trace_id, max_spans=max_spans)
    return TraceRead(waterfall(trace_id, spans, hide=hide), True, dropped)
