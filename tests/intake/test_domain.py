"""Intake's domain without Kafka or SQL: criteria, decisions, answers, the lab client.

(The trust checks themselves — keys, signatures, freshness, digests — are the trust
library's, tested in tests/trust.)"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import ContractViolation, decode, encode
from contracts.events.common import ModelInfo, RejectionReason
from contracts.events.intake import AcceptanceReason, SubmissionRejected, WithdrawalRejected
from contracts.registry import TOPIC_BY_NAME, subject_for
from services.intake.criteria import assess_coverage, load_criteria
from services.intake.decisions import (
    Duplicate,
    decide_filing,
    decide_refiling,
    decide_withdrawal,
    invalid_input_refusal,
    rejection,
    review_days,
    window_length,
)
from services.intake.model import FiledSubmission, SubmissionState
from services.intake.settings import DEFAULT_CRITERIA
from services.labclient import body_sha256 as lab_body_sha256
from services.labclient.signing import ManifestError, build_submission
from services.trust.endpoints import endpoint_refusal
from services.trust.refusal import Refusal
from services.trust.unverified import SignedInput, read_addressing, read_signed
from tests.intake.support import Signer, envelope
from tests.kit.manifests import manifest

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LAB_TYPES = TOPIC_BY_NAME["lab.submissions"].event_types


def model(compute: float, capabilities: list[str]) -> ModelInfo:
    document = manifest("lab-a")["model"] | {
        "training_compute_flop": compute,
        "declared_capabilities": capabilities,
    }
    return ModelInfo.model_validate(document)


def test_the_shipped_criteria_file_is_versioned_config() -> None:
    criteria = load_criteria(DEFAULT_CRITERIA)
    assert criteria.version == "2026.1"
    assert criteria.training_compute_flop_at_least == 1e26
    assert "cyber-offense" in criteria.covered_capabilities


@pytest.mark.parametrize(
    ("compute", "capabilities", "reason"),
    [
        (1e26, [], AcceptanceReason.COVERED_BY_COMPUTE),
        (3e26, ["chat"], AcceptanceReason.COVERED_BY_COMPUTE),
        (1e24, ["bio-design"], AcceptanceReason.COVERED_BY_CAPABILITY),
        (2e26, ["self-exfiltration"], AcceptanceReason.COVERED_BY_COMPUTE_AND_CAPABILITY),
        (9.99e25, ["chat", "code-generation"], None),
    ],
)
def test_coverage(compute: float, capabilities: list[str], reason: AcceptanceReason | None) -> None:
    assert (
        assess_coverage(model(compute, capabilities), load_criteria(DEFAULT_CRITERIA)).reason
        == reason
    )


def test_criteria_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "criteria.yaml"
    path.write_text(
        'version: "test-9"\ntraining_compute_flop_at_least: 1.0e+27\ncovered_capabilities: [chat]\n'
    )
    criteria = load_criteria(path)
    assert assess_coverage(model(3e26, []), criteria).reason is None
    assert (
        assess_coverage(model(3e26, ["chat"]), criteria).reason
        is AcceptanceReason.COVERED_BY_CAPABILITY
    )
    filed = Signer("lab-a", "a1").filed(
        manifest("lab-a", model={"declared_capabilities": ["chat"]})
    )
    accepted = decide_filing(
        filed,
        event_id="e1",
        body_sha256="0" * 64,
        criteria=criteria,
        now=NOW,
        seconds_per_day=86_400,
        signature_sha256="1" * 64,
        endpoint_refusal=None,
    )
    assert not isinstance(accepted, Refusal) and accepted.criteria_version == "test-9"
    path.write_text("version: x\ntraining_compute_flop_at_least: 1\nsurprise: 1\n")
    with pytest.raises(ValueError, match="surprise"):
        load_criteria(path)


def test_window_length_and_cap() -> None:
    assert review_days(14) == 14 and review_days(45) == 30
    assert window_length(30, 86_400) == timedelta(days=30)
    assert window_length(30, 2.0) == timedelta(seconds=60)  # the demo's 2-second days
    filed = Signer("lab-a", "a1").filed(manifest("lab-a", requested_review_days=3))
    decision = decide_filing(
        filed,
        event_id="e1",
        body_sha256="0" * 64,
        criteria=load_criteria(DEFAULT_CRITERIA),
        now=NOW,
        seconds_per_day=2.0,
        signature_sha256="1" * 64,
        endpoint_refusal=None,
    )
    assert not isinstance(decision, Refusal)
    assert decision.deadline == NOW + timedelta(seconds=6)
    assert decision.signature_sha256 == "1" * 64, "bound to the signature it answers"


def test_the_endpoint_policys_refusal_refuses_the_filing() -> None:
    filed = Signer("lab-a", "a1").filed()
    refused = decide_filing(
        filed,
        event_id="e",
        body_sha256="0" * 64,
        signature_sha256="1" * 64,
        criteria=load_criteria(DEFAULT_CRITERIA),
        now=NOW,
        seconds_per_day=1.0,
        endpoint_refusal=endpoint_refusal("http://10.0.0.1/v1", "10.0.0.1 is private"),
    )
    assert isinstance(refused, Refusal) and refused.reason is RejectionReason.ENDPOINT_NOT_ALLOWED


def _violation(raw: bytes) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        decode(raw, LAB_TYPES)
    return caught.value


def _invalid_answer(raw: bytes) -> SubmissionRejected | WithdrawalRejected | None:
    """What the handler's on_invalid answers (handlers.IntakeHandlers.invalid), pure part."""
    where = read_addressing(raw, principal_field="lab_id", subject_field="submission_id")
    if not where.addressable:
        return None
    kind = (
        WithdrawalRejected
        if where.event_type == "frontier_review.lab.WithdrawalRequested"
        else SubmissionRejected
    )
    return rejection(
        kind,
        invalid_input_refusal(_violation(raw)),
        sender=None,
        submission_id=uuid.UUID(where.subject_id) if where.subject_id else None,
        lab_id=where.principal_id,
        event_id=where.event_id,
        now=NOW,
        trusted=False,
    )


