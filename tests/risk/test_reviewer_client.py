"""The reviewer's client (pure): order files, signing by the project's rule, and which
event is the answer to what was sent."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import CloudEvent, Event, make_event
from contracts.events.common import RejectionReason, signing_input
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.events.risk import EscalationDecided, EscalationDecision, ReviewerDecisionRejected
from services.risk.reviewer import DecisionError, Outgoing, build_decision, load_order, prepare

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SCOPE = {"nationality_rule": "any", "country_groups": ["arms-embargoed"]}


def decision() -> ReviewerDecisionSubmitted:
    return build_decision(
        escalation_id=uuid.uuid4(),
        submission_id=uuid.uuid4(),
        reviewer_id="r1",
        key_id="r1-k1",
        key=KEY,
        decision=EscalationDecision.MONITOR,
        justification="Because.",
        now=NOW,
    )


def test_a_decision_is_signed_over_its_data_as_sent() -> None:
    outgoing = prepare(decision())
    data = json.loads(outgoing.raw)["data"]
    KEY.public_key().verify(base64.b64decode(data["signature"]["value"]), signing_input(data))


def test_an_order_file_may_hold_the_scope_alone_with_the_times_given_apart(tmp_path: Path) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text(yaml.safe_dump(SCOPE))
    order = load_order(path, effective_at=NOW, compliance_deadline=NOW + timedelta(days=1))
    assert order["scope"] == SCOPE and order["effective_at"] == NOW


def test_an_order_without_its_times_is_refused_saying_which(tmp_path: Path) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text(yaml.safe_dump(SCOPE))
    with pytest.raises(DecisionError, match="effective_at and compliance_deadline"):
        load_order(path)


def test_an_order_with_an_unknown_criterion_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "order.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "scope": SCOPE | {"nationalitys": ["CN"]},
                "effective_at": NOW.isoformat(),
                "compliance_deadline": (NOW + timedelta(days=1)).isoformat(),
            }
        )
    )
    with pytest.raises(DecisionError, match=r"scope\.nationalitys: Extra inputs"):
        load_order(path)


def accepted_for(sent: Outgoing, **changes: Any) -> CloudEvent[Event]:
    data = sent.event.data
    fields = {
        "escalation_id": data.escalation_id,
        "submission_id": data.submission_id,
        "model_id": "lab/m@1",
        "reviewer_id": "r1",
        "decision": "monitor",
        "rationale": "Because.",
        "decided_at": NOW,
        "signature": data.signature.model_dump(),
        "decision_id": data.decision_id,
        "decision_event_id": sent.event.id,
    } | changes
    return make_event(
        EscalationDecided.model_validate(fields), source="/risk", subject=str(data.submission_id)
    )


def refused_for(sent: Outgoing, **changes: Any) -> CloudEvent[Event]:
    fields = {
        "reason": RejectionReason.AUTHENTICATION_FAILED,
        "detail": "no",
        "rejected_event_id": sent.event.id,
        "rejected_at": NOW,
        "received_sha256": sent.data_sha256,
    } | changes
    return make_event(
        ReviewerDecisionRejected.model_validate(fields), source="/risk", subject=sent.event.id
    )


def test_the_acceptance_of_the_very_signature_sent_is_the_answer() -> None:
    sent = prepare(decision())
    answer = sent.answer(accepted_for(sent))
    assert answer is not None and answer.accepted


def test_an_acceptance_naming_the_event_id_with_another_signature_is_not_the_answer() -> None:
    sent, other = prepare(decision()), prepare(decision())
    copied = accepted_for(sent, signature=other.event.data.signature.model_dump())
    assert sent.answer(copied) is None


def test_a_refusal_of_the_data_sent_is_the_answer() -> None:
    sent = prepare(decision())
    answer = sent.answer(refused_for(sent))
    assert answer is not None and not answer.accepted


def test_a_refusal_naming_the_event_id_of_other_data_is_not_the_answer() -> None:
    sent = prepare(decision())
    assert sent.answer(refused_for(sent, received_sha256="0" * 64)) is None
    assert sent.answer(refused_for(sent, received_sha256=None)) is None
