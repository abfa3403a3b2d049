"""Thin adapters: a lab.submissions record -> trust checks and decisions -> state + events;
and the review-window timer -> the window closed.

The trust library (services/trust) decides who sent a record: the signed data as
received, the lab's key, the signature, freshness against the broker's append time,
the nonce. Only then do intake's decisions run, and only an authenticated lab is
told a precise reason; what others are told is ``authentication_failed``.
"""

from __future__ import annotations

import logging
from uuid import UUID

from contracts.events.intake import SubmissionAccepted, SubmissionRejected, WithdrawalRejected
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from services.intake import repository
from services.intake.criteria import CoverageCriteria
from services.intake.decisions import (
    REVIEW_WINDOW,
    Duplicate,
    decide_filing,
    decide_refiling,
    decide_withdrawal,
    filed_by,
    invalid_input_refusal,
    reanswer,
    rejection,
    window_closed,
    withdrawn,
    withdrawn_detail,
)
from services.intake.model import HistoryKind
from services.intake.settings import IntakeSettings
from services.runtime import Context, InvalidContext, Timer, TimerContext, TxContext
from services.trust.answers import AnswerLimit
from services.trust.endpoints import EndpointPolicy, Resolver, check_endpoint, system_resolver
from services.trust.freshness import received
from services.trust.principals import LAB
from services.trust.refusal import Refusal
from services.trust.registry import registered
from services.trust.unverified import SignedInput, check_subject, read_addressing, read_signed
from services.trust.verifier import Authenticated, authenticate

log = logging.getLogger(__name__)