def test_answers_for_invalid_records() -> None:
    good = json.loads(encode(envelope(Signer("lab-a", "a1").filed())))
    bad = json.loads(json.dumps(good))
    bad["data"]["requested_review_days"] = 99
    raw = json.dumps(bad).encode()
    answer = _invalid_answer(raw)
    assert isinstance(answer, SubmissionRejected)
    assert answer.reason is RejectionReason.SCHEMA_VIOLATION, "a shape error is told as it is"
    assert [e.path for e in answer.field_errors] == ["data.requested_review_days"]
    # Not authenticated: answered to the event id, not on the submission it names.
    assert answer.submission_id is None and answer.lab_id == "lab-a"
    assert answer.signature_sha256 is None, "bound to no signature"
    assert answer.rejected_event_id == good["id"] and subject_for(answer) == good["id"]
    no_id = json.loads(raw)
    del no_id["id"]
    raw = json.dumps(no_id).encode()
    answer = _invalid_answer(raw)
    assert answer is not None and str(answer.submission_id) == good["data"]["submission_id"]

    withdrawal = json.loads(encode(envelope(Signer("lab-a", "a1").withdrawal(uuid.uuid4()))))
    withdrawal["data"]["extra"] = 1
    raw = json.dumps(withdrawal).encode()
    assert isinstance(_invalid_answer(raw), WithdrawalRejected)

    only_id = json.dumps({"id": "abc", "data": {"lab_id": "NOT A SLUG"}}).encode()
    answer = _invalid_answer(only_id)
    assert answer is not None and answer.submission_id is None and answer.lab_id is None
    assert answer.rejected_event_id == "abc"
    upper = json.loads(json.dumps(good))
    del upper["id"]
    upper["data"]["submission_id"] = upper["data"]["submission_id"].upper()
    assert _invalid_answer(json.dumps(upper).encode()) is None, "only a canonical id addresses"
    nul = json.dumps({"id": "a\u0000b", "data": {}}).encode()
    for junk in (b"\xff", b"[]", b'{"data": {"submission_id": "not-a-uuid"}}', b'{"id": ""}', nul):
        assert _invalid_answer(junk) is None, junk


def test_refusals_to_unauthenticated_senders_say_only_authentication_failed() -> None:
    filed = Signer("lab-a", "a1").filed()
    precise = Refusal(RejectionReason.REVOKED_KEY, "key a1 of lab lab-a was revoked at 12:00")
    told = rejection(
        SubmissionRejected,
        precise,
        sender=None,
        submission_id=filed.submission_id,
        lab_id="lab-a",
        event_id="e",
        now=NOW,
        trusted=False,
    )
    assert told.reason is RejectionReason.AUTHENTICATION_FAILED
    assert "revoked" not in told.detail and "12:00" not in told.detail
    assert told.submission_id is None


def test_client_and_intake_agree_on_the_body_digest() -> None:
    filed = Signer("lab-a", "a1").filed()
    signed = read_signed(encode(envelope(filed)), principal_field="lab_id")
    assert isinstance(signed, SignedInput)
    assert lab_body_sha256(filed) == signed.digest
    resigned = Signer("lab-a", "a1", Signer("lab-a", "a1").key).filed(
        json.loads(filed.model_dump_json(exclude={"signature"}))
    )
    assert lab_body_sha256(resigned) == lab_body_sha256(filed)


