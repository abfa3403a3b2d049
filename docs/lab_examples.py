"""The example records of docs/lab-guide.md: lab input signed with a published example key,
and one answer of every kind a lab's feeds carry.

Deterministic: fixed key, ids, times and nonces. Lab input is signed by the lab
client's own ``sign``; answers are built by the agency's own decision functions
where there is one (coverage, refusals, withdrawals, acknowledgement checks) and
carried as owner copies, as a lab's feed carries them. ``docs.lab_guide`` renders
them; tests read them back from the guide's text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import CONTENT_TYPE, ContractViolation, decode, encode, make_event
from contracts.envelope import CloudEvent, Event
from contracts.events.access import (
    AccessPolicyPublished,
    ComplianceRejected,
    EnforcedOrder,
    policy_hash,
)
from contracts.events.common import (
    RejectionReason,
    SignedEvent,
    make_model_id,
)
from contracts.events.intake import (
    SubmissionAccepted,
    SubmissionRejected,
    WithdrawalRejected,
)
from contracts.events.lab import ComplianceAcknowledged, SubmissionFiled, WithdrawalRequested
from contracts.events.risk import ReviewConcluded
from contracts.registry import TOPIC_BY_NAME, feed_for, subject_for, topic_for
from contracts.sensitivity import owner_copy
from services.access.compliance import check_acknowledgement
from services.access.model import ModelPolicy
from services.intake.criteria import assess_coverage, load_criteria
from services.intake.decisions import (
    decide_withdrawal,
    invalid_input_refusal,
    rejection,
    window_closed,
)
from services.intake.decisions import withdrawn as withdrawn_decision
from services.intake.model import FiledSubmission, SubmissionState
from services.labclient.signing import body_sha256, load_manifest, sign
from services.runtime.settings import RuntimeSettings
from services.trust.refusal import (
    Refusal,
)

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = ROOT / "services" / "intake" / "criteria.yaml"
MANIFEST = ROOT / "services" / "labclient" / "examples" / "submission.yaml"


# --- the example identity: published, so never register it -----------------------------

EXAMPLE_KEY_SEED = hashlib.sha256(
    b"frontier-review lab guide EXAMPLE KEY - published, never register it"
).digest()
"""The 32-byte Ed25519 private key of the examples. It is in this file and in the
guide, so anyone can sign with it: an operator must never register its public key."""

EXAMPLE_KEY_ID = "example-lab-guide-key"
LAB_ID = "example-lab"
SIGNED_AT = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
APPENDED_AFTER = timedelta(milliseconds=850)  # the broker's LogAppendTime in the examples
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # W3C's example
ORDER_ID = UUID("3a5c7e9b-1d3f-4a6c-8e0b-2d4f6a8c0e06")


def example_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(EXAMPLE_KEY_SEED)


def example_public_key() -> bytes:
    """The example key's 32 raw public-key bytes (what an operator would register)."""
    return example_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- example events -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleRecord:
    """One Kafka record as the guide shows it: where it goes, its key, headers and value."""

    title: str
    topic: str
    key: str
    headers: tuple[tuple[str, str], ...]
    event: CloudEvent[Any]
    note: str = ""

    @property
    def value(self) -> bytes:
        return encode(self.event)

    @property
    def appended_at(self) -> datetime:
        return self.event.time + APPENDED_AFTER


def _signed(
    model: type[SignedEvent], fields: dict[str, Any], issued_at: datetime, nonce: str
) -> Any:
    """``model`` signed by the lab client's ``sign`` with the example key, at fixed values."""
    placeholder = "A" * 86 + "=="  # well-formed; sign() replaces it
    unsigned = model.model_validate(
        {
            **fields,
            "signature": {
                "key_id": EXAMPLE_KEY_ID,
                "algorithm": "ed25519",
                "issued_at": issued_at.isoformat(),
                "nonce": nonce,
                "value": placeholder,
            },
        }
    )
    return sign(unsigned, example_key())


def _lab_record(title: str, data: SignedEvent, event_id: str, note: str = "") -> ExampleRecord:
    issued_at = data.signature.issued_at
    event = make_event(
        data, source=f"/labs/{LAB_ID}", subject=subject_for(data), event_id=event_id, time=issued_at
    )
    return ExampleRecord(
        title=title,
        topic=topic_for(type(data)).name,
        key=event.subject,
        headers=(("content-type", CONTENT_TYPE), ("traceparent", TRACEPARENT)),
        event=event,
        note=note,
    )


