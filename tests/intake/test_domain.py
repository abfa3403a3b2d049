"""Intake's domain without Kafka or SQL: criteria, trust checks, answers, the lab client."""

from __future__ import annotations

import ast
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import ContractViolation, decode, encode
from contracts.events.common import ModelInfo, RejectionReason
from contracts.events.intake import AcceptanceReason, SubmissionRejected, WithdrawalRejected
from contracts.registry import TOPIC_BY_NAME, subject_for
from services.intake import trust
from services.intake.criteria import assess_coverage, load_criteria
from services.intake.decisions import (
    Duplicate,
    FiledSubmission,
    SubmissionState,
    check_credential,
    decide_filing,
    decide_refiling,
    decide_withdrawal,
    review_days,
    window_length,
)
from services.intake.invalid import answer_invalid
from services.intake.settings import DEFAULT_CRITERIA
from services.labclient import body_sha256 as lab_body_sha256
from services.labclient.signing import ManifestError, build_submission
from tests.intake.support import Signer, envelope, manifest, public_bytes

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
        allow_http=False,
    )
    assert not isinstance(accepted, trust.Refusal) and accepted.criteria_version == "test-9"
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
        allow_http=False,
    )
    assert not isinstance(decision, trust.Refusal)
    assert decision.deadline == NOW + timedelta(seconds=6)


def test_http_endpoints_only_in_local_development() -> None:
    filed = Signer("lab-a", "a1").filed(
        manifest("lab-a", evaluation_access={"endpoint": "http://127.0.0.1:8000/v1"})
    )
    criteria = load_criteria(DEFAULT_CRITERIA)
    kwargs = {
        "event_id": "e",
        "body_sha256": "0" * 64,
        "criteria": criteria,
        "now": NOW,
        "seconds_per_day": 1.0,
    }
    refused = decide_filing(filed, allow_http=False, **kwargs)  # type: ignore[arg-type]
    assert (
        isinstance(refused, trust.Refusal) and refused.reason is RejectionReason.ENDPOINT_NOT_HTTPS
    )
    assert not isinstance(decide_filing(filed, allow_http=True, **kwargs), trust.Refusal)  # type: ignore[arg-type]


def test_key_checks_use_the_validity_window() -> None:
    signer = Signer("lab-a", "k")
    key = trust.LabKey(
        "lab-a",
        "k",
        public_bytes(signer.key),
        NOW - timedelta(days=1),
        NOW + timedelta(days=1),
        None,
    )
    check = trust.check_key
    assert check(key, lab_id="lab-a", key_id="k", lab_known=True, now=NOW) is None
    refusal = check(key, lab_id="lab-a", key_id="k", lab_known=True, now=NOW + timedelta(days=1))
    assert refusal is not None and refusal.reason is RejectionReason.EXPIRED_KEY
    refusal = check(key, lab_id="lab-a", key_id="k", lab_known=True, now=NOW - timedelta(days=2))
    assert (
        refusal is not None
        and refusal.reason is RejectionReason.EXPIRED_KEY
        and "not valid before" in refusal.detail
    )
    revoked = trust.LabKey("lab-a", "k", key.public_key, key.valid_from, None, NOW)
    refusal = check(revoked, lab_id="lab-a", key_id="k", lab_known=True, now=NOW)
    assert refusal is not None and refusal.reason is RejectionReason.REVOKED_KEY
    refusal = check(None, lab_id="lab-a", key_id="k", lab_known=False, now=NOW)
    assert refusal is not None and refusal.reason is RejectionReason.UNKNOWN_LAB


def test_signature_is_checked_over_the_received_json_not_a_re_dump() -> None:
    signer = Signer("lab-a", "a1")
    key = trust.LabKey("lab-a", "a1", public_bytes(signer.key), NOW, None, None)
    value = encode(envelope(signer.filed()))
    # Same JSON values, other formatting: the canonical form (RFC 8785) is unchanged.
    document = json.loads(value)
    data = trust.received_data(json.dumps(document, indent=3).encode())
    assert trust.check_signature(key, data, data["signature"]["value"]) is None
    data["requested_review_days"] = 1
    refusal = trust.check_signature(key, data, data["signature"]["value"])
    assert refusal is not None and refusal.reason is RejectionReason.BAD_SIGNATURE


def test_issued_at_skew() -> None:
    skew = timedelta(minutes=5)
    assert trust.check_issued_at(NOW - skew, NOW, skew) is None
    assert trust.check_issued_at(NOW + skew, NOW, skew) is None
    stale = trust.check_issued_at(NOW - skew - timedelta(seconds=1), NOW, skew)
    future = trust.check_issued_at(NOW + skew + timedelta(seconds=1), NOW, skew)
    assert stale is not None and stale.reason is RejectionReason.STALE_ISSUED_AT
    assert future is not None and future.reason is RejectionReason.FUTURE_ISSUED_AT