def test_manifest_errors_name_the_fields() -> None:
    document = manifest("lab-a")
    del document["submission_id"]
    with pytest.raises(ManifestError, match="submission_id"):
        build_submission(document, Ed25519PrivateKey.generate(), "k")
    document = manifest("lab-a", requested_review_days=31)
    with pytest.raises(ManifestError) as caught:
        build_submission(document, Ed25519PrivateKey.generate(), "k")
    assert any(e.startswith("requested_review_days") for e in caught.value.errors)


def test_the_lab_client_imports_no_agency_code_but_how_to_connect() -> None:
    package = Path(__file__).parents[2] / "services" / "labclient"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                allowed = name in {
                    "services.runtime.kafka",
                    "services.trust.tokens",
                } or name.startswith("services.labclient")
                assert allowed or not name.startswith(("services.", "asyncpg")), (
                    f"{path.name}: {name}"
                )
    # And loading it loads nothing else of the agency's (services.runtime is lazy).
    probe = (
        "import sys, services.labclient.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('services.', 'asyncpg'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    modules = [m for m in ast.literal_eval(loaded) if not m.startswith("services.labclient")]
    assert modules == [
        "services.runtime",
        "services.runtime.kafka",
        "services.trust",
        "services.trust.tokens",
    ]


@pytest.mark.parametrize(
    ("ref", "owned"),
    [
        ("labs/lab-a/eval-api-key", True),
        ("labs/lab-a/team/eval-api-key", True),
        ("labs/lab-a/..key", True),  # a name, not a parent directory
        ("labs/lab-b/eval-api-key", False),
        ("labs/lab-ab/eval-api-key", False),
        ("labs/lab-a", False),
        ("labs/lab-a/", False),
        ("labs/lab-a//eval-api-key", False),
        ("labs/lab-a/../lab-b/eval-api-key", False),
        ("labs/lab-a/./eval-api-key", False),
        ("/labs/lab-a/eval-api-key", False),
        ("eval-api-key", False),
        ("lab-a/eval-api-key", False),
    ],
)
def test_a_credential_must_be_the_labs_own(ref: str, owned: bool) -> None:
    filed = Signer("lab-a", "a1").filed()
    access = filed.evaluation_access.model_copy(update={"credential_ref": ref})  # unvalidated
    decision = decide_filing(
        filed.model_copy(update={"evaluation_access": access}),
        event_id="e",
        body_sha256="0" * 64,
        signature_sha256="1" * 64,
        criteria=load_criteria(DEFAULT_CRITERIA),
        now=NOW,
        seconds_per_day=1.0,
        endpoint_refusal=None,
    )
    refusal = decision if isinstance(decision, Refusal) else None
    if owned:
        assert refusal is None
    else:
        assert refusal is not None and refusal.reason is RejectionReason.CREDENTIAL_NOT_OWNED
        assert repr(ref) in refusal.detail and "labs/lab-a/" in refusal.detail
        assert [e.path for e in refusal.field_errors] == ["data.evaluation_access.credential_ref"]


def _filed_submission(lab_id: str, state: SubmissionState, deadline: datetime) -> FiledSubmission:
    return FiledSubmission(
        submission_id=uuid.uuid4(),
        lab_id=lab_id,
        state=state,
        body_sha256="a" * 64,
        filed_event_id="the-owners-event",
        model_id=f"{lab_id}/frontier-1@2026-01-10",
        deadline=deadline,
        reason="covered_by_compute",
        detail="-",
    )


def test_withdrawal_is_refused_from_the_deadline_on() -> None:
    existing = _filed_submission("lab-a", SubmissionState.ACCEPTED, NOW)
    request = Signer("lab-a", "a1").withdrawal(existing.submission_id)
    before = NOW - timedelta(microseconds=1)
    assert decide_withdrawal(request, existing, before) is None
    for now in (NOW, NOW + timedelta(seconds=1)):
        refusal = decide_withdrawal(request, existing, now)
        assert refusal is not None and refusal.reason is RejectionReason.INVALID_STATE
        assert f"window closed at {NOW.isoformat()}" in refusal.detail


def test_refiling_another_labs_id_reveals_nothing_of_it() -> None:
    existing = _filed_submission("lab-a", SubmissionState.ACCEPTED, NOW)
    document = manifest("lab-b", submission_id=str(existing.submission_id))
    refusal = decide_refiling(Signer("lab-b", "b1").filed(document), existing, "b" * 64)
    assert isinstance(refusal, Refusal) and refusal.reason is RejectionReason.CONFLICT
    assert "the-owners-event" not in refusal.detail and "accepted" not in refusal.detail
    own = manifest("lab-a", submission_id=str(existing.submission_id))
    assert isinstance(
        decide_refiling(Signer("lab-a", "a1").filed(own), existing, "a" * 64), Duplicate
    )
    conflict = decide_refiling(Signer("lab-a", "a1").filed(own), existing, "c" * 64)
    assert isinstance(conflict, Refusal) and "the-owners-event" in conflict.detail
