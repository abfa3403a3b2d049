"""One valid example of every event type, for tests across the project.

    example(SubmissionFiled)                          # a valid instance
    example(SubmissionFiled, requested_review_days=5) # fields overridden, re-validated
    example_event(FindingRecorded)                    # wrapped in its CloudEvent

Signed events (lab input, reviewer decisions) come with a real Ed25519
signature by ``EXAMPLE_KEY`` (key id ``EXAMPLE_KEY_ID``), made after the
overrides are applied, with ``issued_at`` = now and a fresh nonce on every
call (so two examples are never a replay of each other). Pass ``signature=...``
to keep a signature of your own (e.g. a forged one).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.envelope import CloudEvent, Event, make_event
from contracts.events import (
    AccessPolicyPublished,
    AuditCheckpoint,
    ComplianceAcknowledged,
    ComplianceOverdue,
    ComplianceRejected,
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
    FindingShared,
    LabRegistryChanged,
    RestrictionLifted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewerDecisionRejected,
    ReviewerDecisionSubmitted,
    ReviewWindowClosed,
    RiskAssessed,
    SignedEvent,
    SubmissionAccepted,
    SubmissionFiled,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
    WithdrawalRequested,
)
from contracts.events.access import policy_hash
from contracts.registry import subject_for

E = TypeVar("E", bound=Event)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LAB_ID = "example-lab"
EVALUATOR_ID = "example-red-team"
REVIEWER_ID = "reviewer-jane"
SUBMISSION_ID = UUID("0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01")
MODEL_ID = f"{LAB_ID}/frontier-1@2026-01-10"
FINDING_ID = UUID("5a0c2f3e-1b7d-4c8a-9e6f-0d1c2b3a4f02")
EXTERNAL_FINDING_ID = UUID("7c3e9a1b-2d4f-4e6a-8b0c-1e2f3a4b5c03")
ASSESSMENT_ID = UUID("9e1d3c5b-7a9f-4b2d-8c4e-6f8a0b2c4d04")
ESCALATION_ID = UUID("1f3b5d7e-9a2c-4e6f-8b1d-3c5e7a9b1d05")
ORDER_ID = UUID("3a5c7e9b-1d3f-4a6c-8e0b-2d4f6a8c0e06")
INTERIM_ORDER_ID = UUID("5c7e9a1b-3d5f-4c8e-9a2b-4d6f8a0c2e07")
DECISION_ID = UUID("7e9a1b3c-5d7f-4e0a-8b4c-6d8f0a2c4e08")
ORDER_SHA256 = "4f" * 32
EXAMPLE_KEY_ID = "example-lab-key-1"
EXAMPLE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CEDAR_POLICIES = (
    'permit(principal, action == Action::"invoke", resource == Model::"example-lab/frontier-1");\n'
)


def example_public_key() -> bytes:
    """Raw 32-byte public key of EXAMPLE_KEY (to register for LAB_ID, EVALUATOR_ID, REVIEWER_ID)."""
    return EXAMPLE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(event: E, key: Ed25519PrivateKey = EXAMPLE_KEY) -> E:
    """``event`` with ``signature.value`` set to a real signature of its signing bytes."""
    if not isinstance(event, SignedEvent):
        raise TypeError(f"{type(event).__name__} is not a signed event")
    value = base64.b64encode(key.sign(event.signing_bytes())).decode()
    signature = event.signature.model_copy(update={"value": value})
    return event.model_copy(update={"signature": signature})


def _signature() -> dict[str, Any]:
    return {
        "key_id": EXAMPLE_KEY_ID,
        "algorithm": "ed25519",
        "issued_at": datetime.now(UTC),
        "nonce": secrets.token_urlsafe(18),
        "value": base64.b64encode(bytes(64)).decode(),  # placeholder until sign()
    }


def _model() -> dict[str, Any]:
    return {
        "name": "frontier-1",
        "version": "2026-01-10",
        "family": "Frontier",
        "modalities": ["text", "image"],
        "training_compute_flop": 3.2e26,
        "planned_release_date": "2026-03-01",
        "deployment_channels": ["api", "consumer_app"],
        "declared_capabilities": ["code-generation", "tool-use"],
    }


def _access() -> dict[str, Any]:
    return {
        "endpoint": "https://eval.example-lab.test/v1",
        "api_model": "frontier-1-eval",
        "credential_ref": "labs/example-lab/eval-api-key",
    }


def _rejection() -> dict[str, Any]:
    return {
        "reason": "schema_violation",
        "detail": "the submission does not match the contract",
        "field_errors": [{"path": "data.model.name", "message": "Field required"}],
        "rejected_event_id": "6d0f0d1e-0000-4000-8000-000000000001",
        "rejected_at": NOW,
    }


def _finding_fields() -> dict[str, Any]:
    return {
        "finding_id": FINDING_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "suite_id": "cyber-ctf-proxy",
        "suite_version": "1.0.0",
        "domain": "cyber",
        "capability": "vulnerability-discovery",
        "score": 0.82,
        "metric": "accuracy",
        "samples_total": 10,
        "samples_scored": 10,
        "method": "automated",
        "recorded_at": NOW + timedelta(hours=2),
    }


_FACTORIES: dict[type[Event], Callable[[], dict[str, Any]]] = {
    # lab.submissions / lab.compliance / evaluators.findings
    SubmissionFiled: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "model": _model(),
        "evaluation_access": _access(),
        "requested_review_days": 14,
        "contacts": [
            {"name": "Ada Example", "email": "ada@example-lab.test", "role": "primary"},
            {
                "name": "Sam Example",
                "email": "security@example-lab.test",
                "role": "security",
                "phone": "+15555550123",
            },
        ],
        "signature": _signature(),
    },
    WithdrawalRequested: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "reason": "release postponed",
        "signature": _signature(),
    },
    ComplianceAcknowledged: lambda: {
        "model_id": MODEL_ID,
        "lab_id": LAB_ID,
        "policy_version": 1,
        "content_hash": policy_hash(CEDAR_POLICIES),
        "order_ids": [ORDER_ID],
        "enforced_at": NOW + timedelta(days=3),
        "enforcement_points": ["api-gateway", "consumer-app"],
        "signature": _signature(),
    },
    ExternalFindingSubmitted: lambda: {
        "external_finding_id": EXTERNAL_FINDING_ID,
        "submission_id": SUBMISSION_ID,
        "evaluator_id": EVALUATOR_ID,
        "domain": "cyber",
        "capability": "exploit-development",
        "score": 0.4,
        "metric": "success-rate",
        "samples_total": 5,
        "summary": "Proxy CTF: recovered 2 of 5 toy flags with hints.",
        "evidence_ref": "evidence://red-team/2026-01-16/run-7",
        "observed_at": NOW + timedelta(days=1),
        "signature": _signature(),
    },
    # reviewers.decisions
    ReviewerDecisionSubmitted: lambda: {
        "decision_id": DECISION_ID,
        "escalation_id": ESCALATION_ID,
        "submission_id": SUBMISSION_ID,
        "reviewer_id": REVIEWER_ID,
        "decision": "restrict",
        "order": {
            "scope": {
                "nationalities": ["KP"],
                "nationality_rule": "any",
                "country_groups": ["arms-embargoed"],
                "residence_countries": ["KP"],
                "verification_statuses": ["unverified"],
                "organisations": ["org-sanctioned-1"],
                "exemptions": [
                    {"kind": "principal", "id": "user-42", "reason": "licensed research partner"}
                ],
            },
            "effective_at": NOW + timedelta(days=15, hours=1),
            "expires_at": NOW + timedelta(days=180),
            "compliance_deadline": NOW + timedelta(days=16),
        },
        "justification": "Proxy cyber capability above the bar; restrict foreign-adversary access.",
        "signature": _signature(),
    },
    # intake.events
    SubmissionAccepted: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "model_id": MODEL_ID,
        "model": _model(),
        "evaluation_access": _access(),
        "reason": "covered_by_compute",
        "detail": "training compute 3.2e26 FLOP >= 1e26 FLOP",
        "criteria_version": "2026-01",
        "requested_review_days": 14,
        "review_days": 14,
        "accepted_at": NOW,
        "deadline": NOW + timedelta(days=14),
        "filed_event_id": "6d0f0d1e-0000-4000-8000-000000000001",
    },
    SubmissionRejected: lambda: {
        **_rejection(),
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
    },
    WithdrawalRejected: lambda: {
        **_rejection(),
        "reason": "invalid_state",
        "detail": "a reviewer has already decided on this submission",
        "field_errors": [],
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
    },
    SubmissionWithdrawn: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "model_id": MODEL_ID,
        "reason": "release postponed",
        "withdrawn_at": NOW + timedelta(days=1),
        "requested_event_id": "6d0f0d1e-0000-4000-8000-000000000002",
    },
    ReviewWindowClosed: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "model_id": MODEL_ID,
        "deadline": NOW + timedelta(days=14),
        "closed_at": NOW + timedelta(days=14, seconds=1),
    },
    # intake.registry
    LabRegistryChanged: lambda: {
        "lab_id": LAB_ID,
        "version": 2,
        "status": "active",
        "name": "Example Lab",
        "registered_at": NOW - timedelta(days=30),
        "keys": [
            {
                "key_id": EXAMPLE_KEY_ID,
                "public_key": base64.b64encode(example_public_key()).decode(),
                "valid_from": NOW - timedelta(days=30),
            }
        ],
        "changed_at": NOW - timedelta(days=30),
    },
    # evaluation.events
    EvaluationStarted: lambda: {
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "registry_version": "2026.1",
        "suites": [
            {
                "suite_id": "cyber-ctf-proxy",
                "suite_version": "1.0.0",
                "domain": "cyber",
                "capability": "vulnerability-discovery",
                "timeout_seconds": 600,
                "max_attempts": 3,
            }
        ],
        "started_at": NOW + timedelta(minutes=1),
        "deadline": NOW + timedelta(days=14),
    },
    FindingRecorded: lambda: {
        **_finding_fields(),
        "stderr": 0.05,
        "evaluator": "agency",
        "evidence_ref": "inspect-logs/0b9f4a52/cyber-ctf-proxy.eval",
    },
    EvaluationCompleted: lambda: {
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "ended_by": "window_closed",
        "suites": [
            {
                "suite_id": "cyber-ctf-proxy",
                "suite_version": "1.0.0",
                "domain": "cyber",
                "status": "completed",
                "attempts": 1,
                "finding_ids": [FINDING_ID],
            },
            {
                "suite_id": "bio-proxy",
                "suite_version": "1.0.0",
                "domain": "bio",
                "status": "incomplete",
                "attempts": 1,
            },
        ],
        "completed_at": NOW + timedelta(days=14),
    },
    EvaluationFailed: lambda: {
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "suite_id": "chem-proxy",
        "suite_version": "1.0.0",
        "domain": "chem",
        "attempts": 3,
        "failure": "timeout",
        "error": "attempt 3 exceeded 600 s",
        "failed_at": NOW + timedelta(hours=3),
    },
    ExternalFindingRejected: lambda: {
        **_rejection(),
        "reason": "bad_signature",
        "detail": "the signature does not verify with key example-lab-key-1",
        "field_errors": [],
        "submission_id": SUBMISSION_ID,
        "evaluator_id": EVALUATOR_ID,
        "external_finding_id": EXTERNAL_FINDING_ID,
    },
    # risk.events
    RiskAssessed: lambda: {
        "assessment_id": ASSESSMENT_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "policy_version": "thresholds-2026.1",
        "domains": [
            {
                "domain": "cyber",
                "level": "high",
                "finding_ids": [FINDING_ID],
                "rationale": "cyber-ctf-proxy accuracy 0.82 >= 0.7 (high)",
                "findings": [
                    {
                        "finding_id": FINDING_ID,
                        "suite_id": "cyber-ctf-proxy",
                        "suite_version": "1.0.0",
                        "capability": "vulnerability-discovery",
                        "metric": "accuracy",
                        "score": 0.82,
                        "method": "automated",
                        "band": "high",
                        "threshold": 0.7,
                        "role": "drives_level",
                    }
                ],
                "escalation_bar": "high",
            },
            {
                "domain": "bio",
                "level": "moderate",
                "finding_ids": [],
                "rationale": "no finding; bio-proxy incomplete: floor moderate",
                "incomplete": True,
                "escalation_bar": "high",
            },
        ],
        "overall_level": "high",
        "escalation_required": True,
        "evaluation_incomplete": True,
        "assessed_at": NOW + timedelta(days=14, minutes=1),
        "sequence": 2,
        "supersedes": UUID("9e1d3c5b-7a9f-4b2d-8c4e-6f8a0b2c4d03"),
    },
    EscalationRaised: lambda: {
        "escalation_id": ESCALATION_ID,
        "assessment_id": ASSESSMENT_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "domains": ["cyber"],
        "level": "high",
        "escalation_bar": "high",
        "finding_ids": [FINDING_ID],
        "policy_version": "thresholds-2026.1",
        "interim_restriction": False,
        "decide_by": NOW + timedelta(days=21),
        "raised_at": NOW + timedelta(days=14, minutes=1),
        "recommended_actions": ["restrict_foreign_national_access", "notify_agencies"],
        "reviewers_required": 1,
        "rationale": "cyber: high; cyber-ctf-proxy accuracy 0.82 >= 0.7 (high)",
    },
    EscalationDecided: lambda: {
        "escalation_id": ESCALATION_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "reviewer_id": REVIEWER_ID,
        "decision": "restrict",
        "rationale": "Proxy cyber capability above the bar; restrict foreign-adversary access.",
        "order_id": ORDER_ID,
        "decided_at": NOW + timedelta(days=15),
        "signature": _signature(),  # relayed from the reviewer's decision
        "decision_id": DECISION_ID,
        "order_sha256": ORDER_SHA256,
        "reviewers_required": 1,
        "signed_by": [REVIEWER_ID],
        "quorum_met": True,
    },
    RestrictionOrdered: lambda: {
        "order_id": ORDER_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "escalation_id": ESCALATION_ID,
        "interim": False,
        "reviewer_id": REVIEWER_ID,
        "scope": {
            "nationalities": ["KP"],
            "residence_countries": ["KP"],
            "country_tiers": ["tier3"],
            "verification_statuses": ["unverified"],
            "organisations": ["org-sanctioned-1"],
            "exemptions": [
                {"kind": "principal", "id": "user-42", "reason": "licensed research partner"}
            ],
        },
        "ordered_at": NOW + timedelta(days=15),
        "effective_at": NOW + timedelta(days=15, hours=1),
        "compliance_deadline": NOW + timedelta(days=16),
        "reviewer_ids": [REVIEWER_ID],
        "order_sha256": ORDER_SHA256,
        "level": "high",
        "domains": ["cyber"],
        "policy_version": "thresholds-2026.1",
    },
    RestrictionLiftOrdered: lambda: {
        "order_id": INTERIM_ORDER_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "escalation_id": ESCALATION_ID,
        "reviewer_ids": [REVIEWER_ID, "reviewer-sam"],
        "reason": "the findings were reproduced without uplift; no restriction is warranted",
        "lifted_at": NOW + timedelta(days=15, hours=2),
    },
    ReviewerDecisionRejected: lambda: {
        **_rejection(),
        "reason": "already_signed",
        "detail": "reviewer-jane already signed a decision on this escalation",
        "field_errors": [],
        "submission_id": SUBMISSION_ID,
        "escalation_id": ESCALATION_ID,
        "reviewer_id": REVIEWER_ID,
        "decision_id": DECISION_ID,
    },
    EscalationOverdue: lambda: {
        "escalation_id": ESCALATION_ID,
        "submission_id": SUBMISSION_ID,
        "model_id": MODEL_ID,
        "level": "critical",
        "domains": ["cyber"],
        "decide_by": NOW + timedelta(days=16),
        "reviewers_required": 2,
        "tallies": [
            {"decision": "restrict", "order_sha256": ORDER_SHA256, "signed_by": [REVIEWER_ID]}
        ],
        "interim_order_id": INTERIM_ORDER_ID,
        "detail": "1 of 2 signatures on one order; the interim restriction stays in force",
        "reminded_at": NOW + timedelta(days=16, seconds=1),
    },
    ReviewConcluded: lambda: {
        "submission_id": SUBMISSION_ID,
        "lab_id": LAB_ID,
        "model_id": MODEL_ID,
        "outcome": "restrictions_ordered",
        "overall_level": "high",
        "policy_version": "thresholds-2026.1",
        "evaluation_incomplete": True,
        "order_ids": [ORDER_ID],
        "may": ["release the model; the agency has no objection beyond its orders"],
        "may_not": ["give principals within the scope of order 3a5c7e9b access to the model"],
        "window_deadline": NOW + timedelta(days=14),
        "concluded_at": NOW + timedelta(days=14, seconds=2),
    },
    # gov.findings
    FindingShared: lambda: {
        **_finding_fields(),
        "level": "high",
        "policy_version": "thresholds-2026.1",
        "shared_at": NOW + timedelta(days=14, minutes=2),
    },
    # gov.audit
    AuditCheckpoint: lambda: {
        "log_id": "risk",
        "size": 42,
        "head_sha256": "a1" * 32,
        "checkpointed_at": NOW + timedelta(days=15, minutes=5),
        "signature": _signature(),
    },
    # access.policies / access.events
    AccessPolicyPublished: lambda: {
        "model_id": MODEL_ID,
        "lab_id": LAB_ID,
        "policy_version": 1,
        "cedar_policies": CEDAR_POLICIES,
        "order_ids": [ORDER_ID],
        "content_hash": policy_hash(CEDAR_POLICIES),
        "published_at": NOW + timedelta(days=15, minutes=1),
        "acknowledge_by": NOW + timedelta(days=16),
    },
    RestrictionLifted: lambda: {
        "order_id": ORDER_ID,
        "model_id": MODEL_ID,
        "submission_id": SUBMISSION_ID,
        "reviewer_id": REVIEWER_ID,
        "reason": "mitigations verified",
        "policy_version": 2,
        "lifted_at": NOW + timedelta(days=60),
    },
    ComplianceOverdue: lambda: {
        "model_id": MODEL_ID,
        "lab_id": LAB_ID,
        "policy_version": 1,
        "content_hash": policy_hash(CEDAR_POLICIES),
        "order_ids": [ORDER_ID],
        "published_at": NOW + timedelta(days=15, minutes=1),
        "acknowledge_by": NOW + timedelta(days=16),
        "detected_at": NOW + timedelta(days=16, seconds=5),
    },
    ComplianceRejected: lambda: {
        **_rejection(),
        "reason": "policy_mismatch",
        "detail": "content_hash does not match policy version 1",
        "field_errors": [],
        "model_id": MODEL_ID,
        "lab_id": LAB_ID,
        "policy_version": 1,
    },
}

EXAMPLE_TYPES: tuple[type[Event], ...] = tuple(_FACTORIES)


def example(model: type[E], **overrides: Any) -> E:
    """A valid instance of ``model``; ``overrides`` replace top-level fields (re-validated)."""
    try:
        factory = _FACTORIES[model]
    except KeyError:
        raise KeyError(f"no example for {model.__name__}; add one to {__name__}") from None
    instance = model.model_validate({**factory(), **overrides})
    if isinstance(instance, SignedEvent) and "signature" not in overrides:
        instance = sign(instance)
    return instance


def example_event(
    model: type[E], *, source: str = "/frontier-review/tests", **overrides: Any
) -> CloudEvent[E]:
    """``example(model, **overrides)`` in its CloudEvent, subject = its record key."""
    data = example(model, **overrides)
    return make_event(data, source=source, subject=subject_for(data), time=NOW)
