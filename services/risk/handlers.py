"""Thin adapters: a delivery or a due timer -> the domain's decision -> state, audit, events.

Every handler first locks what it is about, in one order everywhere: the durable
timer it may move (the order the scheduler takes them in: timer, then state), then
the submission's ``reviews`` row, then (last, when it appends) the audit log's head.
So replicas never interleave a submission's writes, and its events leave in the
order they were decided. The deciding is the domain's (assessment, escalation,
decisions, conclusion, feed, audit); what is published and appended happens in the
transaction of the state change, through the outbox.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import rfc8785
from pydantic import BaseModel

from contracts.events import (
    ComplianceOverdue,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    FindingRecorded,
    RestrictionLifted,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionWithdrawn,
)
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.events.risk import ReviewConcluded, ReviewerDecisionRejected
from contracts.registry import subject_for
from services.risk import repository
from services.risk.assessment import reassess
from services.risk.audit import AuditKind, ServiceKey, checkpoint
from services.risk.conclusion import conclude, conclusion_event_id
from services.risk.decisions import (
    DecisionAccepted,
    Duplicate,
    decide,
    decided_event_id,
    invalid_rejection,
    lift_event_id,
    lift_order,
    rejection,
)
from services.risk.escalation import overdue_reminder, plan_escalation, reminder_event_id
from services.risk.feed import finding_shared, shared_event_id
from services.risk.model import EvaluationProgress, Review, SubmissionRef
from services.risk.orders import scaled
from services.risk.policy import ThresholdsPolicy
from services.risk.settings import RiskSettings
from services.runtime import Context, InvalidContext, Timer, TimerContext, TxContext
from services.trust.freshness import receipt
from services.trust.principals import REVIEWER
from services.trust.refusal import Refusal, shape_refusal, storable
from services.trust.registry import registered
from services.trust.unverified import check_subject, read_addressing, read_signed
from services.trust.verifier import Authenticated, authenticate

log = logging.getLogger(__name__)

DECISION_DEADLINE = "decision-deadline"  # per escalation: the one reminder (EscalationOverdue)
REVIEW_CONCLUSION = "review-conclusion"  # per submission: the one ReviewConcluded
AUDIT_CHECKPOINT = "audit-checkpoint"  # per interval: the one AuditCheckpoint


def publish_conclusion(ctx: TxContext, concluded: ReviewConcluded) -> None:
    """The review's outcome: the agency's record on risk.events, and the lab's copy on
    its own feed (labs.<lab>.answers)."""
    ctx.publish(concluded, event_id=conclusion_event_id(concluded.submission_id))
    ctx.publish_to_owner(concluded.lab_id, concluded)


def checkpoint_slot(now: datetime, interval_s: float) -> tuple[int, datetime]:
    """The next checkpoint interval after ``now``: its number (the timer key: one
    checkpoint per interval, whichever replica fires it) and when it begins."""
    slot = math.floor(now.timestamp() / interval_s) + 1
    return slot, datetime.fromtimestamp(slot * interval_s, UTC)


async def schedule_checkpoint(ctx: TxContext, interval_s: float) -> None:
    slot, due = checkpoint_slot(ctx.now(), interval_s)
    await ctx.schedule(AUDIT_CHECKPOINT, str(slot), due)


def received_sha256(data: dict[str, Any]) -> str:
    """What the reviewer's CLI matches a refusal by: the data as received, signature
    included (its digest succeeded, so RFC 8785 can canonicalise it)."""
    return hashlib.sha256(rfc8785.dumps(data)).hexdigest()


@dataclass
class RiskHandlers:
    settings: RiskSettings
    policy: ThresholdsPolicy
    service_key: ServiceKey | None = None  # loaded when the service starts

    @property
    def key(self) -> ServiceKey:
        if self.service_key is None:
            raise RuntimeError("the risk service's audit key is not loaded (start the service)")
        return self.service_key

    def scaled(self, duration: timedelta) -> timedelta:
        return scaled(duration, self.settings.risk_seconds_per_day)

    # --- intake.events -------------------------------------------------------------------

    async def accepted(self, ctx: Context, event: SubmissionAccepted) -> None:
        await repository.open_review(
            ctx.conn,
            event.submission_id,
            event.model_id,
            lab_id=event.lab_id,
            window_deadline=event.deadline,
        )

    async def withdrawn(self, ctx: Context, event: SubmissionWithdrawn) -> None:
        key = str(event.submission_id)
        await ctx.lock_timer(REVIEW_CONCLUSION, key)
        review = await repository.lock_review(ctx.conn, event.submission_id)
        if review is None:
            return  # never accepted, nothing assessed: nothing to conclude
        await repository.withdrawn(ctx.conn, event.submission_id, event.withdrawn_at)
        await ctx.cancel_timer(REVIEW_CONCLUSION, key)

    async def window_closed(self, ctx: Context, event: ReviewWindowClosed) -> None:
        """The conclusion is due once the evaluation reports its end, or after the grace."""
        key = str(event.submission_id)
        await ctx.lock_timer(REVIEW_CONCLUSION, key)
        review = await repository.open_review(
            ctx.conn,
            event.submission_id,
            event.model_id,
            lab_id=event.lab_id,
            window_deadline=event.deadline,
        )
        await repository.window_closed(ctx.conn, event.submission_id, event.closed_at)
        if review.withdrawn_at is not None or review.concluded_at is not None:
            return
        grace = self.scaled(self.policy.review.conclusion_grace)
        due = ctx.now() if review.evaluation.ended else event.closed_at + grace
        await ctx.schedule(REVIEW_CONCLUSION, key, due)

    # --- evaluation.events -----------------------------------------------------------------

    async def finding(self, ctx: Context, event: FindingRecorded) -> None:
        review = await repository.open_review(ctx.conn, event.submission_id, event.model_id)
        await repository.store_finding(ctx.conn, event, ctx.now())
        await self._reassess(ctx, review)

    async def started(self, ctx: Context, event: EvaluationStarted) -> None:
        review = await repository.open_review(ctx.conn, event.submission_id, event.model_id)
        await self._progressed(ctx, review, review.evaluation.started(event))

    async def failed(self, ctx: Context, event: EvaluationFailed) -> None:
        review = await repository.open_review(ctx.conn, event.submission_id, event.model_id)
        await self._progressed(ctx, review, review.evaluation.failed(event))

    async def completed(self, ctx: Context, event: EvaluationCompleted) -> None:
        key = str(event.submission_id)
        await ctx.lock_timer(REVIEW_CONCLUSION, key)
        review = await repository.open_review(ctx.conn, event.submission_id, event.model_id)
        await self._progressed(ctx, review, review.evaluation.completed(event))
        if review.window_closed_at is not None and review.concluded_at is None:
            await ctx.reschedule(REVIEW_CONCLUSION, key, ctx.now())  # no need to wait more

    async def _progressed(self, ctx: Context, review: Review, progress: EvaluationProgress) -> None:
        await repository.save_progress(ctx.conn, review.submission_id, progress)
        await self._reassess(ctx, replace(review, evaluation=progress))

    async def _reassess(self, ctx: TxContext, review: Review) -> None:
        """Apply the policy to what is known; publish only what changed."""
        sid = review.submission_id
        findings = await repository.findings_of(ctx.conn, sid)
        previous = await repository.last_assessment(ctx.conn, sid)
        ref = SubmissionRef(sid, review.model_id, review.lab_id)
        assessed = reassess(findings, review.evaluation, self.policy, ref, previous, ctx.now())
        if assessed is not None:
            await repository.save_assessment(ctx.conn, assessed)
            ctx.publish(assessed, event_id=str(assessed.assessment_id))
            if assessed.escalation_required:
                await self._audit(ctx, AuditKind.ASSESSMENT_ESCALATED, sid, assessed)
                await self._escalate(ctx, assessed)
        current = assessed or previous
        if current is None:
            return
        candidates = [finding_shared(f, current, ctx.now()) for f in findings]
        pairs = [(shared, shared_event_id(shared)) for shared in candidates]
        for shared, event_id in await repository.share(ctx.conn, pairs):
            ctx.publish(shared, event_id=event_id)

    async def _escalate(self, ctx: TxContext, assessed: RiskAssessed) -> None:
        sid = assessed.submission_id
        escalations = await repository.escalations_of(ctx.conn, sid)
        plan = plan_escalation(
            assessed,
            escalations,
            self.policy,
            ctx.now(),
            seconds_per_day=self.settings.risk_seconds_per_day,
        )
        if plan is None:
            return
        if plan.superseded is not None:  # saved first: one open escalation per submission
            await repository.save_escalation(ctx.conn, plan.superseded)
            await self._audit(
                ctx,
                AuditKind.ESCALATION_SUPERSEDED,
                sid,
                {
                    "escalation_id": str(plan.superseded.escalation_id),
                    "superseded_by": str(plan.escalation.escalation_id),
                },
            )
        escalation = plan.escalation
        await repository.save_escalation(ctx.conn, escalation)
        ctx.publish(plan.raised, event_id=str(escalation.escalation_id))
        await self._audit(ctx, AuditKind.ESCALATION_RAISED, sid, plan.raised)
        await ctx.schedule(
            DECISION_DEADLINE,
            str(escalation.escalation_id),
            escalation.decide_by,
            {"submission_id": str(sid)},
        )
        if plan.interim is not None:
            await repository.add_order(ctx.conn, plan.interim)
            ctx.publish(plan.interim, event_id=str(plan.interim.order_id))
            await self._audit(ctx, AuditKind.ORDER_ISSUED, sid, plan.interim)

    # --- reviewers.decisions ------------------------------------------------------------------

    async def decision(self, ctx: Context, event: ReviewerDecisionSubmitted) -> None:
        """A reviewer's signed decision: trust checks over the bytes as received, then the
        quorum rules. Refusals are answered (ReviewerDecisionRejected) and audited."""
        signed = read_signed(ctx.raw, principal_field="reviewer_id")
        if isinstance(signed, Refusal):
            await self._refuse(ctx, signed, event, sender=None, digest=None)
            return
        digest = received_sha256(signed.data)
        refusal = check_subject(ctx.event.subject, signed, "submission_id")
        if refusal is not None:
            await self._refuse(ctx, refusal, event, sender=None, digest=digest)
            return
        received = receipt(
            ctx.event.id,
            ctx.now(),
            timestamp_ms=ctx.record.timestamp_ms,
            log_append_time=ctx.record.log_append_time,
        )
        sender = await authenticate(
            ctx.conn, signed, kind=REVIEWER, received=received, policy=self.settings.freshness
        )
        if isinstance(sender, Refusal):
            log.info(
                "refused %s claiming reviewer %s: %s", ctx.event.id, signed.principal_id, sender
            )
            await self._refuse(ctx, sender, event, sender=None, digest=digest)
            return

        await ctx.lock_timer(DECISION_DEADLINE, str(event.escalation_id))
        await repository.lock_review(ctx.conn, event.submission_id)
        escalation = await repository.find_escalation(ctx.conn, event.escalation_id)
        prior = await repository.vote_by_decision_id(ctx.conn, event.decision_id)
        outcome = decide(escalation, event, ctx.now(), prior=prior)
        if isinstance(outcome, Duplicate):
            log.info("duplicate decision %s: %s", event.decision_id, outcome.detail)
            return
        if isinstance(outcome, Refusal):
            await self._refuse(ctx, outcome, event, sender=sender, digest=digest)
            return
        await self._apply(ctx, outcome, event, sender, signed.data)

    async def _apply(
        self,
        ctx: Context,
        accepted: DecisionAccepted,
        event: ReviewerDecisionSubmitted,
        sender: Authenticated,
        data: dict[str, Any],
    ) -> None:
        state = accepted.escalation
        sid = state.submission_id
        vote = next(v for v in state.votes if v.decision_id == event.decision_id)
        await repository.add_vote(
            ctx.conn,
            state.escalation_id,
            vote,
            justification=event.justification,
            key_id=sender.key_id,
            signed_data=data,
            event_id=ctx.event.id,
        )
        await repository.save_escalation(ctx.conn, state)
        decided = accepted.decided.model_copy(update={"decision_event_id": ctx.event.id})
        ctx.publish(decided, event_id=decided_event_id(event.decision_id))
        ctx.publish_to_owner(sender.principal_id, decided)
        await self._audit(ctx, AuditKind.DECISION_ACCEPTED, sid, data)
        if accepted.order is not None:
            await repository.add_order(ctx.conn, accepted.order)
            ctx.publish(accepted.order, event_id=str(accepted.order.order_id))
            await self._audit(ctx, AuditKind.ORDER_ISSUED, sid, accepted.order)
        if accepted.lifted_order_id is not None:
            lift = lift_order(state, accepted, event, ctx.now())
            await repository.lift_ordered(ctx.conn, lift.order_id, lift.lifted_at)
            ctx.publish(lift, event_id=lift_event_id(lift.order_id))
            await self._audit(ctx, AuditKind.LIFT_ORDERED, sid, lift)
        if state.status.final:
            await ctx.cancel_timer(DECISION_DEADLINE, str(state.escalation_id))

    async def _refuse(
        self,
        ctx: Context,
        refusal: Refusal,
        event: ReviewerDecisionSubmitted,
        *,
        sender: Authenticated | None,
        digest: str | None,
    ) -> None:
        answer = rejection(
            refusal,
            sender=sender,
            event_id=ctx.event.id,
            now=ctx.now(),
            decision=event,
            received_sha256=digest,
        )
        ctx.publish(answer)
        await self._tell_reviewer(ctx, answer, sender.principal_id if sender else None)
        # The audit keeps the precise reason, whoever sent it; for input that did not
        # authenticate it names only the refused event, as the answer does.
        await self._audit(
            ctx,
            AuditKind.DECISION_REFUSED,
            subject_for(answer),
            {
                "event_id": ctx.event.id,
                "authenticated": sender is not None,
                "reason": refusal.reason.value,
                "detail": storable(refusal.detail),
                "reviewer_id": event.reviewer_id,
                "escalation_id": str(event.escalation_id),
                "decision_id": str(event.decision_id),
                "received_sha256": digest,
            },
        )

    async def _tell_reviewer(
        self, ctx: TxContext, answer: ReviewerDecisionRejected, authenticated: str | None
    ) -> None:
        """The refusal on the reviewer's own feed: the authenticated sender's, or the
        registered reviewer the input claims to be (only reviewers' principals may write
        reviewers.decisions, so this is one of them, perhaps with a stale key)."""
        owner = authenticated or answer.reviewer_id
        if owner is not None and (authenticated or await registered(ctx.conn, REVIEWER, owner)):
            ctx.publish_to_owner(owner, answer)

    async def invalid(self, ctx: InvalidContext) -> bool:
        """A record on reviewers.decisions that is not a valid decision: answered to its
        event id when it has one (else dead-lettered), and audited."""
        addressing = read_addressing(
            ctx.raw, principal_field="reviewer_id", subject_field="submission_id"
        )
        refusal = shape_refusal(
            ctx.violation, "reviewers.decisions carries ReviewerDecisionSubmitted only"
        )
        reason = refusal.reason
        answer = invalid_rejection(refusal, addressing, ctx.now())
        if answer is None:
            return False
        ctx.publish(answer)
        await self._tell_reviewer(ctx, answer, None)
        await self._audit(
            ctx,
            AuditKind.DECISION_REFUSED,
            subject_for(answer),
            {
                "event_id": addressing.event_id,
                "authenticated": False,
                "reason": reason.value,
                "detail": storable(ctx.violation.detail),
            },
        )
        return True

    # --- access.events ------------------------------------------------------------------------

    async def restriction_lifted(self, ctx: Context, event: RestrictionLifted) -> None:
        await repository.lock_review(ctx.conn, event.submission_id)
        if not await repository.order_lifted(ctx.conn, event.order_id, event.lifted_at):
            log.warning("access lifted order %s, which risk did not issue", event.order_id)
        await self._audit(ctx, AuditKind.RESTRICTION_LIFTED, str(event.submission_id), event)

    async def compliance_overdue(self, ctx: Context, event: ComplianceOverdue) -> None:
        submission_id = await repository.submission_of_orders(ctx.conn, event.order_ids)
        if submission_id is not None:
            await repository.lock_review(ctx.conn, submission_id)
        subject = str(submission_id) if submission_id is not None else event.model_id
        await self._audit(ctx, AuditKind.COMPLIANCE_OVERDUE, subject, event)

    # --- durable timers ---------------------------------------------------------------------

    async def decision_overdue(self, ctx: TimerContext, timer: Timer) -> None:
        """The decision deadline passed: one reminder, if the escalation is still open."""
        await repository.lock_review(ctx.conn, UUID(timer.payload["submission_id"]))
        escalation = await repository.find_escalation(ctx.conn, UUID(timer.key))
        reminded = overdue_reminder(escalation, ctx.now()) if escalation else None
        if reminded is None:
            return
        reminder, state = reminded
        await repository.save_escalation(ctx.conn, state)
        ctx.publish(reminder, event_id=reminder_event_id(state.escalation_id))
        await self._audit(ctx, AuditKind.ESCALATION_OVERDUE, str(state.submission_id), reminder)

    async def conclusion_due(self, ctx: TimerContext, timer: Timer) -> None:
        """The window closed and the evaluation ended (or the grace passed): conclude."""
        sid = UUID(timer.key)
        review = await repository.lock_review(ctx.conn, sid)
        if review is None or review.window_closed_at is None:
            return
        concluded = conclude(
            review,
            await repository.escalations_of(ctx.conn, sid),
            await repository.orders_of(ctx.conn, sid),
            await repository.last_assessment(ctx.conn, sid),
            ctx.now(),
        )
        if concluded is None:
            return
        await repository.save_conclusion(ctx.conn, concluded)
        publish_conclusion(ctx, concluded)
        await self._audit(ctx, AuditKind.REVIEW_CONCLUDED, str(sid), concluded)

    async def checkpoint_due(self, ctx: TimerContext, timer: Timer) -> None:
        """This interval's signed checkpoint of the audit log's head, then the next one's
        timer (intervals missed while no replica ran are not made up: one is enough)."""
        await self.checkpoint(ctx, event_id=ctx.event_id("checkpoint"))
        await schedule_checkpoint(ctx, self.settings.risk_checkpoint_interval_s)

    async def checkpoint(self, ctx: TxContext, *, event_id: str | None = None) -> None:
        """A signed checkpoint of the head as committed, stored and published."""
        head = await repository.audit_head(ctx.conn)
        signed = checkpoint(head, ctx.now(), self.key)
        await repository.save_checkpoint(ctx.conn, signed)
        ctx.publish(signed, event_id=event_id)

    # --- internals ------------------------------------------------------------------------------

    async def _audit(
        self,
        ctx: TxContext,
        kind: AuditKind,
        subject: UUID | str,
        content: BaseModel | dict[str, Any],
    ) -> None:
        await repository.append_audit(ctx.conn, kind, str(subject), content, ctx.now(), self.key)
