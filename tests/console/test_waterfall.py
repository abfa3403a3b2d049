"""A trace's spans as a waterfall: nesting, offsets, what is missing or hostile (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.console.traces import read_trace
from services.console.waterfall import MAX_LINKS, Span, parse_span, waterfall

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def span_line(
    span_id: int,
    parent: int | None,
    name: str,
    service: str,
    start_ms: float,
    end_ms: float,
    *,
    trace: str = TRACE,
    status: str = "UNSET",
    links: tuple[tuple[str, int], ...] = (),
) -> str:
    """A span as the SDK's ReadableSpan.to_json writes it (one line)."""

    def iso(ms: float) -> str:
        return (T0 + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return json.dumps(
        {
            "name": name,
            "context": {
                "trace_id": f"0x{trace}",
                "span_id": f"0x{span_id:016x}",
                "trace_state": "[]",
            },
            "kind": "SpanKind.CONSUMER",
            "parent_id": None if parent is None else f"0x{parent:016x}",
            "start_time": iso(start_ms),
            "end_time": iso(end_ms),
            "status": {"status_code": status},
            "attributes": {"messaging.destination.name": "intake.events"},
            "events": [],
            "links": [
                {
                    "context": {
                        "trace_id": f"0x{t}",
                        "span_id": f"0x{i:016x}",
                        "trace_state": "[]",
                    },
                    "attributes": {},
                }
                for t, i in links
            ],
            "resource": {"attributes": {"service.name": service}, "schema_url": ""},
        }
    )


def spans(*lines: str) -> list[Span]:
    parsed = [parse_span(line) for line in lines]
    assert all(p is not None for p in parsed)
    return [p for p in parsed if p is not None]


def test_spans_nest_under_their_parents_in_start_order_with_offsets() -> None:
    wf = waterfall(
        TRACE,
        spans(
            span_line(1, None, "lab.submissions process", "intake", 0, 50),
            span_line(3, 1, "outbox publish", "intake", 40, 45),
            span_line(2, 1, "INSERT", "intake", 10, 20),
            span_line(4, 3, "intake.events process", "evaluation", 60, 90, status="ERROR"),
        ),
    )
    assert [(r.depth, r.name, r.offset_ms, r.duration_ms) for r in wf.rows] == [
        (0, "lab.submissions process", 0.0, 50.0),
        (1, "INSERT", 10.0, 10.0),
        (1, "outbox publish", 40.0, 5.0),
        (2, "intake.events process", 60.0, 30.0),
    ]
    assert wf.total_ms == 90.0 and wf.rows[-1].error and wf.services == ["intake", "evaluation"]


def test_a_span_whose_parent_is_missing_is_a_root_marked_orphan() -> None:
    wf = waterfall(TRACE, spans(span_line(5, 99, "risk.events process", "access", 0, 1)))
    assert [(r.depth, r.orphan) for r in wf.rows] == [(0, True)]


def test_hidden_services_give_their_children_to_the_nearest_shown_ancestor() -> None:
    wf = waterfall(
        TRACE,
        spans(
            span_line(1, None, "root", "intake", 0, 10),
            span_line(2, 1, "console apply", "console", 1, 2),
            span_line(3, 2, "child of console", "risk", 3, 4),
        ),
        hide=["console"],
    )
    assert [(r.depth, r.name) for r in wf.rows] == [(0, "root"), (1, "child of console")]


def test_other_traces_and_duplicate_spans_are_left_out() -> None:
    wf = waterfall(
        TRACE,
        spans(
            span_line(1, None, "mine", "intake", 0, 10),
            span_line(1, None, "mine", "intake", 0, 10),
            span_line(2, None, "theirs", "intake", 0, 10, trace="f" * 32),
        ),
    )
    assert [r.name for r in wf.rows] == ["mine"]


def test_a_cycle_of_parent_ids_still_shows_every_span_once() -> None:
    wf = waterfall(
        TRACE,
        spans(span_line(1, 2, "a", "intake", 0, 1), span_line(2, 1, "b", "intake", 1, 2)),
    )
    assert sorted(r.name for r in wf.rows) == ["a", "b"]


def test_lines_that_are_not_spans_are_skipped() -> None:
    for line in ["", "{", "[]", '{"context": 1}', '{"context": {"trace_id": "0x1"}}']:
        assert parse_span(line) is None


def test_the_trace_file_is_read_for_one_trace_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(
        "\n".join(
            [
                span_line(1, None, "root", "intake", 0, 10),
                span_line(7, None, "other", "intake", 0, 10, trace="a" * 32),
                span_line(2, 1, "child", "risk", 2, 3)[:40],  # torn by a crash mid-write
                span_line(3, 1, "child", "risk", 2, 3),
            ]
        )
        + "\n"
    )
    read = read_trace(path, TRACE)
    assert read.file_found and [r.name for r in read.waterfall.rows] == ["root", "child"]
    assert not read_trace(tmp_path / "missing.jsonl", TRACE).file_found


def test_a_trace_keeps_at_most_its_span_limit_and_says_how_many_it_dropped(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(span_line(i, None, f"s{i}", "intake", i, i + 1) for i in range(1, 8)))
    read = read_trace(path, TRACE, max_spans=5)
    assert (len(read.waterfall.rows), read.dropped) == (5, 2)


OTHER = "f" * 32


def test_a_span_of_another_trace_linking_to_one_of_this_trace_shows_under_it() -> None:
    """The relay's Kafka transaction is a trace of its own, linked to every record it
    publishes: each submission's waterfall shows it under the span that wrote the row."""
    wf = waterfall(
        TRACE,
        spans(
            span_line(1, None, "lab.submissions process", "intake", 0, 50),
            span_line(4, 1, "intake.events process", "evaluation", 70, 90),
            span_line(
                9,
                None,
                "intake.events publish",
                "intake",
                55,
                65,
                trace=OTHER,
                links=(("a" * 32, 5), (TRACE, 1)),
            ),
            span_line(10, 9, "child of the transaction", "intake", 56, 57, trace=OTHER),
            span_line(
                11, None, "unrelated publish", "intake", 0, 1, trace=OTHER, links=((OTHER, 3),)
            ),
        ),
    )
    assert [(r.depth, r.name, r.linked, r.orphan) for r in wf.rows] == [
        (0, "lab.submissions process", False, False),
        (1, "intake.events publish", True, False),
        (1, "intake.events process", False, False),
    ]
    assert wf.rows[1].offset_ms == 55.0 and wf.total_ms == 90.0


def test_a_linked_span_of_a_hidden_service_or_to_a_missing_span_is_left_out() -> None:
    linking = span_line(9, None, "publish", "console", 5, 6, trace=OTHER, links=((TRACE, 1),))
    dangling = span_line(8, None, "publish", "intake", 5, 6, trace=OTHER, links=((TRACE, 77),))
    wf = waterfall(
        TRACE,
        spans(span_line(1, None, "root", "intake", 0, 10), linking, dangling),
        hide=["console"],
    )
    assert [r.name for r in wf.rows] == ["root"]


def test_links_that_are_not_links_are_ignored() -> None:
    line = json.loads(span_line(9, None, "publish", "intake", 0, 1))
    line["links"] = [1, {"context": "x"}, {"context": {"trace_id": "0x1", "span_id": "0x2"}}]
    parsed = parse_span(json.dumps(line))
    assert parsed is not None and parsed.links == ()
    line["links"] = {"not": "a list"}
    parsed = parse_span(json.dumps(line))
    assert parsed is not None and parsed.links == ()


def test_the_trace_file_read_includes_the_spans_that_link_to_the_trace(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(
        "\n".join(
            [
                span_line(1, None, "root", "intake", 0, 10),
                span_line(9, None, "publish", "intake", 4, 6, trace=OTHER, links=((TRACE, 1),)),
                span_line(8, None, "elsewhere", "intake", 4, 6, trace=OTHER),
            ]
        )
        + "\n"
    )
    rows = read_trace(path, TRACE).waterfall.rows
    assert [(r.name, r.linked) for r in rows] == [("root", False), ("publish", True)]


def test_a_span_with_more_links_than_any_relay_batch_keeps_only_the_first_ones() -> None:
    many = tuple((OTHER, i) for i in range(1, MAX_LINKS + 50))
    parsed = parse_span(span_line(9, None, "publish", "intake", 0, 1, links=((TRACE, 1), *many)))
    assert parsed is not None and len(parsed.links) == MAX_LINKS
    assert parsed.links[0] == (TRACE, f"{1:016x}")
