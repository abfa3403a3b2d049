"""Concluding a review (pure): cleared, restrictions ordered, pending review; exactly once."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from contracts.events.evaluation import EvaluationEnd
from contracts.events.risk import ReviewOutcome
from services.risk.conclusion import conclude, conclusion_due, conclusion_event_id
from services.risk.model import (
    Escalation,
    EscalationStatus,
    EvaluationProgress,
    Order,
    Review,
)
from tests.risk.support import (
    MODEL_ID,
    NOW,
    SUBMISSION_ID,
    assessed,
    critical_cyber,
    finding,
    shipped_policy,
)

POLICY = shipped_policy()
CLOSED = NOW + timedelta(days=30)
REVIEW = Review(
    submission_id=SUBMISSION_ID,
    lab_id="demo-lab",
    model_id=MODEL_ID,
    window_deadline=CLOSED,
    window_closed_at=CLOSED,
)


def interim_order(escalation: Escalation) -> Order:
    plan = critical_cyber(POLICY)
    assert plan.interim is not None
    return Order(
        order_id=plan.interim.order_id,
        escalation_id=escalation.escalation_id,
        interim=True,
        scope=plan.interim.scope,
        effective_at=NOW,
        compliance_deadline=NOW + timedelta(hours=4),
    )


def final_order(escalation: Escalation, expires_at: datetime | None = None) -> Order:
    return replace(
        interim_order(escalation),
        interim=False,
        order_id=escalation.escalation_id,
        expires_at=expires_at or NOW + timedelta(days=180),
    )


def test_a_review_with_no_escalation_is_cleared_with_no_objection() -> None:
    last = assessed([finding(score=0.1)], POLICY)
    concluded = conclude(REVIEW, [], [], last, CLOSED)
    assert concluded is not None
    assert concluded.outcome is ReviewOutcome.CLEARED
    assert concluded.may == ["release the model: the agency has no objection (overall level low)"]
    assert concluded.may_not == [] and concluded.order_ids == []
    assert (concluded.lab_id, concluded.window_deadline, concluded.concluded_at) == (
        "demo-lab",
        CLOSED,
        CLOSED,
    )
    assert concluded.policy_version == POLICY.version


def test_restrictions_in_force_at_the_close_are_what_the_lab_may_not_do() -> None:
    escalation = replace(critical_cyber(POLICY).escalation, status=EscalationStatus.RESTRICTED)
    ordered = final_order(escalation)
    lifted = replace(interim_order(escalation), superseded_by=ordered.order_id)
    concluded = conclude(REVIEW, [escalation], [ordered, lifted], None, CLOSED)
    assert concluded is not None
    assert concluded.outcome is ReviewOutcome.RESTRICTIONS_ORDERED
    assert concluded.order_ids == [ordered.order_id]
    [may_not] = concluded.may_not
    assert "group arms-embargoed" in may_not and str(ordered.order_id) in may_not
    assert "acknowledge enforcement by" in may_not
    assert concluded.may[0].startswith("release the model, with access restricted")


def test_an_escalation_still_open_is_pending_review_with_its_interim_order() -> None:
    escalation = critical_cyber(POLICY).escalation
    concluded = conclude(REVIEW, [escalation], [interim_order(escalation)], None, CLOSED)
    assert concluded is not None
    assert concluded.outcome is ReviewOutcome.PENDING_REVIEW
    assert concluded.pending_escalation_ids == [escalation.escalation_id]
    assert concluded.decision_due == escalation.decide_by
    assert "does not hold a release" in concluded.may[0]
    assert concluded.may_not and "interim order" in concluded.may_not[0]


def test_an_escalation_dismissed_or_monitored_is_cleared() -> None:
    for status, monitoring in (
        (EscalationStatus.DISMISSED, False),
        (EscalationStatus.MONITORING, True),
    ):
        escalation = replace(critical_cyber(POLICY).escalation, status=status)
        lifted = replace(interim_order(escalation), lifted_at=NOW + timedelta(days=1))
        concluded = conclude(REVIEW, [escalation], [lifted], None, CLOSED)
        assert concluded is not None
        assert concluded.outcome is ReviewOutcome.CLEARED
        assert concluded.monitoring is monitoring
        assert concluded.order_ids == []


def test_an_order_that_expired_before_the_close_is_not_in_force() -> None:
    escalation = replace(critical_cyber(POLICY).escalation, status=EscalationStatus.RESTRICTED)
    expired = final_order(escalation, expires_at=CLOSED - timedelta(seconds=1))
    concluded = conclude(REVIEW, [escalation], [expired], None, CLOSED)
    assert concluded is not None and concluded.outcome is ReviewOutcome.CLEARED


def test_an_incomplete_evaluation_is_said() -> None:
    last = assessed([], POLICY, evaluation=EvaluationProgress((), EvaluationEnd.WINDOW_CLOSED))
    concluded = conclude(REVIEW, [], [], last, CLOSED)
    assert concluded is not None and concluded.evaluation_incomplete
    assert any("incomplete" in text for text in concluded.may)


def test_a_review_concludes_once_and_a_withdrawn_one_never() -> None:
    assert conclude(replace(REVIEW, concluded_at=CLOSED), [], [], None, CLOSED) is None
    assert conclude(replace(REVIEW, withdrawn_at=NOW), [], [], None, CLOSED) is None
    assert conclusion_event_id(SUBMISSION_ID) == conclusion_event_id(SUBMISSION_ID)


def test_a_review_whose_window_is_open_cannot_conclude() -> None:
    with pytest.raises(ValueError, match="has not closed"):
        conclude(replace(REVIEW, window_closed_at=None), [], [], None, CLOSED)


def test_the_conclusion_waits_for_the_evaluation_or_the_grace_period() -> None:
    grace = POLICY.review.conclusion_grace
    assert not conclusion_due(replace(REVIEW, window_closed_at=None), CLOSED, grace)
    assert not conclusion_due(REVIEW, CLOSED, grace), "evaluation has not reported its end"
    assert conclusion_due(REVIEW, CLOSED + grace, grace)
    ended = replace(REVIEW, evaluation=EvaluationProgress((), EvaluationEnd.WINDOW_CLOSED))
    assert conclusion_due(ended, CLOSED, grace)
    assert not conclusion_due(replace(ended, concluded_at=CLOSED), CLOSED, grace)
