"""Concluding a review: the one ReviewConcluded per submission, saying what the lab may
and may not do.

The framework is voluntary: the agency cannot hold a release, so every outcome says the
lab may release the model. What differs is what the agency asks of it:

- ``cleared``: nothing was escalated, or every escalation was decided without a
  restriction in force (dismissed, or kept under monitoring): no objection.
- ``restrictions_ordered``: the reviewers ordered restrictions that are in force: release
  with access restricted as ordered, and acknowledge enforcement by the deadline.
- ``pending_review``: an escalation still awaits its decision: the lab may release, the
  interim restriction (if any) applies, and a decision is due by the escalation's deadline.

When: after the window closed, as soon as the evaluation has reported its end, or once
the policy's grace after the close has passed (``conclusion_due``). Exactly once: a
concluded review concludes no more (``conclude`` returns None), and the event id is
derived from the submission id, so a second one could not even be queued.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events import RiskAssessed
from contracts.events.risk import ReviewConcluded, ReviewOutcome
from services.risk.model import Escalation, EscalationStatus, Order, Review

CONCLUSION_NAMESPACE = UUID("8a2d4f6b-1c3e-4a5b-9d7f-0e2c4a6b8d91")
MAX_TEXT = 4000


def conclusion_due(review: Review, now: datetime, grace: timedelta) -> bool:
    """The window closed, the review is not concluded (nor withdrawn), and the evaluation
    reported its end or the grace after the close has passed."""
    if review.window_closed_at is None or review.concluded_at or review.withdrawn_at:
        return False
    return review.evaluation.ended or now >= review.window_closed_at + grace


def conclude(
    review: Review,
    escalations: Sequence[Escalation],
    orders: Sequence[Order],
    last_assessment: RiskAssessed | None,
    now: datetime,
) -> ReviewConcluded | None:
    """The review's conclusion, or None if it was concluded already or withdrawn."""
    if review.concluded_at is not None or review.withdrawn_at is not None:
        return None
    if review.window_closed_at is None or review.window_deadline is None:
        raise ValueError(f"the review window of {review.submission_id} has not closed")
    pending = sorted(
        (e for e in escalations if e.status is EscalationStatus.OPEN),
        key=lambda e: (e.decide_by, str(e.escalation_id)),
    )
    in_force = sorted((o for o in orders if o.in_force(now)), key=lambda o: str(o.order_id))
    final = [o for o in in_force if not o.interim]
    monitoring = any(e.status is EscalationStatus.MONITORING for e in escalations)
    level = last_assessment.overall_level if last_assessment else None

    may: list[str] = []
    may_not: list[str] = [_order_text(o) for o in in_force]
    if pending:
        outcome = ReviewOutcome.PENDING_REVIEW
        first = pending[0]
        may.append(
            "release the model: the review is voluntary and does not hold a release; the "
            f"reviewers' decision on escalation {first.escalation_id} ({first.level}, "
            f"{', '.join(first.domains)}) is due by {first.decide_by.isoformat()} and may "
            "order restrictions"
        )
    elif final:
        outcome = ReviewOutcome.RESTRICTIONS_ORDERED
        may.append("release the model, with access restricted as the orders below require")
    else:
        outcome = ReviewOutcome.CLEARED
        may.append(
            "release the model: the agency has no objection"
            + (f" (overall level {level})" if level else "")
            + ("; its findings stay under monitoring" if monitoring else "")
        )
    if last_assessment is not None and last_assessment.evaluation_incomplete:
        may.append(
            "note: the evaluation was incomplete when the window closed; findings recorded "
            "later may still be assessed and escalated"
        )
    return ReviewConcluded(
        submission_id=review.submission_id,
        lab_id=review.lab_id,
        model_id=review.model_id,
        outcome=outcome,
        overall_level=level,
        policy_version=last_assessment.policy_version if last_assessment else None,
        evaluation_incomplete=bool(last_assessment and last_assessment.evaluation_incomplete),
        order_ids=[o.order_id for o in in_force],
        pending_escalation_ids=[e.escalation_id for e in pending],
        decision_due=pending[0].decide_by if pending else None,
        monitoring=monitoring,
        may=[_text(text) for text in may],
        may_not=[_text(text) for text in may_not[:20]],
        window_deadline=review.window_deadline,
        concluded_at=now,
    )


def conclusion_event_id(submission_id: UUID) -> str:
    return str(uuid.uuid5(CONCLUSION_NAMESPACE, f"{submission_id}/review-concluded"))


def _order_text(order: Order) -> str:
    kind = "interim order" if order.interim else "order"
    until = f" until {order.expires_at.isoformat()}" if order.expires_at else " until lifted"
    text = (
        f"give model access to {order.scope.describe()}, from "
        f"{order.effective_at.isoformat()}{until} ({kind} {order.order_id}; the access policy "
        "feed carries its exact scope)"
    )
    if order.compliance_deadline is not None:
        text += f"; acknowledge enforcement by {order.compliance_deadline.isoformat()}"
    return text


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
