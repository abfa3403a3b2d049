"""External evaluators' signed findings: recorded when valid, answered with a reason if not."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import encode, make_event
from contracts.events import EvaluationCompleted, ExternalFindingSubmitted, FindingRecorded
from services.trust.refusal import AUTHENTICATION_FAILED_DETAIL
from tests.contracts.examples import EVALUATOR_ID, example, sign
from tests.evaluation.rig import (
    EvalRig,
    assign,
    evaluation_cli,
    evaluation_started,
    filing,
    register_example_key,
    rejections,
)
from tests.kit import MovableClock, read_topic, wait_for


def submitted(submission_id: uuid.UUID, **overrides: Any) -> ExternalFindingSubmitted:
    return example(ExternalFindingSubmitted, submission_id=submission_id, **overrides)


def as_record(finding: ExternalFindingSubmitted, subject: str | None = None) -> bytes:
    subject = subject or str(finding.submission_id)
    return encode(make_event(finding, source="/evaluators/red-team", subject=subject))


def event_id_of(record: bytes) -> str:
    event_id: str = json.loads(record)["id"]
    return event_id


async def test_external_findings_are_recorded_or_refused_telling_strangers_only_that(
    rig: EvalRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.evaluation")
    settings = await rig.start(worker=False)  # no Inspect runs
    sid = await refuser_planned(rig)

    good = submitted(sid)
    schema_violation = json.loads(as_record(submitted(sid)))
    schema_violation["data"]["score"] = 1.5
    forged = sign(submitted(sid), Ed25519PrivateKey.generate())
    stranger = submitted(uuid.uuid4())
    unknown_key = submitted(sid, signature=good.signature.model_copy(update={"key_id": "nokey"}))
    unknown_evaluator = submitted(sid, evaluator_id="unregistered-red-team")
    conflicting = submitted(sid, score=0.9)  # same external_finding_id as ``good``
    # (the record, what the sender is told, the precise reason in the operator's log)
    cases: list[tuple[bytes, str | None, str | None]] = [
        (as_record(good), None, None),
        (as_record(good), "authentication_failed", "replayed_nonce"),  # the same data again
        (json.dumps(schema_violation).encode(), "schema_violation", None),
        (as_record(forged), "authentication_failed", "bad_signature"),
        (as_record(stranger), "not_assigned", "not_assigned"),  # authenticated: precise
        (as_record(sign(unknown_key)), "authentication_failed", "unknown_key"),
        (as_record(unknown_evaluator), "authentication_failed", "unknown_evaluator"),
        (as_record(submitted(sid), subject=str(uuid.uuid4())), "subject_mismatch", None),
        (as_record(conflicting), "conflict", "conflict"),
    ]
    await rig.send_findings(*((str(sid), value) for value, _, _ in cases))
    await rig.send_findings((str(sid), b"\x00not json at all"))

    told = {event_id_of(value): reason for value, reason, _ in cases if reason}
    reader = rig.events
    await reader.wait(lambda: len(rejections(reader)) >= len(told), what="every rejection")
    await reader.linger()

    [finding] = reader.of(sid, FindingRecorded)
    assert finding.method == "manual" and finding.suite_id == "external"
    assert finding.evaluator == EVALUATOR_ID
    assert finding.external_finding_id == good.external_finding_id
    assert finding.score == good.score and finding.summary == good.summary
    answers = {r.rejected_event_id: r for r in rejections(reader)}
    assert {event_id: r.reason.value for event_id, r in answers.items()} == told, "one each"
    authenticated = {"not_assigned", "conflict"}
    strangers = [a for a in answers.values() if a.reason.value not in authenticated]
    for answer in strangers:  # about the event only, keyed by its id
        assert (answer.submission_id, answer.external_finding_id) == (None, None)
    assert {a.rejected_event_id.encode() for a in strangers if a.rejected_event_id} <= {
        r.key for r in reader.records
    }
    concealed = [a for a in strangers if a.reason == "authentication_failed"]
    assert {a.detail for a in concealed} == {AUTHENTICATION_FAILED_DETAIL}
    assert "unregistered-red-team" in {a.evaluator_id for a in concealed}
    by_reason = {a.reason.value: a for a in answers.values()}
    assert [e.path for e in by_reason["schema_violation"].field_errors] == ["data.score"]
    assert by_reason["not_assigned"].submission_id == stranger.submission_id
    assert by_reason["conflict"].external_finding_id == good.external_finding_id

    # The operator's log has the precise reason of every refusal after decoding.
    logged = [r.getMessage() for r in caplog.records if "refused external finding" in r.message]
    for value, _, precise in cases:
        if precise is not None:
            line = [m for m in logged if f"(event {event_id_of(value)})" in m]
            assert line and f": {precise}: " in line[0], (precise, logged)

    dead = await read_topic(settings, rig.topic("evaluators.findings.dlq"), expected=1)
    assert [r.value for r in dead] == [b"\x00not json at all"]
    assert dict(dead[0].headers)["dlq.reason"] == b"malformed_json"


async def test_json_nested_too_deeply_to_parse_goes_to_the_dlq_and_the_partition_moves_on(
    rig: EvalRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services")
    settings = await rig.start(worker=False)
    sid = await refuser_planned(rig)

    nested = b"[" * 5000 + b"]" * 5000  # json.loads raises RecursionError, not ValueError
    # Same key, so the same partition: the valid finding waits behind the nested record.
    await rig.send_findings(
        (str(sid), nested),
        (str(sid), as_record(submitted(sid))),
    )
    await rig.events.wait(
        lambda: bool(rig.events.of(sid, FindingRecorded)), timeout=20, what="the valid finding"
    )
    dead = await read_topic(settings, rig.topic("evaluators.findings.dlq"), expected=1)
    assert [r.value for r in dead] == [nested]
    assert dict(dead[0].headers)["dlq.reason"] == b"malformed_json"
    # Answered by the hook (False: to the DLQ), not by the runtime's net for a failing hook.
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []


async def test_a_nonce_is_kept_until_no_copy_of_its_record_can_be_accepted(
    rig: EvalRig,
) -> None:
    clock = MovableClock()
    settings = rig.configure(worker=False, evaluation_nonce_purge_interval_s=0.2)
    await rig.start_service(settings, clock=clock)
    sid = await refuser_planned(rig)
    finding = submitted(sid)
    await rig.send_findings((str(sid), as_record(finding)))
    await rig.events.wait(lambda: bool(rig.events.of(sid, FindingRecorded)), what="the finding")

    async def nonces() -> list[str]:
        rows = await rig.fetch("SELECT nonce FROM trust_nonces WHERE kind = 'evaluator'")
        return [r["nonce"] for r in rows]

    assert await nonces() == [finding.signature.nonce]
    retention = settings.evaluation_freshness.nonce_retention
    clock.advance(retention.total_seconds() - 60)
    await asyncio.sleep(1.0)  # several purge rounds
    assert await nonces() == [finding.signature.nonce], "kept for the whole retention"

    async def purged() -> bool:
        return not await nonces()

    clock.advance(120)
    await wait_for(purged, timeout=15, what="the nonce to be purged after its retention")
    # A copy appended now is so far in the past of the service's clock that no nonce of
    # its age is remembered: it is neither accepted nor refused, but dead-lettered.
    await rig.send_findings((str(sid), as_record(finding)))
    dead = await read_topic(settings, rig.topic("evaluators.findings.dlq"), expected=1)
    assert dict(dead[0].headers)["dlq.reason"] == b"implausible_append_time"
    await rig.events.linger()
    assert len(rig.events.of(sid, FindingRecorded)) == 1


async def test_freshness_is_judged_when_the_broker_appended_the_finding_not_when_it_is_read(
    rig: EvalRig,
) -> None:
    """A backlog (here: the service down for ten minutes, twice the signature's accepted
    age) leaves a finding signed and sent in time fresh; one signed too long before it was
    sent is stale, however soon it is read."""
    clock = MovableClock()
    settings = rig.configure(worker=False)
    service = await rig.start_service(settings, clock=clock)
    sid = await refuser_planned(rig)
    await rig.stop_service(service)

    in_time = submitted(sid)
    late = submitted(sid, external_finding_id=uuid.uuid4())
    old_signature = late.signature.model_copy(
        update={"issued_at": late.signature.issued_at - timedelta(minutes=10)}
    )
    stale = sign(late.model_copy(update={"signature": old_signature}))
    await rig.send_findings((str(sid), as_record(in_time)), (str(sid), as_record(stale)))
    clock.advance(600)
    await rig.start_service(settings, clock=clock)

    reader = rig.events
    await reader.wait(
        lambda: bool(reader.of(sid, FindingRecorded)) and bool(rejections(reader)),
        what="the finding and the refusal",
    )
    [recorded] = reader.of(sid, FindingRecorded)
    assert recorded.external_finding_id == in_time.external_finding_id
    [refused] = rejections(reader)
    assert refused.reason == "authentication_failed"  # stale_issued_at, told to nobody
    rows = await rig.fetch("SELECT nonce FROM trust_nonces")
    assert [r["nonce"] for r in rows] == [in_time.signature.nonce], "a stale one spends none"


async def refuser_planned(rig: EvalRig) -> uuid.UUID:
    """The example evaluator's key registered, a submission (refuser) planned, and the
    evaluator assigned to it: its id."""
    await register_example_key(rig)
    submission = filing(rig.demo_url, "refuser")
    await rig.file(submission)
    await evaluation_started(rig, submission.submission_id)
    await assign(rig, EVALUATOR_ID, submission.submission_id)
    return submission.submission_id


async def test_a_finding_sent_after_the_window_closed_is_refused_to_its_evaluator(
    rig: EvalRig,
) -> None:
    await rig.start(worker=False)
    await register_example_key(rig)
    submission = filing(rig.demo_url, "refuser")
    sid = submission.submission_id
    await rig.file(submission)
    await evaluation_started(rig, sid)
    await assign(rig, EVALUATOR_ID, sid)  # assigned: only the closed window stands in the way
    await rig.close_window(submission)
    await rig.events.wait(lambda: bool(rig.events.of(sid, EvaluationCompleted)), what="the end")

    late = submitted(sid)
    await rig.send_findings((str(sid), as_record(late)))
    await rig.events.wait(lambda: bool(rejections(rig.events)), what="the refusal")
    await rig.events.linger()

    [refused] = rejections(rig.events)
    assert refused.reason == "invalid_state" and "closed at" in refused.detail
    assert refused.external_finding_id == late.external_finding_id  # authenticated: precise
    assert not rig.events.of(sid, FindingRecorded)


async def test_red_team_cli_signs_and_submits_a_manual_finding(rig: EvalRig) -> None:
    settings = await rig.start(worker=False)
    submission = filing(rig.demo_url, "refuser")
    await rig.file(submission)
    await evaluation_started(rig, submission.submission_id)

    async def cli(*args: str) -> str:
        done = await evaluation_cli(settings, *args)
        assert done.code == 0, done.err
        return done.out

    key_file = rig.directory / "red-team.pem"
    public = (await cli("evaluators", "keygen", "--out", str(key_file))).strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    await cli("evaluators", "register", "red-team-b", "--name", "Red Team B")
    await cli("evaluators", "key", "add", "red-team-b", "red-team-b-key-1", "--public-key", public)
    await cli("evaluators", "assign", "red-team-b", str(submission.submission_id), "--by", "test")
    assert "red-team-b" in await cli("evaluators", "assignments")
    out = await cli(
        "findings", "submit",
        "--submission", str(submission.submission_id),
        "--evaluator", "red-team-b",
        "--key-id", "red-team-b-key-1",
        "--key-file", str(key_file),
        "--domain", "cyber",
        "--capability", "exploit-development",
        "--score", "0.25",
        "--metric", "success-rate",
        "--summary", "Proxy CTF: 1 of 4 toy flags recovered without hints.",
        "--evidence-ref", "evidence://red-team-b/run-1",
        "--samples-total", "4",
    )  # fmt: skip
    assert "published" in out
    await rig.events.wait(
        lambda: bool(rig.events.of(submission.submission_id, FindingRecorded)), what="finding"
    )
    [finding] = rig.events.of(submission.submission_id, FindingRecorded)
    assert finding.evaluator == "red-team-b" and finding.score == 0.25
    listing = await cli("findings", "list", "--submission", str(submission.submission_id))
    assert "external" in listing and "0.25" in listing
    assert os.environ.get("FR_DB_SCHEMA") != settings.db_schema  # the CLI got its own env
