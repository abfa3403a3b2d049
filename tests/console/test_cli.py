"""``status`` and ``traces`` against the console's schema on the real stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry import trace

from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import build_tracer_provider, current_trace_headers
from tests.console.rig import Rig, run_cli
from tests.console.scenario import Scenario
from tests.console.test_waterfall import span_line
from tests.kit import free_port

TRACE = "7ef92f3577b34da6a3ce929d0e0e4739"


async def test_status_names_each_stuck_stage_and_what_it_waits_on(console: Rig) -> None:
    waiting = Scenario(start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    moving = Scenario(start=datetime.now(UTC).replace(microsecond=0))
    await console.send(waiting.accepted())
    await console.send(moving.accepted())
    await console.send(moving.started())
    await console.until_row(
        "the plan", "SELECT 1 FROM evaluation_facts WHERE submission_id = $1", moving.submission_id
    )
    result = await run_cli(console.settings, "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["submission_id"]: row for row in json.loads(result.stdout)}
    stuck = rows[str(waiting.submission_id)]
    assert (stuck["state"], stuck["deadline"]) == ("accepted", waiting.deadline.isoformat())
    assert [(x["stage"], x["waiting_on"]) for x in stuck["stuck"]] == [("evaluation", "evaluation")]
    assert rows[str(moving.submission_id)]["stuck"] == []


async def test_status_prints_a_table_and_fails_on_stuck_when_asked(console: Rig) -> None:
    s = Scenario(start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    await console.send(s.accepted())
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    table = await run_cli(console.settings, "status", "--stuck", "--fail-on-stuck")
    assert table.returncode == 1
    assert str(s.submission_id) in table.stdout and "waits on evaluation" in table.stdout


async def test_traces_prints_the_submissions_waterfall(console: Rig) -> None:
    s = Scenario()
    await console.send(s.accepted(), traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    console.write_spans(
        [
            span_line(1, None, "lab.submissions process", "intake", 0, 40, trace=TRACE),
            span_line(2, 1, "intake.events process", "evaluation", 50, 100, trace=TRACE),
        ]
    )
    result = await run_cli(console.settings, "traces", str(s.submission_id))
    assert result.returncode == 0, result.stderr
    assert f"trace {TRACE}: 2 spans, 100.0 ms" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "process" in line]
    assert "intake" in lines[0] and "+0.0 ms" in lines[0] and "█" in lines[0]
    assert "  intake.events process" in lines[1] and "+50.0 ms" in lines[1]


async def test_traces_reads_what_the_runtimes_exporter_writes(console: Rig, tmp_path: Path) -> None:
    file = tmp_path / "exported.jsonl"
    exporting = RuntimeSettings(service_name="intake", otel_exporter="jsonl", otel_file=file)
    provider = build_tracer_provider(exporting)
    tracer = trace.get_tracer("test", tracer_provider=provider)
    with tracer.start_as_current_span("lab.submissions process"):
        traceparent = current_trace_headers()["traceparent"]
        with tracer.start_as_current_span("INSERT submissions"):
            pass
    provider.shutdown()  # flushes the batch to the file
    s = Scenario()
    await console.send(s.accepted(), traceparent=traceparent)
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    result = await run_cli(
        console.settings, "traces", str(s.submission_id), "--file", str(file), "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["depth"], r["service"], r["name"]) for r in rows] == [
        (0, "intake", "lab.submissions process"),
        (1, "intake", "INSERT submissions"),
    ]


async def test_traces_of_an_unknown_submission_fails_with_a_message(console: Rig) -> None:
    result = await run_cli(console.settings, "traces", str(Scenario().submission_id))
    assert result.returncode == 1 and "knows no submission" in result.stderr


async def test_traces_without_its_spans_in_the_file_says_so(console: Rig) -> None:
    s = Scenario()
    await console.send(s.accepted(), traceparent=f"00-{'9' * 32}-00f067aa0ba902b7-01")
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    result = await run_cli(console.settings, "traces", str(s.submission_id))
    assert result.returncode == 1 and "no span of trace" in result.stderr


async def test_status_without_a_database_fails_with_a_message_not_a_traceback(
    console: Rig,
) -> None:
    url = f"postgresql://frontier:s3cret-in-url@127.0.0.1:{free_port()}/frontier_review"
    result = await run_cli(console.settings, "status", env={"FR_DATABASE_URL": url})
    assert result.returncode == 1
    assert "cannot read the console's schema" in result.stderr and "Connect" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret-in-url" not in result.stderr
