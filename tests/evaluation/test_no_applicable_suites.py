"""A covered model no suite applies to gets an answer: EvaluationCompleted with no suites."""

from __future__ import annotations

from uuid import UUID

from contracts import encode, make_event
from contracts.events import (
    EvaluationCompleted,
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
)
from contracts.events.evaluation import EvaluationEnd
from tests.contracts.examples import EVALUATOR_ID, example
from tests.evaluation.rig import EvalRig, assign, filing, register_example_key
from tests.kit import read_topic


async def test_a_model_no_suite_applies_to_is_answered_with_an_evaluation_of_no_suites(
    rig: EvalRig,
) -> None:
    settings = await rig.start(worker=False)
    await register_example_key(rig)
    images_only = filing(rig.demo_url, "capable", modalities=["image"])  # every suite needs text
    sid = images_only.submission_id
    # Sent twice (e.g. intake re-published it).
    await rig.file(images_only)
    await rig.redeliver(images_only)
    reader = rig.events
    await reader.wait(lambda: bool(reader.of(sid, EvaluationCompleted)), what="an end")
    # A red team assigned to it may still report on the model by hand, until the window
    # closes.
    await assign(rig, EVALUATOR_ID, sid)
    await rig.send_findings((str(sid), finding_record(sid)))
    await reader.wait(lambda: bool(reader.of(sid, FindingRecorded)), what="a finding")
    await rig.close_window(images_only)
    late = finding_record(sid)
    await rig.send_findings((str(sid), late))
    await reader.wait(lambda: bool(reader.of(sid, ExternalFindingRejected)), what="a refusal")
    await reader.linger()

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.NO_APPLICABLE_SUITES
    assert completed.suites == [] and completed.incomplete
    assert completed.detail is not None and completed.detail.endswith("modalities: image")
    assert [type(e).__name__ for e in reader.of(sid)] == [
        "EvaluationCompleted",
        "FindingRecorded",
        "ExternalFindingRejected",
    ]
    [refused] = reader.of(sid, ExternalFindingRejected)
    assert refused.reason == "invalid_state" and "review window" in refused.detail
    ended_by = await rig.fetchval("SELECT ended_by FROM evaluations WHERE submission_id = $1", sid)
    jobs = await rig.fetchval("SELECT count(*) FROM jobs")
    assert (ended_by, jobs) == ("no_applicable_suites", 0)
    dead = await read_topic(settings, rig.topic("intake.events.dlq"), expected=0, timeout=1)
    assert dead == [], "nothing was dead-lettered"


def finding_record(sid: UUID) -> bytes:
    finding = example(ExternalFindingSubmitted, submission_id=sid)
    return encode(make_event(finding, source="/evaluators/red-team", subject=str(sid)))
