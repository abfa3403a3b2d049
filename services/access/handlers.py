"""Thin adapters: records and timers -> the pure decisions -> state, timers and events.

Every change of a model's policy first locks the model's row (``lock_model``),
so versions are assigned one at a time across replicas; timers are locked by
the scheduler before their handler locks the model, the order the runtime asks
for (timer, then state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from contracts import ContractViolation
from contracts.events.access import ComplianceRejected
from contracts.events.intake import LabRegistryChanged
from contracts.events.lab import ComplianceAcknowledged
from contracts.events.risk import RestrictionLiftOrdered, RestrictionOrdered
from services.access import repository
from services.access.compliance import check_acknowledgement, overdue, overdue_event_id, rejection
from services.access.country_groups import CountryGroups
from services.access.model import ModelPolicy, OrderRecord, lab_of
from services.access.policies import (
    Duplicate,
    expire_order,
    lift_order,
    lifted,
    lifted_event_id,
    next_version,
    overdue_deadline,
    policy_event_id,
    receive_order,
    take_effect,
)
from services.access.policies import deadlines as order_deadlines
from services.access.settings import AccessSettings
from services.runtime import Context, InvalidContext, PermanentError, Timer, TimerContext, TxContext
from services.trust.answers import AnswerLimit
from services.trust.freshness import FreshnessPolicy, receipt
from services.trust.principals import LAB
from services.trust.refusal import Refusal, answer_fields, shape_refusal
from services.trust.registry import registered
from services.trust.replica import Stale, apply_lab_snapshot
from services.trust.unverified import check_subject, model_id, read_addressing, read_signed
from services.trust.verifier import Authenticated, authenticate

log = logging.getLogger(__name__)

UNKNOWN_ORDER = "unknown_order"


class AccessHandlers:
    def __init__(
        self, settings: AccessSettings, groups: CountryGroups, freshness: FreshnessPolicy
    ) -> None:
        self.settings = settings
        self.groups = groups
        self.freshness = freshness
        self.refusals_answered = AnswerLimit(settings.access_refusals_answered_per_hour)

    # --- risk.events ------------------------------------------------------------------

    async def ordered(self, ctx: Context, order: RestrictionOrdered) -> None:
        """A restriction order: record it, schedule its times, publish the next version."""
        now = ctx.now()
        await repository.lock_model(ctx.conn, order.model_id, lab_of(order.model_id), now)
        records = await repository.model_orders(ctx.conn, order.model_id)
        if order.supersedes is not None and order.supersedes not in records:
            named = await repository.find_order(ctx.conn, order.supersedes)
            if named is not None:  # another model's: receive_order refuses it
                records[named.order_id] = named
        change = receive_order(order, records, now)
        if isinstance(change, Duplicate):
            return
        if isinstance(change, Refusal):
            # risk's own output contradicting itself: the operator's to sort out.
            raise PermanentError(change.reason.value, change.detail)
        await repository.save_orders(ctx.conn, change.records, now)
        for deadline in order_deadlines(change, now):
            await ctx.schedule(deadline.kind, deadline.key, deadline.due_at, deadline.payload)
        records.update({r.order_id: r for r in change.records})
        await self._publish_next(ctx, order.model_id, records.values(), now)

    async def lift_ordered(self, ctx: Context, lift: RestrictionLiftOrdered) -> None:
        """The reviewers lifted an order: a version without it, and RestrictionLifted."""
        now = ctx.now()
        await repository.lock_model(ctx.conn, lift.model_id, lab_of(lift.model_id), now)
        records = await repository.model_orders(ctx.conn, lift.model_id)
        record = records.get(lift.order_id)
        if record is None:
            raise PermanentError(
                UNKNOWN_ORDER, f"order {lift.order_id} of {lift.model_id} was never received"
            )
        reviewers = ", ".join(lift.reviewer_ids)
        ended = lift_order(
            record,
            reviewer_id=lift.reviewer_ids[0],
            reason=f"{lift.reason} (lifted by the quorum of {reviewers})",
            now=now,
        )
        if isinstance(ended, Refusal):
            log.info("lift of order %s ignored: %s", lift.order_id, ended)
            return
        await self._end(ctx, ended, records, now, announce=True)

    # --- intake.registry ----------------------------------------------------------------

    async def lab_registry_changed(self, ctx: Context, snapshot: LabRegistryChanged) -> None:
        """A lab's entry in intake's registry: the keys acknowledgements are verified with
        follow it (an older or repeated version changes nothing)."""
        outcome = await apply_lab_snapshot(ctx.conn, snapshot, ctx.now())
        if isinstance(outcome, Refusal):
            # intake's registry contradicting this copy: the operator's to sort out.
            raise PermanentError(outcome.reason.value, outcome.detail)
        if isinstance(outcome, Stale):
            log.info(
                "lab %s entry version %d ignored: version %d applied already",
                snapshot.lab_id,
                snapshot.version,
                outcome.held,
            )
            return
        log.info(
            "lab %s entry version %d applied: added %s, ended %s, revoked %s%s",
            snapshot.lab_id,
            outcome.version,
            outcome.added or "-",
            outcome.ended or "-",
            outcome.revoked or "-",
            ", lab removed" if outcome.removed else "",
        )

    # --- lab.compliance -----------------------------------------------------------------

    async def acknowledged(self, ctx: Context, ack: ComplianceAcknowledged) -> None:
        """A lab's acknowledgement: authenticated like a submission, then checked against
        the version it quotes; refused ones are answered with a reason."""
        signed = read_signed(ctx.raw, principal_field="lab_id")
        if isinstance(signed, Refusal):
            await self._reject(ctx, ack, signed, sender=None)
            return
        refusal = check_subject(ctx.event.subject, signed, "model_id")
        if refusal is not None:
            await self._reject(ctx, ack, refusal, sender=None)
            return
        received = receipt(
            ctx.event.id,
            ctx.now(),
            timestamp_ms=ctx.record.timestamp_ms,
            log_append_time=ctx.record.log_append_time,
        )
        sender = await authenticate(
            ctx.conn, signed, kind=LAB, received=received, policy=self.freshness
        )
        if isinstance(sender, Refusal):
            log.info("refused %s claiming lab %s: %s", ctx.event.id, signed.principal_id, sender)
            await self._reject(ctx, ack, sender, sender=None)
            return
        policy: ModelPolicy | None = None
        if lab_of(ack.model_id) == sender.principal_id and await repository.lock_existing_model(
            ctx.conn, ack.model_id
        ):
            policy = await repository.find_policy(ctx.conn, ack.model_id, ack.policy_version)
        outcome = check_acknowledgement(
            ack,
            lambda version: policy if policy is not None and policy.version == version else None,
            now=received.reference,
            clock_skew=self.settings.enforced_at_skew,
        )
        if isinstance(outcome, Refusal):
            await self._reject(ctx, ack, outcome, sender=sender)
            return
        await repository.record_acknowledgement(
            ctx.conn, outcome, event_id=ctx.event.id, key_id=sender.key_id
        )

    async def invalid_acknowledgement(self, ctx: InvalidContext) -> bool:
        """Answer what is not a valid ComplianceAcknowledged; False sends it to the DLQ.

        Nothing in it is authenticated: the answer is keyed by the record's event id
        (no id, nobody could match an answer: the DLQ keeps it for an operator).
        """
        addressing = read_addressing(
            ctx.raw, principal_field="lab_id", subject_field="model_id", subject_form=model_id
        )
        if addressing.event_id is None:
            return False
        refusal = _violation_refusal(ctx.violation)
        answer = ComplianceRejected(
            **answer_fields(refusal),
            rejected_event_id=addressing.event_id,
            rejected_at=ctx.now(),
            lab_id=addressing.principal_id,
        )
        await self._answer(ctx, answer, refusal, None)
        return True

    # --- timers -------------------------------------------------------------------------

    async def order_effective(self, ctx: TimerContext, timer: Timer) -> None:
        """A superseding order takes effect: the order it replaces ends now."""
        now = ctx.now()
        model = timer.payload["model_id"]
        await repository.lock_model(ctx.conn, model, lab_of(model), now)
        records = await repository.model_orders(ctx.conn, model)
        record = records.get(UUID(timer.key))
        change = take_effect(record, records, now) if record is not None else None
        if change is None:
            return
        await repository.save_orders(ctx.conn, change.records, now)
        records.update({r.order_id: r for r in change.records})
        await self._publish_next(ctx, model, records.values(), now)

    async def order_expired(self, ctx: TimerContext, timer: Timer) -> None:
        """A time-limited order lapses: a version without it, and RestrictionLifted."""
        now = ctx.now()
        model = timer.payload["model_id"]
        await repository.lock_model(ctx.conn, model, lab_of(model), now)
        records = await repository.model_orders(ctx.conn, model)
        record = records.get(UUID(timer.key))
        if record is None:
            return
        ended = expire_order(record, now)
        if isinstance(ended, Refusal):  # lifted or superseded before it lapsed
            return
        await self._end(ctx, ended, records, now, announce=True)

    async def compliance_overdue(self, ctx: TimerContext, timer: Timer) -> None:
        """A version's deadline passed: ComplianceOverdue unless it (or a later version)
        was acknowledged in time. Once per version: the timer fires once, the row and
        the deterministic event id make a second one impossible anyway."""
        now = ctx.now()
        model, version = timer.payload["model_id"], int(timer.payload["version"])
        await repository.lock_model(ctx.conn, model, lab_of(model), now)
        policy = await repository.find_policy(ctx.conn, model, version)
        if policy is None:
            return
        acks = await repository.acknowledgements(ctx.conn, model, from_version=version)
        event = overdue(policy, acks, now)
        if event is None:
            return
        event_id = overdue_event_id(model, version)
        if await repository.record_overdue(ctx.conn, event, event_id):
            log.warning("lab %s did not acknowledge %s version %d", policy.lab_id, model, version)
            ctx.publish(event, event_id=event_id)

    # --- internals ----------------------------------------------------------------------

    async def _end(
        self,
        ctx: TxContext,
        ended: OrderRecord,
        records: dict[UUID, OrderRecord],
        now: datetime,
        *,
        announce: bool,
    ) -> None:
        await repository.save_orders(ctx.conn, [ended], now)
        records[ended.order_id] = ended
        model = ended.order.model_id
        policy = await self._publish_next(ctx, model, records.values(), now)
        if announce:
            event = lifted(ended, policy)
            ctx.publish(event, event_id=lifted_event_id(ended.order_id))

    async def _publish_next(
        self, ctx: TxContext, model: str, records: Iterable[OrderRecord], now: datetime
    ) -> ModelPolicy | None:
        """Compile, store and publish the model's next version (if its text changes);
        returns the model's policy as it now stands."""
        current = await repository.current_policy(ctx.conn, model)
        result = next_version(
            model,
            current,
            records,
            self.groups,
            now=now,
            acknowledge_within=self.settings.acknowledge_within,
        )
        if result is None:
            return current
        if isinstance(result, Refusal):
            raise PermanentError(result.reason.value, result.detail)
        for problem in result.problems:
            # The alert: an order could not be compiled as written and denies more than
            # it says until the table or the order is corrected (README).
            log.error("%s version %d compiled fail closed: %s", model, result.version, problem)
        await repository.save_policy(ctx.conn, result)
        published = result.published()
        # The agency's record (access.policies, every lab's), and the lab's own feed
        # (labs.<lab>.policies), the one its enforcement points follow.
        ctx.publish(published, subject=model, event_id=policy_event_id(model, result.version))
        ctx.publish_to_owner(result.lab_id, published, subject=model)
        deadline = overdue_deadline(result, self.settings.overdue_grace)
        await ctx.schedule(deadline.kind, deadline.key, deadline.due_at, deadline.payload)
        return result

    async def _reject(
        self,
        ctx: Context,
        ack: ComplianceAcknowledged,
        refusal: Refusal,
        *,
        sender: Authenticated | None,
    ) -> None:
        answer = rejection(ack, refusal, event_id=ctx.event.id, now=ctx.now(), sender=sender)
        await self._answer(ctx, answer, refusal, sender)

    async def _answer(
        self,
        ctx: TxContext,
        answer: ComplianceRejected,
        refusal: Refusal,
        sender: Authenticated | None,
    ) -> None:
        """Publish the refusal (access.events) and tell the lab. A refusal of input that
        did not authenticate is counted per claimed lab and hour, and answered (on both)
        at most ``access_refusals_answered_per_hour`` times per claimed lab: a flood of
        junk in a lab's name costs a counter, not records (services/trust/answers.py)."""
        if sender is None and not await self.refusals_answered.answer(
            ctx.conn,
            source=answer.lab_id,
            reason=refusal.reason.value,
            at=answer.rejected_at,
            event_id=answer.rejected_event_id,
        ):
            return
        ctx.publish(answer)
        await self._tell_lab(ctx, answer, sender)

    async def _tell_lab(
        self, ctx: TxContext, answer: ComplianceRejected, sender: Authenticated | None
    ) -> None:
        """The refusal on the lab's own feed (``access.events`` is the agency's record,
        which no lab reads): the authenticated sender's feed, or for input that did not
        authenticate, the feed of the lab it claims to be if that lab is registered.

        Only lab principals may write lab.compliance, so an unauthenticated claim is some
        lab's (perhaps the claimed one's with a stale key): the claimed lab learns that
        something was sent in its name, and ``answer_fields`` has already reduced the
        answer to ``authentication_failed`` (or a shape error of the bytes). A claim of
        an unregistered lab goes to no feed: there is none, and the relay would park it.
        """
        owner = sender.principal_id if sender is not None else answer.lab_id
        if owner is None:
            return
        if sender is not None or await registered(ctx.conn, LAB, owner):
            ctx.publish_to_owner(owner, answer)


def _violation_refusal(violation: ContractViolation) -> Refusal:
    return shape_refusal(violation, "lab.compliance carries ComplianceAcknowledged only")
