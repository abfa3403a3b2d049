"""Escalations and the reviewers' quorum on the running service (real Kafka + PostgreSQL):
the interim restriction at once, the two-person rule, one signature per reviewer, forged,
replayed and unregistered decisions refused with what the reviewer's client shows, lifting
by quorum, undecodable input answered, and the one reminder when the deadline passes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.events import (
    EscalationDecided,
    EscalationRaised,
    RestrictionOrdered,
    ReviewerDecisionRejected,
)
from contracts.events.common import RejectionReason
from contracts.events.risk import EscalationDecision, EscalationOverdue, RestrictionLiftOrdered
from services.risk.app import SCHEMA
from services.risk.reviewer import build_decision, prepare, send, submit
from services.runtime.database import connect
from services.trust import registry
from services.trust.principals import REVIEWER, PrincipalKey
from tests.kit import wait_for
from tests.risk.rig import Rig, Submission

RESTRICT, DISMISS, MONITOR, LIFT = (
    EscalationDecision.RESTRICT,
    EscalationDecision.NO_RESTRICTION,
    EscalationDecision.MONITOR,
    EscalationDecision.LIFT_INTERIM,
)


async def critical(rig: Rig) -> tuple[Submission, EscalationRaised]:
    """A submission whose cyber proxy found everything: critical, escalated, interim order."""
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    await rig.one(sub, RestrictionOrdered)
    return sub, await rig.one(sub, EscalationRaised)


async def audited(rig: Rig, kind: str, **content: object) -> list[dict[str, object]]:
    rows = await rig.fetch("SELECT content FROM audit_log WHERE kind = $1 ORDER BY sequence", kind)
    found = [json.loads(r["content"]) for r in rows]
    return [c for c in found if all(c.get(k) == v for k, v in content.items())]


async def test_a_critical_escalation_orders_the_policys_interim_restriction_at_once(
    rig: Rig,
) -> None:
    sub, raised = await critical(rig)
    (interim,) = rig.of(sub, RestrictionOrdered)
    assert (raised.level, raised.domains, raised.reviewers_required) == ("critical", ["cyber"], 2)
    assert raised.recommended_actions == [
        "restrict_foreign_national_access",
        "delay_release",
        "notify_agencies",
    ]
    assert raised.decide_by is not None and raised.decide_by > raised.raised_at
    assert interim.interim and interim.order_id == raised.interim_order_id
    assert interim.scope.country_groups == ["arms-embargoed"]
    assert interim.scope.verification_statuses == ["unverified", "pending"]
    assert interim.compliance_deadline == interim.ordered_at + timedelta(hours=4)
    kinds = await rig.fetch(
        "SELECT kind FROM audit_log WHERE subject = $1 ORDER BY sequence", str(sub.submission_id)
    )
    assert [r["kind"] for r in kinds] == [
        "assessment_escalated",
        "escalation_raised",
        "order_issued",
    ]


async def test_one_signature_is_not_enough_for_a_critical_restriction(rig: Rig) -> None:
    sub, raised = await critical(rig)
    answer = await rig.decide(
        "r1", raised.escalation_id, sub.submission_id, RESTRICT, order=rig.order()
    )
    assert answer.accepted, answer.summary
    decided = answer.event.data
    assert isinstance(decided, EscalationDecided)
    assert (decided.quorum_met, decided.signed_by, decided.reviewers_required) == (False, ["r1"], 2)
    assert "1 of 2 signature(s)" in answer.summary
    await rig.events.linger(1.0)
    assert [o.interim for o in rig.of(sub, RestrictionOrdered)] == [True], "no final order yet"


async def test_a_reviewer_who_signed_cannot_sign_again(rig: Rig) -> None:
    sub, raised = await critical(rig)
    order = rig.order()
    first = await rig.decide("r1", raised.escalation_id, sub.submission_id, RESTRICT, order=order)
    assert first.accepted
    again = await rig.decide("r1", raised.escalation_id, sub.submission_id, RESTRICT, order=order)
    assert not again.accepted
    refused = again.event.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.ALREADY_SIGNED, "authenticated: the precise reason"
    assert refused.submission_id == sub.submission_id
    assert "r1 already signed restrict" in again.summary


async def test_two_reviewers_signing_the_same_order_restrict_and_supersede_the_interim(
    rig: Rig,
) -> None:
    sub, raised = await critical(rig)
    order = rig.order(nationality_rule="most_recent", nationalities=["KP", "IR"])
    assert (
        await rig.decide("r1", raised.escalation_id, sub.submission_id, RESTRICT, order=order)
    ).accepted
    second = await rig.decide("r2", raised.escalation_id, sub.submission_id, RESTRICT, order=order)
    decided = second.event.data
    assert isinstance(decided, EscalationDecided) and decided.quorum_met
    assert decided.signed_by == ["r1", "r2"]
    await rig.events.wait(lambda: len(rig.of(sub, RestrictionOrdered)) == 2)
    final = next(o for o in rig.of(sub, RestrictionOrdered) if not o.interim)
    assert final.order_id == decided.order_id
    assert final.supersedes == raised.interim_order_id
    assert final.reviewer_ids == ["r1", "r2"] and final.reviewer_id == "r2"
    assert sorted(final.scope.nationalities) == ["IR", "KP"]


async def test_different_orders_do_not_add_up_to_a_quorum(rig: Rig) -> None:
    sub, raised = await critical(rig)
    one = rig.order(nationalities=["KP"])
    other = rig.order(nationalities=["IR"])
    assert (
        await rig.decide("r1", raised.escalation_id, sub.submission_id, RESTRICT, order=one)
    ).accepted
    answer = await rig.decide("r2", raised.escalation_id, sub.submission_id, RESTRICT, order=other)
    decided = answer.event.data
    assert isinstance(decided, EscalationDecided)
    assert not decided.quorum_met and decided.signed_by == ["r2"]
    await rig.events.linger(1.0)
    assert [o.interim for o in rig.of(sub, RestrictionOrdered)] == [True]


async def test_a_forged_decision_is_refused_and_told_only_authentication_failed(
    rig: Rig,
) -> None:
    sub, raised = await critical(rig)
    forger = Ed25519PrivateKey.generate()  # r1's id and key id, somebody else's key
    answer = await rig.decide("r1", raised.escalation_id, sub.submission_id, DISMISS, key=forger)
    refused = answer.event.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.AUTHENTICATION_FAILED
    assert refused.submission_id is None, "keyed by the refused event, not the submission"
    assert "refused (authentication_failed)" in answer.summary
    (entry,) = await audited(rig, "decision_refused", event_id=refused.rejected_event_id)
    assert entry["reason"] == "bad_signature" and entry["authenticated"] is False


async def test_a_replayed_decision_is_refused(rig: Rig) -> None:
    sub, raised = await critical(rig)
    reviewer = rig.reviewers["r1"]
    signed = build_decision(
        escalation_id=raised.escalation_id,
        submission_id=sub.submission_id,
        reviewer_id="r1",
        key_id=reviewer.key_id,
        key=reviewer.key,
        decision=MONITOR,
        justification="Keep watching.",
    )
    assert (await submit(rig.settings, signed)).accepted
    replay = await submit(rig.settings, signed)  # the same signed data, sent again
    refused = replay.event.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.AUTHENTICATION_FAILED
    (entry,) = await audited(rig, "decision_refused", event_id=refused.rejected_event_id)
    assert entry["reason"] == "replayed_nonce"
    assert len(rig.of(sub, EscalationDecided)) == 1


async def test_a_decision_of_an_unregistered_reviewer_is_refused(rig: Rig) -> None:
    """Refused on the agency's record (an unregistered reviewer has no feed of its own,
    nor a Kafka principal to send with: a registered one's sent this), and audited."""
    sub, raised = await critical(rig)
    signed = build_decision(
        escalation_id=raised.escalation_id,
        submission_id=sub.submission_id,
        reviewer_id="mallory",
        key_id="mallory-k1",
        key=Ed25519PrivateKey.generate(),
        decision=DISMISS,
        justification="Let it go.",
    )
    sent = prepare(signed)
    await rig.producer.send(
        rig.settings.topic("reviewers.decisions"), sent.raw, str(sub.submission_id)
    )
    event_id = sent.event.id
    await rig.events.wait(lambda: bool(rig.events.of(event_id, ReviewerDecisionRejected)))
    (refusal,) = rig.envelopes(event_id, ReviewerDecisionRejected)
    answer = sent.answer(refusal)
    assert answer is not None and not answer.accepted
    refused = refusal.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.AUTHENTICATION_FAILED
    (entry,) = await audited(rig, "decision_refused", event_id=refused.rejected_event_id)
    assert entry["reason"] == "unknown_principal"