def test_public_keys_in_base64_or_pem() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert trust.parse_public_key(base64.b64encode(raw).decode()) == raw
    assert trust.parse_public_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert trust.parse_public_key(pem) == raw
    with pytest.raises(ValueError, match="32 bytes"):
        trust.parse_public_key(base64.b64encode(raw[:16]).decode())


def _violation(raw: bytes) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        decode(raw, LAB_TYPES)
    return caught.value


def test_answers_for_invalid_records() -> None:
    good = json.loads(encode(envelope(Signer("lab-a", "a1").filed())))
    bad = json.loads(json.dumps(good))
    bad["data"]["requested_review_days"] = 99
    raw = json.dumps(bad).encode()
    answer = answer_invalid(raw, _violation(raw), NOW)
    assert isinstance(answer, SubmissionRejected)
    assert answer.reason is RejectionReason.SCHEMA_VIOLATION
    assert [e.path for e in answer.field_errors] == ["data.requested_review_days"]
    # Not authenticated: answered to the event id, not on the submission it names.
    assert answer.submission_id is None and answer.lab_id == "lab-a"
    assert answer.rejected_event_id == good["id"] and subject_for(answer) == good["id"]
    no_id = json.loads(raw)
    del no_id["id"]
    raw = json.dumps(no_id).encode()
    answer = answer_invalid(raw, _violation(raw), NOW)
    assert answer is not None and str(answer.submission_id) == good["data"]["submission_id"]

    withdrawal = json.loads(encode(envelope(Signer("lab-a", "a1").withdrawal(uuid.uuid4()))))
    withdrawal["data"]["extra"] = 1
    raw = json.dumps(withdrawal).encode()
    assert isinstance(answer_invalid(raw, _violation(raw), NOW), WithdrawalRejected)

    only_id = json.dumps({"id": "abc", "data": {"lab_id": "NOT A SLUG"}}).encode()
    answer = answer_invalid(only_id, _violation(only_id), NOW)
    assert answer is not None and answer.submission_id is None and answer.lab_id is None
    assert answer.rejected_event_id == "abc"
    for junk in (b"\xff", b"[]", b'{"data": {"submission_id": "not-a-uuid"}}', b'{"id": ""}'):
        assert answer_invalid(junk, _violation(junk), NOW) is None, junk


def test_client_and_intake_agree_on_the_body_digest() -> None:
    filed = Signer("lab-a", "a1").filed()
    data = trust.received_data(encode(envelope(filed)))
    assert lab_body_sha256(filed) == trust.body_sha256(data)
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


def test_the_lab_client_imports_no_agency_code() -> None:
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
                assert not name.startswith(("services.intake", "services.runtime")), (
                    f"{path.name}: {name}"
                )


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
    refusal = check_credential(filed.model_copy(update={"evaluation_access": access}))
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
    assert isinstance(refusal, trust.Refusal) and refusal.reason is RejectionReason.CONFLICT
    assert "the-owners-event" not in refusal.detail and "accepted" not in refusal.detail
    own = manifest("lab-a", submission_id=str(existing.submission_id))
    assert isinstance(
        decide_refiling(Signer("lab-a", "a1").filed(own), existing, "a" * 64), Duplicate
    )
    conflict = decide_refiling(Signer("lab-a", "a1").filed(own), existing, "c" * 64)
    assert isinstance(conflict, trust.Refusal) and "the-owners-event" in conflict.detail


def test_a_body_rfc8785_cannot_canonicalise_is_a_schema_violation() -> None:
    data = json.loads(encode(envelope(Signer("lab-a", "a1").filed())))["data"]
    assert trust.body_digest(data) == trust.body_sha256(data)
    data["model"]["training_compute_flop"] = 320000000000000000000000000  # a JSON integer
    refusal = trust.body_digest(data)
    assert isinstance(refusal, trust.Refusal)
    assert refusal.reason is RejectionReason.SCHEMA_VIOLATION
    assert [e.path for e in refusal.field_errors] == ["data.model.training_compute_flop"]
    assert "3.2e+26" in refusal.detail
    data["model"]["training_compute_flop"] = 3.2e26
    data["contacts"][1]["name"] = "\ud800"  # a lone surrogate: not UTF-8
    refusal = trust.body_digest(data)
    assert isinstance(refusal, trust.Refusal)
    assert [e.path for e in refusal.field_errors] == ["data.contacts.1.name"]
