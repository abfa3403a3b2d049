"""External evaluators' signed findings: recorded when valid, answered with a reason if not."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import encode, make_event
from contracts.events import (
    EvaluationStarted,
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
)
from tests.contracts.examples import EVALUATOR_ID, example, sign
from tests.evaluation.rig import EvalRig, accepted, assign, process_env, register_example_key
from tests.kit import TopicWatcher, read_topic, wait_for


def submitted(submission_id: uuid.UUID, **overrides: Any) -> ExternalFindingSubmitted:
    return example(ExternalFindingSubmitted, submission_id=submission_id, **overrides)


def as_record(finding: ExternalFindingSubmitted, subject: str | None = None) -> bytes:
    subject = subject or str(finding.submission_id)
    return encode(make_event(finding, source="/evaluators/red-team", subject=subject))


async def evaluation_started(rig: EvalRig, sid: uuid.UUID) -> None:
    """Intake and findings are different topics: wait until the submission is known."""
    await rig.events.wait(lambda: bool(rig.events.of(sid, EvaluationStarted)), what="planning")


def rejections(reader: TopicWatcher) -> list[ExternalFindingRejected]:
    return [e.data for e in reader.events() if isinstance(e.data, ExternalFindingRejected)]


async def test_external_findings_are_validated_recorded_or_rejected(rig: EvalRig) -> None:
    settings = await rig.start(worker=False)  # no Inspect runs
    sid = await refuser_planned(rig)

    good = submitted(sid)
    schema_violation = json.loads(as_record(submitted(sid)))
    schema_violation["data"]["score"] = 1.5
    forged = sign(submitted(sid), Ed25519PrivateKey.generate())
    stranger = submitted(uuid.uuid4())
    unknown_key = submitted(sid, signature=good.signature.model_copy(update={"key_id": "nokey"}))
    unknown_evaluator = submitted(sid, evaluator_id="unregistered-red-team")  # no key at all
    conflicting = submitted(sid, score=0.9)  # same external_finding_id as ``good``
    key = str(sid)
    cases: list[tuple[bytes, str | None]] = [
        (as_record(good), None),
        (as_record(good), "replayed_nonce"),  # the same signed data again
        (json.dumps(schema_violation).encode(), "schema_violation"),
        (as_record(forged), "bad_signature"),
        (as_record(stranger), "not_assigned"),  # exists or not: it isn't this evaluator's
        (as_record(sign(unknown_key)), "unknown_key"),
        (as_record(unknown_evaluator), "unknown_evaluator"),
        (as_record(submitted(sid), subject=str(uuid.uuid4())), "subject_mismatch"),
        (as_record(conflicting), "conflict"),
    ]
    await rig.send_findings(*((key, value) for value, _ in cases))
    await rig.send_findings((key, b"\x00not json at all"))

    expected_rejections = [reason for _, reason in cases if reason]
    reader = rig.events
    await reader.wait(
        lambda: len(rejections(reader)) >= len(expected_rejections), what="every rejection"
    )
    await reader.linger()

    [finding] = reader.of(sid, FindingRecorded)
    assert finding.method == "manual" and finding.suite_id == "external"
    assert finding.evaluator == EVALUATOR_ID
    assert finding.external_finding_id == good.external_finding_id
    assert finding.score == good.score and finding.summary == good.summary
    answers = rejections(reader)
    assert sorted(r.reason.value for r in answers) == sorted(expected_rejections), "one each"
    by_reason = {r.reason.value: r for r in answers}
    violation = by_reason["schema_violation"]
    assert [e.path for e in violation.field_errors] == ["data.score"]
    assert violation.submission_id == sid and violation.rejected_event_id
    assert by_reason["not_assigned"].submission_id == stranger.submission_id
    assert by_reason["unknown_evaluator"].evaluator_id == "unregistered-red-team"
    for answer in answers:
        assert answer.detail and answer.rejected_event_id

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


async def test_nonces_are_purged_once_no_fresh_signature_can_carry_them(rig: EvalRig) -> None:
    await rig.start(
        worker=False,
        evaluation_signature_max_age_s=3.0,
        evaluation_signature_max_future_s=1.0,
        evaluation_nonce_purge_interval_s=0.2,
    )
    sid = await refuser_planned(rig)
    finding = submitted(sid)
    await rig.send_findings((str(sid), as_record(finding)))
    await rig.events.wait(lambda: bool(rig.events.of(sid, FindingRecorded)), what="the finding")

    async def nonces() -> list[str]:
        rows = await rig.fetch("SELECT nonce FROM signature_nonces")
        return [r["nonce"] for r in rows]

    assert await nonces() == [finding.signature.nonce]

    async def purged() -> bool:
        return not await nonces()

    await wait_for(purged, timeout=15, what="the nonce to be purged after max age + max future")
    # The signature it guarded is no longer fresh either: a replay (the signed data in a
    # new envelope) is still refused.
    await rig.send_findings((str(sid), as_record(finding)))
    reader = rig.events
    await reader.wait(
        lambda: bool(reader.of(sid, ExternalFindingRejected)), what="the replay's rejection"
    )
    await reader.linger()
    [rejected] = reader.of(sid, ExternalFindingRejected)
    assert rejected.reason == "stale_issued_at"
    assert len(reader.of(sid, FindingRecorded)) == 1


async def refuser_planned(rig: EvalRig) -> uuid.UUID:
    """The example evaluator's key registered, a submission (refuser) planned, and the
    evaluator assigned to it: its id."""
    await register_example_key(rig)
    submission = accepted(rig.demo_url, "refuser")
    await rig.send_intake(submission)
    await evaluation_started(rig, submission.submission_id)
    await assign(rig, EVALUATOR_ID, submission.submission_id)
    return submission.submission_id


async def test_red_team_cli_signs_and_submits_a_manual_finding(rig: EvalRig) -> None:
    settings = await rig.start(worker=False)
    submission = accepted(rig.demo_url, "refuser")
    await rig.send_intake(submission)
    await evaluation_started(rig, submission.submission_id)
    env = process_env(settings)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "services.evaluation.cli", *args],
            env=env | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    key_file = rig.directory / "red-team.pem"
    public = cli("evaluators", "keygen", "--out", str(key_file)).strip()
    cli("evaluators", "add-key", "red-team-b", "red-team-b-key-1", public)
    cli("evaluators", "assign", "red-team-b", str(submission.submission_id), "--by", "test")
    assert "red-team-b" in cli("evaluators", "assignments")
    out = cli(
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
    listing = cli("findings", "list", "--submission", str(submission.submission_id))
    assert "external" in listing and "0.25" in listing
    assert os.environ.get("FR_DB_SCHEMA") != settings.db_schema  # the CLI got its own env