async def test_a_forged_copy_of_an_event_id_does_not_answer_the_genuine_decision(
    rig: Rig,
) -> None:
    """A forger copies the event id of a genuine decision onto a forged record: its refusal
    names that event id but not the data the reviewer signed, and the genuine decision
    under the same id is still applied and answered as accepted."""
    sub, raised = await critical(rig)
    reviewer = rig.reviewers["r3"]
    genuine = build_decision(
        escalation_id=raised.escalation_id,
        submission_id=sub.submission_id,
        reviewer_id="r3",
        key_id=reviewer.key_id,
        key=reviewer.key,
        decision=MONITOR,
        justification="Keep watching.",
    )
    event_id = str(uuid.uuid4())
    sent = prepare(genuine, event_id=event_id)
    forged = prepare(genuine.model_copy(update={"justification": "Forged."}), event_id=event_id)
    await rig.producer.send(
        rig.settings.topic("reviewers.decisions"), forged.raw, str(sub.submission_id)
    )
    await rig.events.wait(lambda: bool(rig.events.of(event_id, ReviewerDecisionRejected)))
    (refusal,) = rig.envelopes(event_id, ReviewerDecisionRejected)
    assert isinstance(refusal.data, ReviewerDecisionRejected)
    assert refusal.data.rejected_event_id == event_id
    assert sent.answer(refusal) is None, "the genuine client does not take it for its answer"
    assert forged.answer(refusal) is not None
    answer = await send(rig.settings, sent)
    assert answer.accepted, answer.summary


