"""Concluding reviews on the running service (real Kafka + PostgreSQL): one conclusion per
submission, exactly once, saying what the lab may and may not do."""

from __future__ import annotations

from contracts.events import EscalationRaised, RestrictionOrdered, RiskAssessed, SubmissionWithdrawn
from contracts.events.risk import EscalationDecision, ReviewConcluded, ReviewOutcome
from tests.kit import wait_for
from tests.risk.rig import Rig, Submission


async def concluded(rig: Rig, sub: Submission) -> ReviewConcluded:
    return await rig.one(sub, ReviewConcluded)


async def test_a_review_with_nothing_escalated_is_cleared_once_when_the_window_closes(
    rig: Rig,
) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 0.0))
    await rig.deliver(rig.completed(sub))
    await rig.one(sub, RiskAssessed)
    closed = rig.window_closed(sub)
    await rig.deliver(closed)
    conclusion = await concluded(rig, sub)
    assert conclusion.outcome is ReviewOutcome.CLEARED
    assert conclusion.lab_id == sub.lab_id and conclusion.model_id == sub.model_id
    assert conclusion.may[0].startswith("release the model: the agency has no objection")
    assert conclusion.may_not == [] and conclusion.order_ids == []
    await rig.deliver(closed)  # intake's event again, under a new event id
    await rig.deliver(rig.completed(sub))
    await rig.events.linger(2.0)
    assert len(rig.of(sub, ReviewConcluded)) == 1


async def test_the_lab_learns_a_clearance_once_on_its_own_feed_despite_redeliveries(
    rig: Rig,
) -> None:
    sub = await rig.submission()
    async with rig.lab_answers(sub.lab_id) as feed:
        await rig.deliver(rig.finding(sub, "cyber", 0.0))
        await rig.deliver(rig.completed(sub))
        await rig.one(sub, RiskAssessed)
        closed = await rig.deliver(rig.window_closed(sub))
        record = await concluded(rig, sub)
        await feed.wait(lambda: bool(feed.of(sub.submission_id)), what="the lab's copy")
        await rig.deliver(closed.data, event_id=closed.id)  # the same record redelivered
        await rig.deliver(closed.data)  # and intake's event again, under a new event id
        await rig.deliver(rig.completed(sub))
        await feed.linger(2.0)
        copies = feed.of(sub.submission_id)
    assert len(copies) == 1 and isinstance(copies[0], ReviewConcluded), copies
    (copy,) = copies
    assert copy.outcome is ReviewOutcome.CLEARED and copy.concluded_at == record.concluded_at
    assert copy.lab_id == sub.lab_id and copy.may == record.may
    parked = await rig.fetch("SELECT event_type FROM outbox_parked WHERE topic = $1", feed.topic)
    assert parked == [], "the owner copy was delivered, not parked for a missing feed"


async def test_a_review_closing_with_an_escalation_pending_says_what_applies_meanwhile(
    rig: Rig,
) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    raised = await rig.one(sub, EscalationRaised)
    await rig.deliver(rig.completed(sub))
    await rig.deliver(rig.window_closed(sub))
    conclusion = await concluded(rig, sub)
    assert conclusion.outcome is ReviewOutcome.PENDING_REVIEW
    assert conclusion.pending_escalation_ids == [raised.escalation_id]
    assert conclusion.decision_due == raised.decide_by
    assert conclusion.order_ids == [raised.interim_order_id]
    assert "interim order" in conclusion.may_not[0]
    assert "release the model" in conclusion.may[0]


async def test_a_restriction_ordered_before_the_close_is_the_conclusion(rig: Rig) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    raised = await rig.one(sub, EscalationRaised)
    order = rig.order(nationalities=["KP"])
    for reviewer in ("r1", "r2"):
        answer = await rig.decide(
            reviewer,
            raised.escalation_id,
            sub.submission_id,
            EscalationDecision.RESTRICT,
            order=order,
        )
        assert answer.accepted, answer.summary
    await rig.events.wait(lambda: len(rig.of(sub, RestrictionOrdered)) == 2)
    final = next(o for o in rig.of(sub, RestrictionOrdered) if not o.interim)
    await rig.deliver(rig.completed(sub))
    await rig.deliver(rig.window_closed(sub))
    conclusion = await concluded(rig, sub)
    assert conclusion.outcome is ReviewOutcome.RESTRICTIONS_ORDERED
    assert conclusion.order_ids == [final.order_id], "the interim order was superseded"
    assert "nationals (any citizenship) of KP" in conclusion.may_not[0]


async def test_a_withdrawn_submission_is_not_concluded(rig: Rig) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 0.0))
    await rig.deliver(
        SubmissionWithdrawn(
            submission_id=sub.submission_id,
            lab_id=sub.lab_id,
            model_id=sub.model_id,
            withdrawn_at=rig.clock.now(),
            requested_event_id="withdrawal-1",
        )
    )
    await wait_for(lambda: _withdrawn(rig, sub), what="the withdrawal applied")
    await rig.deliver(rig.completed(sub))
    await rig.deliver(rig.window_closed(sub))
    await rig.events.linger(2.0)
    assert rig.of(sub, ReviewConcluded) == []


async def test_without_the_evaluations_end_the_conclusion_waits_for_the_grace(rig: Rig) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 0.0))
    await rig.deliver(rig.window_closed(sub))
    await rig.one(sub, RiskAssessed)
    await rig.events.linger(1.5)
    assert rig.of(sub, ReviewConcluded) == [], "the policy's grace (1 h) has not passed"
    rig.clock.advance(3601)
    conclusion = await concluded(rig, sub)
    assert conclusion.outcome is ReviewOutcome.CLEARED


async def _withdrawn(rig: Rig, sub: Submission) -> bool:
    rows = await rig.fetch(
        "SELECT withdrawn_at FROM reviews WHERE submission_id = $1", sub.submission_id
    )
    return bool(rows) and rows[0]["withdrawn_at"] is not None