def example_filing() -> ExampleRecord:
    manifest = load_manifest(MANIFEST)
    filed = _signed(SubmissionFiled, manifest, SIGNED_AT, "q3Vb7n0dXk2YtR8mLw4aZs9P")
    return _lab_record(
        "SubmissionFiled",
        filed,
        "5b7e2c1a-9d4f-4e8b-a6c3-1f0e2d3c4b5a",
        note="The body is services/labclient/examples/submission.yaml.",
    )


def example_withdrawal() -> ExampleRecord:
    filed = example_filing().event.data
    withdrawal = _signed(
        WithdrawalRequested,
        {
            "submission_id": str(filed.submission_id),
            "lab_id": LAB_ID,
            "reason": "Release plans changed.",
        },
        SIGNED_AT + timedelta(days=2),
        "Hc2pWq9LrT4xVb1nZs7yKd3M",
    )
    return _lab_record("WithdrawalRequested", withdrawal, "8e1d4a7b-2c5f-4b9e-8d1a-7c4b2e5f8a9d")


EXAMPLE_CEDAR = (
    "// abridged: the access service compiles the real text from the orders\n"
    '@id("order-3a5c7e9b-1d3f-4a6c-8e0b-2d4f6a8c0e06")\n'
    "forbid (principal, action, resource)\n"
    'when { context.now >= "2026-02-16T09:00:00Z" && principal.restricted_nationality };\n'
)
MODEL_ID = make_model_id(LAB_ID, "frontier-1", "2026-01-10")
POLICY_PUBLISHED_AT = SIGNED_AT + timedelta(days=14, minutes=1)


def example_policy() -> AccessPolicyPublished:
    return AccessPolicyPublished(
        model_id=MODEL_ID,
        lab_id=LAB_ID,
        policy_version=1,
        cedar_policies=EXAMPLE_CEDAR,
        order_ids=[ORDER_ID],
        content_hash=policy_hash(EXAMPLE_CEDAR),
        published_at=POLICY_PUBLISHED_AT,
        acknowledge_by=POLICY_PUBLISHED_AT + timedelta(days=1),
        orders=[
            EnforcedOrder(
                order_id=ORDER_ID,
                effective_at=SIGNED_AT + timedelta(days=14),
                nationality_rule="most_recent",
            )
        ],
        effective_at=SIGNED_AT + timedelta(days=14),
        cedar_schema_version="2026.1",
        country_groups_version="2026.1",
    )


def example_acknowledgement() -> ExampleRecord:
    policy = example_policy()
    enforced_at = POLICY_PUBLISHED_AT + timedelta(minutes=3)
    ack = _signed(
        ComplianceAcknowledged,
        {
            "model_id": policy.model_id,
            "lab_id": LAB_ID,
            "policy_version": policy.policy_version,
            "content_hash": policy.content_hash,
            "order_ids": [str(order) for order in policy.order_ids],
            "enforced_at": enforced_at.isoformat(),
            "enforcement_points": ["api-gateway", "consumer-app"],
        },
        enforced_at + timedelta(seconds=20),
        "Rt6uYb8nMq2wXz4cVa0sLk9J",
    )
    return _lab_record(
        "ComplianceAcknowledged",
        ack,
        "c4a9e2f1-6b3d-4d7a-9e5c-2f8b1a6d3e7c",
        note="It quotes the AccessPolicyPublished example below (version, content hash, orders).",
    )


def lab_examples() -> list[ExampleRecord]:
    return [example_filing(), example_withdrawal(), example_acknowledgement()]


def _sig_sha256(record: ExampleRecord) -> str:
    return hashlib.sha256(record.event.data.signature.value.encode()).hexdigest()


def _answer(
    title: str,
    data: Event,
    lab_id: str,
    *,
    at: datetime,
    event_id: str,
    subject: str | None = None,
    note: str = "",
) -> ExampleRecord:
    """``data`` as the agency's relay puts it on the lab's feed: the owner copy."""
    feed = feed_for(type(data))
    producer = topic_for(type(data)).producer
    copy = owner_copy(data)
    event = make_event(
        copy,
        source=RuntimeSettings(service_name=producer).source,
        subject=subject or subject_for(copy),
        event_id=event_id,
        time=at,
        traceparent=TRACEPARENT,
    )
    return ExampleRecord(
        title=title,
        topic=feed.topic(lab_id),
        key=event.subject,
        headers=(
            ("content-type", CONTENT_TYPE),
            ("ce_type", event.type),
            ("traceparent", TRACEPARENT),
        ),
        event=event,
        note=note,
    )


def decode_lab_input(raw: bytes, topic: str) -> CloudEvent[Event] | ContractViolation:
    try:
        return decode(raw, TOPIC_BY_NAME[topic].event_types, external=True)
    except ContractViolation as violation:
        return violation