async def test_dismissal_by_the_quorum_orders_the_interim_restriction_lifted(rig: Rig) -> None:
    sub, raised = await critical(rig)
    assert (await rig.decide("r1", raised.escalation_id, sub.submission_id, DISMISS)).accepted
    answer = await rig.decide("r2", raised.escalation_id, sub.submission_id, DISMISS)
    decided = answer.event.data
    assert isinstance(decided, EscalationDecided) and decided.quorum_met
    assert decided.lifted_order_id == raised.interim_order_id
    lift = await rig.one(sub, RestrictionLiftOrdered)
    assert (lift.order_id, lift.reviewer_ids) == (raised.interim_order_id, ["r1", "r2"])
    late = await rig.decide(
        "r3", raised.escalation_id, sub.submission_id, RESTRICT, order=rig.order()
    )
    assert isinstance(late.event.data, ReviewerDecisionRejected)
    assert late.event.data.reason is RejectionReason.ESCALATION_CONCLUDED


async def test_a_record_that_is_no_decision_is_answered_to_its_event_id(rig: Rig) -> None:
    event_id, subject = str(uuid.uuid4()), str(uuid.uuid4())
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/reviewers/r1",
        "type": "frontier_review.reviewers.ReviewerDecisionSubmitted",
        "subject": subject,
        "time": datetime.now().astimezone().isoformat(),
        "datacontenttype": "application/json",
        "data": {"reviewer_id": "r1", "decision": "restrict", "surprise": True},
    }
    await rig.producer.send(
        rig.settings.topic("reviewers.decisions"),
        json.dumps(document).encode(),
        subject,
    )
    await rig.events.wait(lambda: bool(rig.events.of(event_id, ReviewerDecisionRejected)))
    (refused,) = rig.events.of(event_id, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.SCHEMA_VIOLATION
    assert refused.rejected_event_id == event_id and refused.submission_id is None
    assert any(e.path.endswith("surprise") for e in refused.field_errors)


async def test_an_escalation_past_its_deadline_gets_one_reminder(rig: Rig) -> None:
    sub, raised = await critical(rig)
    assert (
        await rig.decide("r1", raised.escalation_id, sub.submission_id, RESTRICT, order=rig.order())
    ).accepted
    assert raised.decide_by is not None
    rig.clock.advance((raised.decide_by - rig.clock.now()).total_seconds() + 1)
    reminder = await rig.one(sub, EscalationOverdue)
    assert reminder.escalation_id == raised.escalation_id
    assert reminder.interim_order_id == raised.interim_order_id
    assert [t.signed_by for t in reminder.tallies] == [["r1"]]
    rig.clock.advance(3600)
    await rig.events.linger(2.0)
    assert len(rig.of(sub, EscalationOverdue)) == 1
    await wait_for(
        lambda: _fired(rig, str(raised.escalation_id)), what="the deadline timer marked fired"
    )


async def _fired(rig: Rig, key: str) -> bool:
    rows = await rig.fetch(
        "SELECT state FROM timers WHERE kind = 'decision-deadline' AND key = $1", key
    )
    return [r["state"] for r in rows] == ["fired"]


async def test_a_decision_signed_with_a_revoked_key_is_refused(rig: Rig) -> None:
    sub, raised = await critical(rig)
    lost = Ed25519PrivateKey.generate()  # r3's second key, revoked before it signs
    now = datetime.now(UTC)
    public = lost.public_key().public_bytes_raw()
    async with connect(rig.settings, SCHEMA) as conn:
        record = PrincipalKey(
            "reviewer", "r3", "r3-k2", public, now - timedelta(minutes=1), None, None
        )
        assert await registry.add_key(conn, REVIEWER, record, now) is None
        assert await registry.revoke_key(conn, REVIEWER, "r3", "r3-k2", now, "lost") is None
    answer = await rig.decide(
        "r3", raised.escalation_id, sub.submission_id, DISMISS, key=lost, key_id="r3-k2"
    )
    refused = answer.event.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.AUTHENTICATION_FAILED
    (entry,) = await audited(rig, "decision_refused", event_id=refused.rejected_event_id)
    assert entry["reason"] == RejectionReason.REVOKED_KEY.value
    assert rig.of(sub, EscalationDecided) == []


async def test_a_decision_id_reused_for_another_decision_is_refused_as_a_conflict(
    rig: Rig,
) -> None:
    sub, raised = await critical(rig)
    decision_id = uuid.uuid4()

    def signed(reviewer: str, decision: EscalationDecision, **extra: Any) -> Any:
        who = rig.reviewers[reviewer]
        return build_decision(
            escalation_id=raised.escalation_id,
            submission_id=sub.submission_id,
            reviewer_id=reviewer,
            key_id=who.key_id,
            key=who.key,
            decision=decision,
            justification=f"{reviewer} checked the evidence.",
            decision_id=decision_id,
            **extra,
        )

    assert (await submit(rig.settings, signed("r1", RESTRICT, order=rig.order()))).accepted
    answer = await submit(rig.settings, signed("r2", DISMISS))  # r1's decision id, reused
    refused = answer.event.data
    assert isinstance(refused, ReviewerDecisionRejected)
    assert refused.reason is RejectionReason.CONFLICT, answer.summary
    assert len(rig.of(sub, EscalationDecided)) == 1
