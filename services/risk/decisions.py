"""Reviewer decisions and their quorum: the pure rules, after the signature checked out.

Verifying the reviewer's signature, key (registered, not revoked), freshness and nonce is
the trust library's job; ``decide`` receives a decision whose signer is the reviewer it
names. It answers with a ``DecisionAccepted`` (the new escalation state and what to
publish), a ``Duplicate`` (the identical decision again: no second effect) or a
``Refusal`` with a reason code the reviewer sees.

The rules:

- A decision is a vote for a candidate: restrict *with one exact order* (compared by the
  order's canonical SHA-256, services/risk/orders.py), no_restriction (dismiss),
  monitor, or lift_interim.
- A decision takes effect when the escalation's ``reviewers_required`` distinct
  reviewers have voted for the same candidate (two for critical in the shipped policy:
  the two-person rule). The rule applies to every decision, not only restrictions: one
  reviewer can neither impose, dismiss nor lift anything that needs two.
- A reviewer signs each question of an escalation once: the outcome (restrict /
  no_restriction / monitor) and, separately, lifting the interim order. A second
  signature on the same question is refused (``already_signed``), whether it agrees or
  not; a decision id re-used for a different body is refused (``conflict``).
- Conflicting decisions (one reviewer confirms, another dismisses; or two sign different
  orders) are both recorded as votes; neither takes effect until one candidate has its
  quorum, and the first to reach it concludes the escalation. Until then any interim
  restriction stays in force, and the deadline's reminder lists the disagreement. A
  disagreeing vote is therefore not refused: refusing it would let whoever signs first
  set the agenda, and would lose the dissent from the record.
- Once the escalation is concluded (or superseded by a newer one), every further
  decision on it is refused (``escalation_concluded`` / ``escalation_superseded``).
- A restrict decision whose order's compliance deadline or expiry has passed is refused
  (``order_outdated``); an order that takes effect once its quorum is met takes effect no
  earlier than that moment (``effective_at`` = max(signed effective time, now)).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

import rfc8785

from contracts.events.common import FieldError, RejectionReason
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.events.risk import (
    EscalationDecided,
    EscalationDecision,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    RestrictionOrderSpec,
    ReviewerDecisionRejected,
    ReviewerSignature,
)
from services.risk.model import CONCLUDING_STATUS, Escalation, EscalationStatus, Question, Vote
from services.risk.orders import as_scope, order_id, order_sha256
from services.trust.refusal import Refusal, answer_fields
from services.trust.unverified import Addressing
from services.trust.verifier import Authenticated

DECISION_NAMESPACE = UUID("5d2b8e41-9c3a-4f67-b1d0-7e4a2c9f6b38")


@dataclass(frozen=True)
class Duplicate:
    """The identical decision was already accepted; it stands, nothing happens again."""

    detail: str


@dataclass(frozen=True)
class DecisionAccepted:
    escalation: Escalation  # the new state (the vote added, maybe concluded)
    decided: EscalationDecided  # to publish
    order: RestrictionOrdered | None = None  # the quorum on an order was met: to publish
    lifted_order_id: UUID | None = None  # the interim order this decision lifted


def decision_body_sha256(decision: ReviewerDecisionSubmitted) -> str:
    """What the decision says, without its signature: a re-signed identical decision
    has the same digest."""
    body = decision.model_dump(mode="json", exclude_none=True, exclude={"signature"})
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def decide(
    escalation: Escalation | None,
    decision: ReviewerDecisionSubmitted,
    now: datetime,
    *,
    prior: Vote | None = None,
) -> DecisionAccepted | Duplicate | Refusal:
    """Apply a verified reviewer decision to its escalation.

    ``prior`` is the vote already recorded under ``decision.decision_id`` on any
    escalation (the repository looks it up), so that a decision id cannot be re-used.
    """
    body_sha256 = decision_body_sha256(decision)
    if escalation is None:
        return Refusal(
            RejectionReason.UNKNOWN_ESCALATION,
            f"no escalation {decision.escalation_id}",
            (FieldError(path="data.escalation_id", message="unknown escalation"),),
        )
    if decision.submission_id != escalation.submission_id:
        return Refusal(
            RejectionReason.ESCALATION_MISMATCH,
            f"escalation {escalation.escalation_id} is about submission "
            f"{escalation.submission_id}, not {decision.submission_id}",
            (FieldError(path="data.submission_id", message="not the escalation's submission"),),
        )
    earlier = prior or next(
        (v for v in escalation.votes if v.decision_id == decision.decision_id), None
    )
    if earlier is not None:
        if earlier.body_sha256 == body_sha256:
            return Duplicate(
                f"decision {decision.decision_id} was accepted at "
                f"{earlier.accepted_at.isoformat()}; it stands"
            )
        return Refusal(
            RejectionReason.CONFLICT,
            f"decision id {decision.decision_id} was already used for another decision; "
            "sign a new decision under a new decision_id",
            (FieldError(path="data.decision_id", message="already used"),),
        )
    if escalation.status is EscalationStatus.SUPERSEDED:
        return Refusal(
            RejectionReason.ESCALATION_SUPERSEDED,
            f"escalation {escalation.escalation_id} was superseded by escalation "
            f"{escalation.superseded_by} (the level rose or more domains crossed the bar); "
            "decide on that one",
        )
    if escalation.status.final:
        return Refusal(
            RejectionReason.ESCALATION_CONCLUDED,
            f"escalation {escalation.escalation_id} was concluded ({escalation.status}) at "
            f"{_when(escalation.decided_at)}; no further decision is taken on it",
        )
    question = Question.of(decision.decision)
    signed = next(
        (
            v
            for v in escalation.votes
            if v.reviewer_id == decision.reviewer_id and v.question is question
        ),
        None,
    )
    if signed is not None:
        return Refusal(
            RejectionReason.ALREADY_SIGNED,
            f"reviewer {decision.reviewer_id} already signed {_candidate(signed)} on "
            f"escalation {escalation.escalation_id} (decision {signed.decision_id}); "
            "a reviewer signs each question once",
        )
    refusal = _check_content(escalation, decision, now)
    if refusal is not None:
        return refusal

    sha = order_sha256(decision.order) if decision.order is not None else None
    vote = Vote(
        decision_id=decision.decision_id,
        reviewer_id=decision.reviewer_id,
        decision=decision.decision,
        body_sha256=body_sha256,
        accepted_at=now,
        order=decision.order,
        order_sha256=sha,
        interim_order_id=decision.interim_order_id,
    )
    state = replace(escalation, votes=(*escalation.votes, vote))
    signers = sorted({v.reviewer_id for v in state.votes_for(vote.candidate)})
    quorum_met = len(signers) >= escalation.reviewers_required

    order: RestrictionOrdered | None = None
    lifted: UUID | None = None
    if quorum_met:
        if decision.decision is EscalationDecision.RESTRICT:
            assert decision.order is not None and sha is not None
            order = _final_order(state, decision, decision.order, sha, signers, now)
            state = replace(
                state,
                status=EscalationStatus.RESTRICTED,
                order_id=order.order_id,
                decided_at=now,
            )
        else:
            if state.interim_in_force:
                lifted = state.interim_order_id
                state = replace(state, interim_lifted_at=now)
            if decision.decision.concludes:
                state = replace(state, status=CONCLUDING_STATUS[decision.decision], decided_at=now)

    decided = EscalationDecided(
        escalation_id=escalation.escalation_id,
        submission_id=escalation.submission_id,
        model_id=escalation.model_id,
        reviewer_id=decision.reviewer_id,
        decision=decision.decision,
        rationale=decision.justification,
        order_id=order_id(escalation.escalation_id, sha) if sha is not None else None,
        decided_at=now,
        signature=ReviewerSignature.model_validate(decision.signature.model_dump()),
        decision_id=decision.decision_id,
        order_sha256=sha,
        reviewers_required=escalation.reviewers_required,
        signed_by=signers,
        quorum_met=quorum_met,
        lifted_order_id=lifted,
    )
    return DecisionAccepted(state, decided, order, lifted)


def lift_order(
    escalation: Escalation,
    accepted: DecisionAccepted,
    decision: ReviewerDecisionSubmitted,
    now: datetime,
) -> RestrictionLiftOrdered:
    """The order to lift the interim order, for the access service, when the quorum on a
    decision lifted it (``accepted.lifted_order_id``): signed by those who reached it."""
    if accepted.lifted_order_id is None:
        raise ValueError(f"decision {decision.decision_id} lifted no order")
    return RestrictionLiftOrdered(
        order_id=accepted.lifted_order_id,
        submission_id=escalation.submission_id,
        model_id=escalation.model_id,
        escalation_id=escalation.escalation_id,
        reviewer_ids=accepted.decided.signed_by,
        reason=decision.justification,
        lifted_at=now,
    )


def decided_event_id(decision_id: UUID) -> str:
    """Deterministic: one EscalationDecided per accepted decision."""
    return str(uuid.uuid5(DECISION_NAMESPACE, f"{decision_id}/decided"))


def lift_event_id(order_id: UUID) -> str:
    """Deterministic: an order is lifted once."""
    return str(uuid.uuid5(DECISION_NAMESPACE, f"{order_id}/lift"))


def rejection(
    refusal: Refusal,
    *,
    sender: Authenticated | None,
    event_id: str | None,
    now: datetime,
    decision: ReviewerDecisionSubmitted | None = None,
    received_sha256: str | None = None,
) -> ReviewerDecisionRejected:
    """The reviewer's answer to a refused decision.

    ``sender`` is the reviewer the decision authenticated as, or None: then the answer
    tells only ``authentication_failed`` (unless the refusal is about the shape of the
    bytes, ``services.trust.refusal.answer_fields``) and names only the refused event (it
    is keyed by that event's id), never the submission, so an unauthenticated sender can
    neither probe the registry nor add records to a submission's history.
    """
    trusted = sender is not None
    named = decision is not None and (trusted or event_id is None)
    return ReviewerDecisionRejected(
        **answer_fields(refusal, sender),
        rejected_event_id=event_id,
        rejected_at=now,
        submission_id=decision.submission_id if named and decision else None,
        escalation_id=decision.escalation_id if decision else None,
        reviewer_id=decision.reviewer_id if decision else None,
        decision_id=decision.decision_id if decision else None,
        received_sha256=received_sha256,
    )


def invalid_rejection(
    refusal: Refusal, addressing: Addressing, now: datetime
) -> ReviewerDecisionRejected | None:
    """The answer to a record that is not a valid ReviewerDecisionSubmitted, or None when
    nobody could match one to what they sent (no readable event id): it is dead-lettered.

    Such a record is not authenticated: the answer is keyed by its event id alone and
    tells only what is wrong with the bytes.
    """
    if addressing.event_id is None:
        return None
    return ReviewerDecisionRejected(
        **answer_fields(refusal),
        rejected_event_id=addressing.event_id,
        rejected_at=now,
        reviewer_id=addressing.principal_id,
    )


def _check_content(
    escalation: Escalation, decision: ReviewerDecisionSubmitted, now: datetime
) -> Refusal | None:
    if decision.decision is EscalationDecision.LIFT_INTERIM:
        if not escalation.interim_in_force:
            return Refusal(
                RejectionReason.NO_INTERIM_ORDER,
                f"escalation {escalation.escalation_id} has no interim order in force",
            )
        if decision.interim_order_id != escalation.interim_order_id:
            return Refusal(
                RejectionReason.NO_INTERIM_ORDER,
                f"the interim order in force is {escalation.interim_order_id}, not "
                f"{decision.interim_order_id}",
                (FieldError(path="data.interim_order_id", message="not the interim order"),),
            )
    if decision.order is not None:
        spec = decision.order
        if spec.compliance_deadline <= now:
            return Refusal(
                RejectionReason.ORDER_OUTDATED,
                f"the order's compliance deadline {spec.compliance_deadline.isoformat()} has "
                "passed; sign an order with a later deadline",
                (FieldError(path="data.order.compliance_deadline", message="in the past"),),
            )
        if spec.expires_at is not None and spec.expires_at <= now:
            return Refusal(
                RejectionReason.ORDER_OUTDATED,
                f"the order expired at {spec.expires_at.isoformat()}",
                (FieldError(path="data.order.expires_at", message="in the past"),),
            )
    return None


def _final_order(
    escalation: Escalation,
    decision: ReviewerDecisionSubmitted,
    spec: RestrictionOrderSpec,
    sha: str,
    signers: list[str],
    now: datetime,
) -> RestrictionOrdered:
    return RestrictionOrdered(
        order_id=order_id(escalation.escalation_id, sha),
        submission_id=escalation.submission_id,
        model_id=escalation.model_id,
        escalation_id=escalation.escalation_id,
        interim=False,
        reviewer_id=decision.reviewer_id,
        scope=as_scope(spec.scope),
        supersedes=escalation.interim_order_id if escalation.interim_in_force else None,
        ordered_at=now,
        effective_at=max(spec.effective_at, now),
        expires_at=spec.expires_at,
        compliance_deadline=spec.compliance_deadline,
        reviewer_ids=signers,
        order_sha256=sha,
        level=escalation.level,
        domains=list(escalation.domains),
        policy_version=escalation.policy_version,
    )


def _candidate(vote: Vote) -> str:
    if vote.order_sha256:
        return f"{vote.decision} (order {vote.order_sha256[:12]})"
    return str(vote.decision)


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "an unknown time"
