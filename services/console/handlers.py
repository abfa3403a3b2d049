"""Thin adapters: each consumed event -> the pure folds -> the console's tables.

One handler per topic (the topic's every event type is wired to it: the console
shows whatever travels there, a type it has no fold for still gets its timeline
line). The console publishes nothing: a record it cannot read is logged and
skipped (``unreadable``), never dead-lettered by it; the services that consume
the same topic dead-letter it, and the console shows it from that DLQ.
"""

from __future__ import annotations

import logging

from contracts import CloudEvent, Event
from contracts.events import (
    AccessPolicyPublished,
    AuditCheckpoint,
    ComplianceOverdue,
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    FindingRecorded,
    Rejection,
    RestrictionLifted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
)
from services.console import projection, repository
from services.console.model import Escalation, EvaluationFacts, IntakeFacts, Order, RiskFacts
from services.runtime import Context, InvalidContext

log = logging.getLogger(__name__)


class ConsoleHandlers:
    def __init__(self, topic_prefix: str) -> None:
        self.prefix = topic_prefix

    def _topic(self, ctx: Context | InvalidContext) -> str:
        return ctx.record.topic.removeprefix(self.prefix)

    async def _common(self, ctx: Context, data: Event) -> None:
        """The timeline line and, for a rejection, the refusal: every topic's events."""
        entry = projection.timeline_entry(ctx.event, self._topic(ctx))
        if entry is not None:
            await repository.add(ctx.conn, entry)
        if isinstance(data, Rejection):
            await repository.add(ctx.conn, projection.refusal_of(ctx.event.id, data))

    # --- the pipeline's topics ---------------------------------------------------------

    async def intake(self, ctx: Context, data: Event) -> None:
        submission = getattr(data, "submission_id", None)
        if submission is not None:
            current = await repository.locked(ctx.conn, IntakeFacts, submission)
            folded = projection.fold_intake(current, data, traceparent=ctx.event.traceparent)
            if folded is not None and folded != current:
                await repository.save(ctx.conn, folded, ctx.now())
        await self._common(ctx, data)

    async def evaluation(self, ctx: Context, data: Event) -> None:
        if isinstance(data, FindingRecorded):
            await repository.add(ctx.conn, projection.finding_of(data))
        submission = getattr(data, "submission_id", None)
        if submission is not None:
            current = await repository.locked(ctx.conn, EvaluationFacts, submission)
            folded = projection.fold_evaluation(current, data)
            if folded is not None and folded != current:
                await repository.save(ctx.conn, folded, ctx.now())
        await self._common(ctx, data)

    async def risk(self, ctx: Context, data: Event) -> None:
        now = ctx.now()
        submission = getattr(data, "submission_id", None)
        if submission is not None:
            current = await repository.locked(ctx.conn, RiskFacts, submission)
            folded = projection.fold_risk(current, data)
            if folded is not None and folded != current:
                await repository.save(ctx.conn, folded, now)
        if isinstance(data, EscalationRaised | EscalationDecided | EscalationOverdue):
            known = await repository.locked(ctx.conn, Escalation, data.escalation_id)
            escalation = projection.fold_escalation(known, data)
            if escalation is not None and escalation != known:
                await repository.save(ctx.conn, escalation, now)
        if isinstance(data, EscalationRaised) and data.supersedes is not None:
            older = await repository.locked(ctx.conn, Escalation, data.supersedes)
            await repository.save(ctx.conn, projection.superseded(older, data), now)
        if isinstance(data, RestrictionOrdered | RestrictionLiftOrdered):
            known_order = await repository.locked(ctx.conn, Order, data.order_id)
            order = projection.fold_order(known_order, data)
            if order is not None and order != known_order:
                await repository.save(ctx.conn, order, now)
        if isinstance(data, RestrictionOrdered) and data.supersedes is not None:
            replaced = await repository.locked(ctx.conn, Order, data.supersedes)
            await repository.save(ctx.conn, projection.replaced(replaced, data), now)
        await self._common(ctx, data)

    async def access(self, ctx: Context, data: Event) -> None:
        if isinstance(data, RestrictionLifted):
            await repository.add(ctx.conn, projection.lift_of(data))
        elif isinstance(data, ComplianceOverdue):
            await repository.add(ctx.conn, projection.overdue_of(data))
        await self._common(ctx, data)

    async def policies(self, ctx: Context, data: AccessPolicyPublished) -> None:
        await repository.add(ctx.conn, projection.policy_of(data))
        await self._common(ctx, data)

    async def audit(self, ctx: Context, data: AuditCheckpoint) -> None:
        await repository.add(ctx.conn, projection.checkpoint_of(data))

    async def unreadable(self, ctx: InvalidContext) -> bool:
        """A record of a pipeline topic the console cannot read: its readers among the
        services dead-letter it (the console shows it from there); skip it."""
        log.warning(
            "console: skipped an unreadable record: %s",
            ctx.violation,
            extra={"topic": ctx.record.topic, "offset": ctx.record.offset},
        )
        return True

    # --- the DLQs ------------------------------------------------------------------------

    async def dead_letter(self, ctx: Context, data: Event) -> None:
        """A dead letter whose bytes are a valid event of its topic."""
        await self._dead_letter(ctx, ctx.event)

    async def undecodable_dead_letter(self, ctx: InvalidContext) -> bool:
        """A dead letter whose bytes are not (the usual kind): shown all the same."""
        await self._dead_letter(ctx, None)
        return True

    async def _dead_letter(
        self, ctx: Context | InvalidContext, event: CloudEvent[Event] | None
    ) -> None:
        record = ctx.record
        letter = projection.dead_letter_of(
            self._topic(ctx),
            record.partition,
            record.offset,
            key=record.key,
            headers=record.headers,
            value=ctx.raw,
            event=event,
        )
        await repository.add(ctx.conn, letter)