class IntakeHandlers:
    def __init__(
        self,
        settings: IntakeSettings,
        criteria: CoverageCriteria,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.criteria = criteria
        self.freshness = settings.freshness()
        self.endpoints = EndpointPolicy.from_entries(settings.intake_endpoint_allowlist)
        self.resolver = resolver
        self.refusals_answered = AnswerLimit(settings.intake_refusals_answered_per_hour)

    # --- lab.submissions --------------------------------------------------------------

    async def filed(self, ctx: Context, filed: SubmissionFiled) -> None:
        sender, input_ = await self._authenticate(ctx, "submission_id")
        if isinstance(sender, Refusal):
            digest = input_.digest if input_ is not None else None
            await self._reject_filing(ctx, filed, sender, sender=None, digest=digest)
            return
        assert input_ is not None  # it authenticated, so it was read
        now = ctx.now()
        existing = await repository.find_submission(ctx.conn, filed.submission_id)
        if existing is not None:
            outcome = decide_refiling(filed, existing, input_.digest)
            if isinstance(outcome, Duplicate):  # the same body again: no second review
                await self._answer_duplicate(ctx, filed, outcome, sender)
                return
            await self._reject_filing(
                ctx,
                filed,
                outcome,
                sender=sender,
                digest=input_.digest,
                trusted=filed_by(existing, filed.lab_id),
            )
            return
        decision = decide_filing(
            filed,
            event_id=ctx.event.id,
            body_sha256=input_.digest,
            signature_sha256=sender.signature_sha256,
            criteria=self.criteria,
            now=now,
            seconds_per_day=self.settings.intake_seconds_per_day,
            # Resolves the host (bounded): I/O, so asked here, not in the decision.
            endpoint_refusal=await check_endpoint(
                str(filed.evaluation_access.endpoint), self.endpoints, resolve=self.resolver
            ),
        )
        if isinstance(decision, SubmissionAccepted):
            await repository.record_acceptance(ctx.conn, decision, input_.data)
            # The window's durable clock, in this transaction and this trace.
            await ctx.schedule(REVIEW_WINDOW, str(decision.submission_id), decision.deadline)
            ctx.publish(decision)
            ctx.publish_to_owner(decision.lab_id, decision)
            return
        answer = self._filing_rejection(ctx, filed, decision, sender=sender, digest=input_.digest)
        assert isinstance(answer, SubmissionRejected)
        await repository.record_content_rejection(ctx.conn, answer, input_.data)
        await self._answer(
            ctx, answer, HistoryKind.REJECTED, decision, trusted=True, authenticated=True
        )

    async def withdrawal(self, ctx: Context, request: WithdrawalRequested) -> None:
        sender, _ = await self._authenticate(ctx, "submission_id")
        if isinstance(sender, Refusal):
            await self._reject_withdrawal(ctx, request, sender, sender=None, trusted=False)
            return
        now = ctx.now()
        # The window's timer first, then the submission: the order the timer fires in.
        await ctx.lock_timer(REVIEW_WINDOW, str(request.submission_id))
        existing = await repository.lock_submission(ctx.conn, request.submission_id)
        refusal = decide_withdrawal(request, existing, now)
        if refusal is not None or existing is None:
            assert refusal is not None
            trusted = filed_by(existing, request.lab_id)
            await self._reject_withdrawal(ctx, request, refusal, sender=sender, trusted=trusted)
            return
        await repository.record_withdrawal(ctx.conn, request.submission_id, now)
        await ctx.cancel_timer(REVIEW_WINDOW, str(request.submission_id))
        await repository.add_history(
            ctx.conn,
            submission_id=request.submission_id,
            at=now,
            kind=HistoryKind.WITHDRAWN,
            event_id=ctx.event.id,
            reason=None,
            detail=withdrawn_detail(request),
        )
        answer = withdrawn(
            request,
            existing,
            event_id=ctx.event.id,
            signature_sha256=sender.signature_sha256,
            now=now,
        )
        ctx.publish(answer)
        ctx.publish_to_owner(request.lab_id, answer)

    async def invalid(self, ctx: InvalidContext) -> bool:
        """Answer decodable-but-wrong input; False sends it to the DLQ.

        Such input is not authenticated: it is answered to its event id (shape errors
        are told as they are), and leaves the submission it names alone.
        """
        where = read_addressing(ctx.raw, principal_field="lab_id", subject_field="submission_id")
        if not where.addressable:
            return False  # nobody could read an answer: the DLQ keeps it for an operator
        kind = (
            WithdrawalRejected
            if where.event_type == WithdrawalRequested.TYPE
            else SubmissionRejected
        )
        refusal = invalid_input_refusal(ctx.violation)
        answer = rejection(
            kind,
            refusal,
            sender=None,
            submission_id=UUID(where.subject_id) if where.subject_id else None,
            lab_id=where.principal_id,
            event_id=where.event_id,
            now=ctx.now(),
            trusted=False,
        )
        await self._answer(
            ctx, answer, HistoryKind.REJECTED, refusal, trusted=False, authenticated=False
        )
        return True

    # --- the review-window clock --------------------------------------------------------

    async def window_due(self, ctx: TimerContext, timer: Timer) -> None:
        """The deadline passed: the window closes, exactly once (the timer fires once)."""
        closed = await repository.close_window(ctx.conn, UUID(timer.key), ctx.now())
        if closed is None:  # not open any more (a withdrawal cancels the timer, too)
            return
        event = window_closed(
            closed.submission_id, closed.lab_id, closed.model_id, closed.deadline, ctx.now()
        )
        ctx.publish(event, event_id=ctx.event_id("review-window-closed"))
        ctx.publish_to_owner(closed.lab_id, event)

    # --- internals ----------------------------------------------------------------------

    async def _authenticate(
        self, ctx: Context, subject_field: str
    ) -> tuple[Authenticated | Refusal, SignedInput | None]:
        """The signed data as received, its subject, then who signed it (spends the nonce).

        The precise refusal is logged for the operator; the sender is told it only
        when it is about the shape of the bytes.
        """
        signed = read_signed(ctx.raw, principal_field="lab_id")
        if isinstance(signed, Refusal):
            return signed, None
        refusal = check_subject(ctx.event.subject, signed, subject_field)
        if refusal is not None:
            return refusal, signed
        sender = await authenticate(
            ctx.conn, signed, kind=LAB, received=received(ctx), policy=self.freshness
        )
        if isinstance(sender, Refusal):
            log.info(
                "refused %s claiming lab %s: %s",
                ctx.event.id,
                signed.principal_id,
                sender,
                extra={"event_id": ctx.event.id},
            )
        return sender, signed

    async def _reject_filing(
        self,
        ctx: Context,
        filed: SubmissionFiled,
        refusal: Refusal,
        *,
        sender: Authenticated | None,
        digest: str | None,
        trusted: bool = True,
    ) -> None:
        answer = self._filing_rejection(
            ctx, filed, refusal, sender=sender, digest=digest, trusted=trusted
        )
        await self._answer(
            ctx,
            answer,
            HistoryKind.REJECTED,
            refusal,
            trusted=trusted and sender is not None,
            authenticated=sender is not None,
        )

    def _filing_rejection(
        self,
        ctx: Context,
        filed: SubmissionFiled,
        refusal: Refusal,
        *,
        sender: Authenticated | None,
        digest: str | None,
        trusted: bool = True,
    ) -> SubmissionRejected | WithdrawalRejected:
        return rejection(
            SubmissionRejected,
            refusal,
            sender=sender,
            submission_id=filed.submission_id,
            lab_id=filed.lab_id,
            event_id=ctx.event.id,
            now=ctx.now(),
            body_sha256=digest,
            trusted=trusted and sender is not None,
        )

    async def _answer_duplicate(
        self, ctx: Context, filed: SubmissionFiled, duplicate: Duplicate, sender: Authenticated
    ) -> None:
        """The original decision again, bound to the duplicate's signature, on the lab's
        feed only: internal consumers (evaluation, risk) must not see a second decision.

        Counted on the submission per clock hour, and answered (with a history entry) at
        most ``intake_duplicates_answered_per_hour`` times: a lab re-sending one filing
        endlessly costs a counter, not rows and records. A redelivered record never gets
        here twice (the runtime's inbox)."""
        count, original = await repository.count_duplicate(ctx.conn, filed.submission_id, ctx.now())
        limit = self.settings.intake_duplicates_answered_per_hour
        if count > limit:
            if count == limit + 1:
                log.warning(
                    "more than %d duplicates of submission %s this hour: no more answers",
                    limit,
                    filed.submission_id,
                )
            return
        await repository.add_history(
            ctx.conn,
            submission_id=filed.submission_id,
            at=ctx.now(),
            kind=HistoryKind.DUPLICATE,
            event_id=ctx.event.id,
            reason=None,
            detail=duplicate.detail,
        )
        answer = reanswer(original, event_id=ctx.event.id, signature_sha256=sender.signature_sha256)
        ctx.publish_to_owner(filed.lab_id, answer)

    async def _reject_withdrawal(
        self,
        ctx: Context,
        request: WithdrawalRequested,
        refusal: Refusal,
        *,
        sender: Authenticated | None,
        trusted: bool,
    ) -> None:
        answer = rejection(
            WithdrawalRejected,
            refusal,
            sender=sender,
            submission_id=request.submission_id,
            lab_id=request.lab_id,
            event_id=ctx.event.id,
            now=ctx.now(),
            trusted=trusted,
        )
        await self._answer(
            ctx,
            answer,
            HistoryKind.WITHDRAWAL_REJECTED,
            refusal,
            trusted=trusted,
            authenticated=sender is not None,
        )

    async def _answer(
        self,
        ctx: TxContext,
        answer: SubmissionRejected | WithdrawalRejected,
        kind: HistoryKind,
        refusal: Refusal,
        *,
        trusted: bool,
        authenticated: bool,
    ) -> None:
        """Record the refusal and tell the sender.

        A trusted refusal (the authenticated lab's own submission) goes into that
        submission's history and is always answered. Any other (unauthenticated, or
        about another lab's submission) is counted per claimed sender and hour, not
        kept one by one, and answered up to ``intake_refusals_answered_per_hour``
        per claimed sender: a flood of junk costs a counter, not rows and records. The
        count keeps the precise reason (the operator's view: ``intake.cli refusals``).

        The lab reads the answer on its own feed: the authenticated sender's, or for
        input that did not authenticate, the feed of the lab it claims to be if that
        lab is registered (it learns that someone, perhaps itself with a wrong key,
        sends as it; the answer says no more than ``authentication_failed``).
        """
        if not trusted:
            if not await self.refusals_answered.answer(
                ctx.conn,
                source=answer.lab_id,
                reason=refusal.reason.value,
                at=answer.rejected_at,
                event_id=answer.rejected_event_id,
            ):
                return
        else:
            await repository.add_history(
                ctx.conn,
                submission_id=answer.submission_id,
                at=answer.rejected_at,
                kind=kind,
                event_id=answer.rejected_event_id,
                reason=answer.reason.value,
                detail=answer.detail,
            )
        ctx.publish(answer)
        owner = answer.lab_id
        if owner is not None and (authenticated or await registered(ctx.conn, LAB, owner)):
            ctx.publish_to_owner(owner, answer)
