"""Reviewer decisions and their quorum (pure): the two-person rule, one signature per
reviewer, conflicting votes, duplicates, and every refusal with its reason code."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts import encode, make_event
from contracts.events.common import RejectionReason, signing_input
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.events.risk import EscalationDecision
from contracts.registry import subject_for
from services.risk.decisions import DecisionAccepted, Duplicate, decide, rejection
from services.risk.model import Escalation, EscalationStatus
from services.risk.orders import order_id, order_sha256
from services.trust.refusal import Refusal
from services.trust.verifier import Authenticated
from tests.risk.support import NOW, Reviewer, critical_cyber, high_cyber, order, shipped_policy

POLICY = shipped_policy()
RESTRICT, DISMISS, MONITOR, LIFT = (
    EscalationDecision.RESTRICT,
    EscalationDecision.NO_RESTRICTION,
    EscalationDecision.MONITOR,
    EscalationDecision.LIFT_INTERIM,
)
ALICE, BOB, CAROL = Reviewer.new("alice"), Reviewer.new("bob"), Reviewer.new("carol")
LATER = NOW + timedelta(minutes=10)


def critical() -> Escalation:
    return critical_cyber(POLICY).escalation


def high() -> Escalation:
    return high_cyber(POLICY).escalation


def accepted(result: DecisionAccepted | Duplicate | Refusal) -> DecisionAccepted:
    assert isinstance(result, DecisionAccepted), result
    return result


def refused(result: DecisionAccepted | Duplicate | Refusal, reason: RejectionReason) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason is reason, result.detail
    return result


def sign_in_turn(escalation: Escalation, *decisions: ReviewerDecisionSubmitted) -> Escalation:
    for decision in decisions:
        escalation = accepted(decide(escalation, decision, LATER)).escalation
    return escalation


# --- the two-person rule --------------------------------------------------------------


def test_one_signature_is_not_enough_for_critical() -> None:
    escalation = critical()
    decision = ALICE.decide(escalation.escalation_id, RESTRICT, order=order())
    result = accepted(decide(escalation, decision, LATER))
    assert result.order is None, "no restriction takes effect on one signature"
    assert result.escalation.status is EscalationStatus.OPEN
    assert result.escalation.interim_in_force
    decided = result.decided
    assert (decided.quorum_met, decided.signed_by, decided.reviewers_required) == (
        False,
        ["alice"],
        2,
    )
    assert decision.order is not None
    sha = order_sha256(decision.order)
    assert decided.order_sha256 == sha
    assert decided.order_id == order_id(escalation.escalation_id, sha)


def test_two_reviewers_signing_the_same_order_issue_it_superseding_the_interim_one() -> None:
    escalation = critical()
    first = sign_in_turn(
        escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=order())
    )
    result = accepted(
        decide(first, BOB.decide(escalation.escalation_id, RESTRICT, order=order()), LATER)
    )
    issued = result.order
    assert issued is not None and not issued.interim
    assert result.decided.quorum_met and result.decided.signed_by == ["alice", "bob"]
    assert issued.order_id == result.decided.order_id
    assert (issued.reviewer_id, issued.reviewer_ids) == ("bob", ["alice", "bob"])
    assert issued.supersedes == escalation.interim_order_id
    assert issued.effective_at == NOW + timedelta(hours=1), "its signed time, still ahead"
    assert issued.compliance_deadline == NOW + timedelta(days=1)
    assert issued.scope.country_groups == ["arms-embargoed"]
    assert (issued.level, issued.domains) == (escalation.level, list(escalation.domains))
    assert result.escalation.status is EscalationStatus.RESTRICTED
    assert result.escalation.order_id == issued.order_id


def test_the_same_order_written_differently_is_the_same_order() -> None:
    escalation = critical()
    mine = order(nationalities=["RU", "CN"], country_groups=["arms-embargoed", "embargoed"])
    theirs = order(nationalities=["CN", "RU", "CN"], country_groups=["embargoed", "arms-embargoed"])
    utc = mine["effective_at"]
    theirs["effective_at"] = utc.astimezone(ZoneInfo("Asia/Tokyo"))
    state = sign_in_turn(escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=mine))
    result = accepted(
        decide(state, BOB.decide(escalation.escalation_id, RESTRICT, order=theirs), LATER)
    )
    assert result.order is not None


def test_two_different_orders_are_two_candidates_and_neither_takes_effect() -> None:
    escalation = critical()
    broad = order(country_groups=["arms-embargoed"])
    narrow = order(nationalities=["KP"])
    state = sign_in_turn(escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=broad))
    result = accepted(
        decide(state, BOB.decide(escalation.escalation_id, RESTRICT, order=narrow), LATER)
    )
    assert result.order is None and not result.decided.quorum_met
    assert result.decided.signed_by == ["bob"]
    assert len(result.escalation.tallies()) == 2
    assert result.escalation.status is EscalationStatus.OPEN


def test_at_high_one_reviewer_is_enough() -> None:
    escalation = high()
    result = accepted(
        decide(escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=order()), LATER)
    )
    assert result.order is not None and result.order.supersedes is None
    assert result.escalation.status is EscalationStatus.RESTRICTED


def test_an_order_signed_to_start_in_the_past_starts_when_its_quorum_is_met() -> None:
    escalation = high()
    past = order() | {"effective_at": NOW - timedelta(days=1)}
    result = accepted(
        decide(escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=past), LATER)
    )
    assert result.order is not None and result.order.effective_at == LATER


# --- one signature per reviewer, duplicates, decision ids --------------------------------


def test_the_same_reviewer_twice_is_refused_whether_or_not_they_agree() -> None:
    escalation = critical()
    state = sign_in_turn(
        escalation, ALICE.decide(escalation.escalation_id, RESTRICT, order=order())
    )
    for again in (
        ALICE.decide(escalation.escalation_id, RESTRICT, order=order()),
        ALICE.decide(escalation.escalation_id, DISMISS),
    ):
        refusal = refused(decide(state, again, LATER), RejectionReason.ALREADY_SIGNED)
        assert "alice already signed restrict" in refusal.detail


def test_the_identical_decision_resent_is_a_duplicate_with_no_second_effect() -> None:
    escalation = critical()
    decision_id = uuid.uuid4()
    first = ALICE.decide(escalation.escalation_id, RESTRICT, order=order(), decision_id=decision_id)
    state = sign_in_turn(escalation, first)
    resigned = ALICE.decide(
        escalation.escalation_id, RESTRICT, order=order(), decision_id=decision_id
    )
    assert resigned.signature.nonce != first.signature.nonce
    assert isinstance(decide(state, resigned, LATER), Duplicate)


def test_a_decision_id_reused_for_another_decision_is_a_conflict() -> None:
    escalation = critical()
    decision_id = uuid.uuid4()
    state = sign_in_turn(
        escalation,
        ALICE.decide(escalation.escalation_id, RESTRICT, order=order(), decision_id=decision_id),
    )
    other = BOB.decide(escalation.escalation_id, DISMISS, decision_id=decision_id)
    refused(decide(state, other, LATER), RejectionReason.CONFLICT)


def test_a_decision_id_used_on_another_escalation_is_a_conflict() -> None:
    elsewhere = high()
    decision_id = uuid.uuid4()
    prior = accepted(
        decide(
            elsewhere,
            ALICE.decide(elsewhere.escalation_id, MONITOR, decision_id=decision_id),
            LATER,
        )
    ).escalation.votes[0]
    escalation = critical()
    reused = ALICE.decide(escalation.escalation_id, DISMISS, decision_id=decision_id)
    refused(decide(escalation, reused, LATER, prior=prior), RejectionReason.CONFLICT)


# --- conflicting decisions ------------------------------------------------------------------


def test_conflicting_votes_are_recorded_and_the_interim_order_stays_until_a_quorum() -> None:
    escalation = critical()
    state = sign_in_turn(
        escalation,
        ALICE.decide(escalation.escalation_id, RESTRICT, order=order()),
    )
    result = accepted(decide(state, BOB.decide(escalation.escalation_id, DISMISS), LATER))
    assert not result.decided.quorum_met and result.lifted_order_id is None
    assert result.escalation.status is EscalationStatus.OPEN
    assert result.escalation.interim_in_force
    assert [len(signers) for _, signers in result.escalation.tallies()] == [1, 1]


def test_the_first_candidate_to_reach_its_quorum_concludes_and_later_votes_are_refused() -> None:
    escalation = critical()
    state = sign_in_turn(
        escalation,
        ALICE.decide(escalation.escalation_id, RESTRICT, order=order()),
        BOB.decide(escalation.escalation_id, DISMISS),
    )
    result = accepted(decide(state, CAROL.decide(escalation.escalation_id, DISMISS), LATER))
    assert result.decided.quorum_met and result.decided.signed_by == ["bob", "carol"]
    assert result.escalation.status is EscalationStatus.DISMISSED
    assert result.lifted_order_id == escalation.interim_order_id
    assert result.decided.lifted_order_id == escalation.interim_order_id
    assert result.order is None
    late = Reviewer.new("dave").decide(escalation.escalation_id, RESTRICT, order=order())
    refusal = refused(decide(result.escalation, late, LATER), RejectionReason.ESCALATION_CONCLUDED)
    assert "dismissed" in refusal.detail


def test_keeping_under_monitoring_needs_the_quorum_and_lifts_the_interim_order() -> None:
    escalation = critical()
    state = sign_in_turn(escalation, ALICE.decide(escalation.escalation_id, MONITOR))
    assert state.status is EscalationStatus.OPEN
    result = accepted(decide(state, BOB.decide(escalation.escalation_id, MONITOR), LATER))
    assert result.escalation.status is EscalationStatus.MONITORING
    assert result.lifted_order_id == escalation.interim_order_id


def test_a_single_dismissal_concludes_a_high_escalation() -> None:
    escalation = high()
    result = accepted(decide(escalation, ALICE.decide(escalation.escalation_id, DISMISS), LATER))
    assert result.escalation.status is EscalationStatus.DISMISSED
    assert result.lifted_order_id is None


# --- lifting the interim order ---------------------------------------------------------------


def test_lifting_the_interim_order_needs_the_quorum_and_leaves_the_escalation_open() -> None:
    escalation = critical()
    interim = escalation.interim_order_id
    state = sign_in_turn(
        escalation, ALICE.decide(escalation.escalation_id, LIFT, interim_order_id=interim)
    )
    assert state.interim_in_force
    result = accepted(
        decide(state, BOB.decide(escalation.escalation_id, LIFT, interim_order_id=interim), LATER)
    )
    assert result.lifted_order_id == interim and not result.escalation.interim_in_force
    assert result.escalation.status is EscalationStatus.OPEN
    # lifting is its own question: the same reviewers still decide the outcome
    final = sign_in_turn(
        result.escalation,
        ALICE.decide(escalation.escalation_id, RESTRICT, order=order()),
        BOB.decide(escalation.escalation_id, RESTRICT, order=order()),
    )
    assert final.status is EscalationStatus.RESTRICTED


def test_lifting_without_an_interim_order_in_force_is_refused() -> None:
    escalation = high()
    lift = ALICE.decide(escalation.escalation_id, LIFT, interim_order_id=uuid.uuid4())
    refused(decide(escalation, lift, LATER), RejectionReason.NO_INTERIM_ORDER)


def test_lifting_another_order_than_the_interim_one_is_refused() -> None:
    escalation = critical()
    lift = ALICE.decide(escalation.escalation_id, LIFT, interim_order_id=uuid.uuid4())
    refusal = refused(decide(escalation, lift, LATER), RejectionReason.NO_INTERIM_ORDER)
    assert refusal.field_errors[0].path == "data.interim_order_id"


# --- refusals ------------------------------------------------------------------------------------


def test_a_decision_on_an_unknown_escalation_is_refused() -> None:
    decision = ALICE.decide(uuid.uuid4(), DISMISS)
    refused(decide(None, decision, LATER), RejectionReason.UNKNOWN_ESCALATION)


def test_a_decision_naming_another_submission_is_refused() -> None:
    escalation = critical()
    decision = ALICE.decide(escalation.escalation_id, DISMISS, submission_id=uuid.uuid4())
    refused(decide(escalation, decision, LATER), RejectionReason.ESCALATION_MISMATCH)


def test_a_decision_on_a_superseded_escalation_names_its_successor() -> None:
    successor = uuid.uuid4()
    escalation = replace(critical(), status=EscalationStatus.SUPERSEDED, superseded_by=successor)
    decision = ALICE.decide(escalation.escalation_id, DISMISS)
    refusal = refused(decide(escalation, decision, LATER), RejectionReason.ESCALATION_SUPERSEDED)
    assert str(successor) in refusal.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("compliance_deadline", NOW + timedelta(minutes=5)),
        ("expires_at", NOW + timedelta(minutes=5)),
    ],
)
def test_an_order_whose_deadline_or_expiry_has_passed_is_refused(field: str, value: Any) -> None:
    escalation = high()
    stale = order() | {"effective_at": NOW, field: value}
    decision = ALICE.decide(escalation.escalation_id, RESTRICT, order=stale)
    refusal = refused(decide(escalation, decision, LATER), RejectionReason.ORDER_OUTDATED)
    assert refusal.field_errors[0].path == f"data.order.{field}"


def test_the_decision_input_contract_requires_an_order_exactly_for_restrict() -> None:
    with pytest.raises(ValueError, match="order is required for restrict"):
        ALICE.decide(uuid.uuid4(), RESTRICT)
    with pytest.raises(ValueError, match="order is required for restrict"):
        ALICE.decide(uuid.uuid4(), DISMISS, order=order())
    with pytest.raises(ValueError, match="interim_order_id is required for lift_interim"):
        ALICE.decide(uuid.uuid4(), LIFT)
    with pytest.raises(ValueError, match="Extra inputs"):
        ReviewerDecisionSubmitted.model_validate(
            ALICE.decide(uuid.uuid4(), DISMISS).model_dump() | {"urgent": True}
        )


# --- what is published ------------------------------------------------------------------------


def test_the_published_decision_relays_the_reviewers_verifiable_signature() -> None:
    escalation = critical()
    decision = ALICE.decide(
        escalation.escalation_id, RESTRICT, order=order(), justification="Because."
    )
    decided = accepted(decide(escalation, decision, LATER)).decided
    assert decided.signature.value == decision.signature.value
    assert (decided.rationale, decided.decision_id, decided.decided_at) == (
        "Because.",
        decision.decision_id,
        LATER,
    )
    sent = json.loads(
        encode(make_event(decision, source="/reviewer-cli", subject=subject_for(decision)))
    )
    ALICE.key.public_key().verify(
        base64.b64decode(decided.signature.value), signing_input(sent["data"])
    )


def test_a_refusal_of_an_authenticated_decision_is_addressed_to_its_submission() -> None:
    escalation = critical()
    decision = ALICE.decide(escalation.escalation_id, DISMISS)
    refusal = Refusal(RejectionReason.ALREADY_SIGNED, "alice already signed")
    alice = Authenticated("reviewer", "alice", "alice-k1", decision.signature.nonce, NOW, "0" * 64)
    answer = rejection(refusal, sender=alice, event_id="evt-1", now=LATER, decision=decision)
    assert answer.submission_id == escalation.submission_id
    assert (answer.reason, answer.reviewer_id, answer.decision_id) == (
        RejectionReason.ALREADY_SIGNED,
        "alice",
        decision.decision_id,
    )
    assert subject_for(answer) == str(escalation.submission_id)


def test_a_refusal_of_an_unauthenticated_decision_is_keyed_by_the_refused_event() -> None:
    decision = ALICE.decide(critical().escalation_id, DISMISS)
    refusal = Refusal(RejectionReason.BAD_SIGNATURE, "the signature does not verify")
    answer = rejection(refusal, sender=None, event_id="evt-2", now=LATER, decision=decision)
    assert answer.submission_id is None
    assert subject_for(answer) == "evt-2"
    assert answer.reason is RejectionReason.AUTHENTICATION_FAILED, "no precise reason"