def answer_examples() -> list[ExampleRecord]:
    """One answer of every kind a lab's feeds carry, in the order a review produces them."""
    filing = example_filing()
    filed: SubmissionFiled = filing.event.data
    received = filing.appended_at + timedelta(milliseconds=300)
    criteria = load_criteria(CRITERIA)
    coverage = assess_coverage(filed.model, criteria)
    assert coverage.reason is not None, "the example submission must be a covered model"
    review_days = min(filed.requested_review_days, 30)
    accepted = SubmissionAccepted(
        submission_id=filed.submission_id,
        lab_id=filed.lab_id,
        model_id=make_model_id(filed.lab_id, filed.model.name, filed.model.version),
        model=filed.model,
        evaluation_access=filed.evaluation_access,
        reason=coverage.reason,
        detail=coverage.detail,
        criteria_version=criteria.version,
        requested_review_days=filed.requested_review_days,
        review_days=review_days,
        accepted_at=received,
        deadline=received + timedelta(days=review_days),
        filed_event_id=filing.event.id,
        body_sha256=body_sha256(filed),
        signature_sha256=_sig_sha256(filing),
    )
    variant = json.loads(filing.value)
    variant["id"] = "1c9e4b7a-3d2f-4a8e-b5c6-9d0e1f2a3b4c"
    variant["data"]["requested_review_days"] = "14"
    violation = decode_lab_input(json.dumps(variant).encode(), filing.topic)
    assert isinstance(violation, ContractViolation)
    refused = rejection(
        SubmissionRejected,
        invalid_input_refusal(violation),
        sender=None,
        submission_id=filed.submission_id,
        lab_id=LAB_ID,
        event_id=variant["id"],
        now=received,
        trusted=False,
    )
    forged = rejection(
        SubmissionRejected,
        Refusal(RejectionReason.UNKNOWN_KEY, "lab 'example-lab' has no registered key 'k-old'"),
        sender=None,
        submission_id=filed.submission_id,
        lab_id=LAB_ID,
        event_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        now=received,
        body_sha256=body_sha256(filed),
        trusted=False,
    )
    withdrawal = example_withdrawal()
    withdrawn_at = withdrawal.appended_at + timedelta(milliseconds=300)
    on_file = FiledSubmission(
        submission_id=filed.submission_id,
        lab_id=LAB_ID,
        state=SubmissionState.ACCEPTED,
        body_sha256=accepted.body_sha256 or "",
        filed_event_id=filing.event.id,
        model_id=accepted.model_id,
        deadline=accepted.deadline,
        reason=accepted.reason.value,
        detail=accepted.detail,
    )
    request: WithdrawalRequested = withdrawal.event.data
    assert decide_withdrawal(request, on_file, withdrawn_at) is None
    withdrawn = withdrawn_decision(
        request,
        on_file,
        event_id=withdrawal.event.id,
        signature_sha256=_sig_sha256(withdrawal),
        now=withdrawn_at,
    )
    again = _signed(
        WithdrawalRequested,
        request.model_dump(mode="json", exclude={"signature"}, exclude_none=True),
        request.signature.issued_at + timedelta(hours=1),
        "Np5sQe1vTb8yWc3uXk6zLr0A",
    )
    again_at = again.signature.issued_at + APPENDED_AFTER
    refusal = decide_withdrawal(again, replace(on_file, state=SubmissionState.WITHDRAWN), again_at)
    assert refusal is not None
    refused_withdrawal = WithdrawalRejected(
        reason=refusal.reason,
        detail=refusal.detail,
        rejected_event_id="2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
        rejected_at=again_at,
        submission_id=filed.submission_id,
        lab_id=LAB_ID,
        signature_sha256=hashlib.sha256(again.signature.value.encode()).hexdigest(),
    )
    closed = window_closed(
        filed.submission_id,
        LAB_ID,
        accepted.model_id,
        accepted.deadline,
        accepted.deadline + timedelta(milliseconds=420),
    )
    concluded = ReviewConcluded(
        submission_id=filed.submission_id,
        lab_id=LAB_ID,
        model_id=accepted.model_id,
        outcome="restrictions_ordered",
        overall_level="high",
        policy_version="thresholds-2026.1",
        evaluation_incomplete=False,
        order_ids=[ORDER_ID],
        may=["release the model; the agency has no objection beyond its orders"],
        may_not=["give principals within the scope of order 3a5c7e9b access to the model"],
        window_deadline=accepted.deadline,
        concluded_at=accepted.deadline + timedelta(seconds=2),
    )
    ack = example_acknowledgement()
    policy = example_policy()
    published = ModelPolicy(
        model_id=policy.model_id,
        lab_id=policy.lab_id,
        version=policy.policy_version,
        cedar_policies=policy.cedar_policies,
        content_hash=policy.content_hash,
        orders=tuple(policy.orders),
        published_at=policy.published_at,
        acknowledge_by=policy.acknowledge_by,
        schema_version=policy.cedar_schema_version or "",
        country_groups_version=policy.country_groups_version or "",
        order_ids=tuple(policy.order_ids),
    )
    stale: ComplianceAcknowledged = _signed(
        ComplianceAcknowledged,
        ack.event.data.model_dump(mode="json", exclude={"signature"})
        | {"content_hash": policy_hash(EXAMPLE_CEDAR + "// edited by hand\n")},
        ack.event.data.signature.issued_at + timedelta(minutes=1),
        "Wd4fGh7jKl0zXc2vBn5mQa8S",
    )
    stale_at = stale.signature.issued_at + APPENDED_AFTER
    mismatch = check_acknowledgement(
        stale, lambda version: published if version == published.version else None, now=stale_at
    )
    assert isinstance(mismatch, Refusal)
    compliance_refused = ComplianceRejected(
        reason=mismatch.reason,
        detail=mismatch.detail,
        rejected_event_id="b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
        rejected_at=stale_at + timedelta(milliseconds=200),
        model_id=MODEL_ID,
        lab_id=LAB_ID,
        policy_version=stale.policy_version,
        signature_sha256=hashlib.sha256(stale.signature.value.encode()).hexdigest(),
    )
    return [
        _answer(
            "SubmissionAccepted",
            accepted,
            LAB_ID,
            at=received,
            event_id="e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b",
            note="Bound to the SubmissionFiled example: `filed_event_id` is its CloudEvent id, "
            "`signature_sha256` the SHA-256 of its `signature.value`, `body_sha256` of its "
            "body without the signature; `reason` and `detail` come from the criteria.",
        ),
        _answer(
            "SubmissionRejected (shape error, told as is)",
            refused,
            LAB_ID,
            at=received,
            event_id="f2a3b4c5-d6e7-4f8a-9b0c-1d2e3f4a5b6c",
            note='The SubmissionFiled example with `"requested_review_days": "14"` (a string): '
            "refused at decoding, before any signature check, so it is keyed by the refused "
            "record's CloudEvent id and bound to no signature.",
        ),
        _answer(
            "SubmissionRejected (authentication failed)",
            forged,
            LAB_ID,
            at=received,
            event_id="a3b4c5d6-e7f8-4a9b-8c1d-2e3f4a5b6c7d",
            note="The SubmissionFiled example signed with a key id the agency does not know: "
            "the precise reason (`unknown_key`) is the operator's; the sender is told "
            "`authentication_failed`, keyed by its event id, no `signature_sha256`.",
        ),
        _answer(
            "SubmissionWithdrawn",
            withdrawn,
            LAB_ID,
            at=withdrawn_at,
            event_id="b4c5d6e7-f8a9-4b0c-9d2e-3f4a5b6c7d8e",
        ),
        _answer(
            "WithdrawalRejected",
            refused_withdrawal,
            LAB_ID,
            at=refused_withdrawal.rejected_at,
            event_id="c5d6e7f8-a9b0-4c1d-8e3f-4a5b6c7d8e9f",
            note="The WithdrawalRequested example signed again an hour later (new nonce, "
            "new event id) after the first was applied: authenticated, so the precise reason, "
            "bound to that second signature; decided by intake's own `decide_withdrawal`.",
        ),
        _answer(
            "ReviewWindowClosed",
            closed,
            LAB_ID,
            at=closed.closed_at,
            event_id="d6e7f8a9-b0c1-4d2e-9f4a-5b6c7d8e9f0a",
        ),
        _answer(
            "ReviewConcluded",
            concluded,
            LAB_ID,
            at=concluded.concluded_at,
            event_id="e7f8a9b0-c1d2-4e3f-8a5b-6c7d8e9f0a1b",
        ),
        _answer(
            "AccessPolicyPublished (on labs.<lab id>.policies)",
            example_policy(),
            LAB_ID,
            at=POLICY_PUBLISHED_AT,
            event_id="f8a9b0c1-d2e3-4f4a-9b6c-7d8e9f0a1b2c",
            subject=MODEL_ID,
        ),
        _answer(
            "ComplianceRejected",
            compliance_refused,
            LAB_ID,
            at=compliance_refused.rejected_at,
            event_id="a9b0c1d2-e3f4-4a5b-8c7d-8e9f0a1b2c3d",
            note="The ComplianceAcknowledged example signed again a minute later, quoting the "
            "content hash of other text: authenticated, so the precise reason, decided by the "
            "access service's own `check_acknowledgement`.",
        ),
    ]
