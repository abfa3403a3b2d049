"""From SubmissionAccepted to findings: real Kafka, PostgreSQL, Inspect and the demo model."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path

import pytest

from contracts.events import (
    EvaluationCompleted,
    EvaluationStarted,
    FindingRecorded,
)
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from services.evaluation.findings import EVIDENCE_PREFIX
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import load_registry
from tests.evaluation.rig import DEMO_API_KEY, SHIPPED_REGISTRY, EvalRig, filing
from tests.kit import TopicWatcher


async def test_both_demo_profiles_are_evaluated_end_to_end(
    rig: EvalRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services")
    caplog.set_level(logging.INFO)
    registry = load_registry(SHIPPED_REGISTRY)
    suites = {s.id for s in registry.enabled()}
    assert {s.domain.value for s in registry.enabled()} == {
        "cyber",
        "bio",
        "chem",
        "nuclear",
        "autonomy",
    }
    capable, refuser = filing(rig.demo_url, "capable"), filing(rig.demo_url, "refuser")
    eval_settings = rig.settings
    service = await rig.start_service(eval_settings)
    await rig.file(capable, refuser)

    reader = rig.events
    await reader.wait(
        lambda: all(reader.of(s.submission_id, EvaluationCompleted) for s in (capable, refuser)),
        timeout=150,
        what="both evaluations completed",
    )
    await reader.linger()

    for submission, expected_score in ((capable, 1.0), (refuser, 0.0)):
        sid = submission.submission_id
        [started] = reader.of(sid, EvaluationStarted)
        assert started.registry_version == registry.registry_version
        assert {s.suite_id for s in started.suites} == suites
        assert started.deadline == submission.deadline

        findings: list[FindingRecorded] = reader.of(sid, FindingRecorded)
        assert sorted(f.suite_id for f in findings) == sorted(suites), "one finding per suite"
        for finding in findings:
            assert finding.score == expected_score, (finding.suite_id, finding.score)
            assert finding.metric == "accuracy"
            assert finding.method == "automated" and finding.evaluator == "agency"
            assert finding.samples_total == 3 and finding.samples_scored == 3
            assert finding.model_id == submission.model_id
            log_file = eval_settings.evaluation_inspect_log_dir / finding.evidence_ref.removeprefix(
                f"{EVIDENCE_PREFIX}/"
            )
            assert hashlib.sha256(log_file.read_bytes()).hexdigest() == finding.evidence_sha256

        [completed] = reader.of(sid, EvaluationCompleted)
        assert completed.ended_by is EvaluationEnd.ALL_SUITES_ENDED
        assert not completed.incomplete
        assert {s.status for s in completed.suites} == {SuiteStatus.COMPLETED}
        assert sorted(i for s in completed.suites for i in s.finding_ids) == sorted(
            f.finding_id for f in findings
        )
        kinds = [type(e).__name__ for e in reader.of(sid)]
        assert kinds[0] == "EvaluationStarted" and kinds[-1] == "EvaluationCompleted"

    await assert_concurrency_limit(rig, eval_settings.evaluation_worker_concurrency)
    await rig.stop_service(service)  # flushes the trace file
    # In a thread: Inspect's synchronous log reader, called with a loop running, applies
    # nest_asyncio and re-enters this loop, running the rig's tasks inside it (the loop's
    # own bookkeeping then failed: "pop from an empty deque").
    logs = await asyncio.to_thread(
        grep_tree, eval_settings.evaluation_inspect_log_dir, DEMO_API_KEY
    )
    assert_secret_never_leaked(reader, eval_settings, caplog, logs)
    await assert_secret_not_in_database(rig)


async def assert_concurrency_limit(rig: EvalRig, limit: int) -> None:
    """The worker never ran more attempts at once than its concurrency limit."""
    attempts = await rig.fetch("SELECT started_at, ended_at FROM job_attempts")
    assert len(attempts) == 10 and all(a["ended_at"] for a in attempts), "one attempt per job"
    edges = sorted(
        [(a["started_at"], 1) for a in attempts] + [(a["ended_at"], -1) for a in attempts]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == limit, f"peak {peak} concurrent attempts, limit {limit}"


def assert_secret_never_leaked(
    reader: TopicWatcher,
    settings: EvaluationSettings,
    caplog: pytest.LogCaptureFixture,
    inspect_logs_with_it: list[Path],
) -> None:
    assert all(DEMO_API_KEY.encode() not in (r.value or b"") for r in reader.records), "event"
    assert inspect_logs_with_it == [], "in an Inspect log"
    assert DEMO_API_KEY not in caplog.text, "in the service's log"
    traces = Path(settings.otel_file).read_text()
    assert DEMO_API_KEY not in traces, "in a trace"
    assert_one_trace_per_submission(traces)


def assert_one_trace_per_submission(traces: str) -> None:
    """The worker's job spans continue the trace in which SubmissionAccepted was consumed."""
    spans = [json.loads(line) for line in traces.splitlines() if line.strip()]
    jobs = [s for s in spans if s["name"].startswith("evaluation job")]
    assert jobs, "the worker's spans were exported"
    by_submission: dict[str, set[str]] = {}
    for span in jobs:
        sid = span["attributes"]["frontier_review.submission_id"]
        by_submission.setdefault(sid, set()).add(span["context"]["trace_id"])
    assert len(by_submission) == 2 and all(len(t) == 1 for t in by_submission.values())
    consumed = {s["context"]["trace_id"] for s in spans if s["kind"] == "SpanKind.CONSUMER"}
    assert {next(iter(t)) for t in by_submission.values()} <= consumed


async def assert_secret_not_in_database(rig: EvalRig) -> None:
    tables = await rig.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", rig.schema
    )
    for table in tables:
        rows = await rig.fetch(f'SELECT t::text AS row FROM "{table[0]}" t')
        assert not any(DEMO_API_KEY in r["row"] for r in rows), f"in table {table[0]}"


def grep_tree(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` containing ``needle``; Inspect logs are read decompressed."""
    from inspect_ai.log import read_eval_log

    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".eval":
            text = read_eval_log(str(path)).model_dump_json()
            assert "sample" in text  # really decoded
            if needle in text:
                hits.append(path)
        elif needle.encode() in path.read_bytes():
            hits.append(path)
    return hits
