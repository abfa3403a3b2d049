"""Thin adapters: a lab.submissions record -> trust checks and decisions -> state + events;
and the review-window timer -> the window closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from contracts.events.intake import SubmissionAccepted, SubmissionRejected, WithdrawalRejected
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from services.intake import repository
from services.intake.criteria import CoverageCriteria
from services.intake.decisions import (
    REVIEW_WINDOW,
    Duplicate,
    HistoryKind,
    decide_filing,
    decide_refiling,
    decide_withdrawal,
    filed_by,
    rejection,
    window_closed,
    withdrawn,
    withdrawn_detail,
)
from services.intake.invalid import answer_invalid
from services.intake.settings import IntakeSettings
from services.intake.trust import (
    Refusal,
    body_digest,
    check_issued_at,
    check_key,
    check_signature,
    check_subject,
    received_data,
    replayed_nonce,
)
from services.runtime import Context, InvalidContext, Timer, TimerContext, TxContext


class IntakeHandlers:
    def __init__(self, settings: IntakeSettings, criteria: CoverageCriteria) -> None:
        self.settings = settings
        self.criteria = criteria
        self.max_skew = timedelta(seconds=settings.intake_max_clock_skew_s)

    # --- lab.submissions --------------------------------------------------------------

    async def filed(self, ctx: Context, filed: SubmissionFiled) -> None:
        now = ctx.now()
        data = received_data(ctx.raw)
        digest = body_digest(data)
        if isinstance(digest, Refusal):  # RFC 8785 refuses the body: nothing can be verified
            await self._reject_filing(ctx, filed, digest, digest=None, trusted=False)
            return
        refusal = await self._authenticate(ctx, filed, data, now)
        if refusal is not None:
            await self._reject_filing(ctx, filed, refusal, digest=digest, trusted=False)
            return
        existing = await repository.find_submission(ctx.conn, filed.submission_id)
        if existing is not None:
            outcome = decide_refiling(filed, existing, digest)
            if isinstance(outcome, Duplicate):  # the same body again: no second review
                await repository.add_history(
                    ctx.conn,
                    submission_id=filed.submission_id,
                    at=now,
                    kind=HistoryKind.DUPLICATE,
                    event_id=ctx.event.id,
                    reason=None,
                    detail=outcome.detail,
                )
                return
            trusted = filed_by(existing, filed.lab_id)
            await self._reject_filing(ctx, filed, outcome, digest=digest, trusted=trusted)
            return
        decision = decide_filing(
            filed,
            event_id=ctx.event.id,
            body_sha256=digest,
            criteria=self.criteria,
            now=now,
            seconds_per_day=self.settings.intake_seconds_per_day,
            allow_http=self.settings.intake_allow_http_endpoints,
        )
        if isinstance(decision, SubmissionAccepted):
            await repository.record_acceptance(ctx.conn, decision, data)
            # The window's durable clock, in this transaction and this trace.
            await ctx.schedule(REVIEW_WINDOW, str(decision.submission_id), decision.deadline)
            ctx.publish(decision)
            return
        await repository.record_content_rejection(
            ctx.conn,
            submission_id=filed.submission_id,
            lab_id=filed.lab_id,
            body_sha256=digest,
            event_id=ctx.event.id,
            body=data,
            refusal=decision,
            now=now,
        )
        await self._reject_filing(ctx, filed, decision, digest=digest, trusted=True)

    async def withdrawal(self, ctx: Context, request: WithdrawalRequested) -> None:
        now = ctx.now()
        refusal = await self._authenticate(ctx, request, received_data(ctx.raw), now)
        trusted = False
        if refusal is None:
            # The window's timer first, then the submission: the order the timer fires in.
            await ctx.lock_timer(REVIEW_WINDOW, str(request.submission_id))
            existing = await repository.lock_submission(ctx.conn, request.submission_id)
            refusal = decide_withdrawal(request, existing, now)
            trusted = filed_by(existing, request.lab_id)
            if refusal is None and existing is not None:
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
                ctx.publish(withdrawn(request, existing, event_id=ctx.event.id, now=now))
                return
        assert refusal is not None
        answer = rejection(
            WithdrawalRejected,
            refusal,
            submission_id=request.submission_id,
            lab_id=request.lab_id,
            event_id=ctx.event.id,
            now=now,
            trusted=trusted,
        )
        await self._answer(ctx, answer, HistoryKind.WITHDRAWAL_REJECTED, trusted=trusted)

    async def invalid(self, ctx: InvalidContext) -> bool:
        """Answer decodable-but-wrong input; False sends it to the DLQ.

        Such input is not authenticated: it is answered to its event id and leaves
        the submission it names alone.
        """
        answer = answer_invalid(ctx.raw, ctx.violation, ctx.now())
        if answer is None:
            return False
        kind = (
            HistoryKind.WITHDRAWAL_REJECTED
            if isinstance(answer, WithdrawalRejected)
            else HistoryKind.REJECTED
        )
        await self._answer(ctx, answer, kind, trusted=False)
        return True

    # --- the review-window clock --------------------------------------------------------

    async def window_due(self, ctx: TimerContext, timer: Timer) -> None:
        """The deadline passed: the window closes, exactly once (the timer fires once)."""
        closed = await repository.close_window(ctx.conn, UUID(timer.key), ctx.now())
        if closed is None:  # not open any more (a withdrawal cancels the timer, too)
            return
        ctx.publish(
            window_closed(
                closed.submission_id, closed.lab_id, closed.model_id, closed.deadline, ctx.now()
            ),
            event_id=ctx.event_id("review-window-closed"),
        )

    # --- internals ----------------------------------------------------------------------

    async def _authenticate(
        self,
        ctx: Context,
        signed: SubmissionFiled | WithdrawalRequested,
        data: dict[str, Any],
        now: datetime,
    ) -> Refusal | None:
        """Subject, lab, key, signature, freshness, nonce: the first failure is the answer."""
        signature = signed.signature
        refusal = check_subject(ctx.event.subject, signed.submission_id)
        if refusal is not None:
            return refusal
        lab_known, key = await repository.find_lab_key(ctx.conn, signed.lab_id, signature.key_id)
        refusal = check_key(
            key, lab_id=signed.lab_id, key_id=signature.key_id, lab_known=lab_known, now=now
        )
        if refusal is not None or key is None:
            return refusal
        refusal = check_signature(key, data, signature.value) or check_issued_at(
            signature.issued_at, now, self.max_skew
        )
        if refusal is not None:
            return refusal
        # Only an authentic, fresh input spends its nonce.
        fresh = await repository.remember_nonce(
            ctx.conn, signed.lab_id, key.key_id, signature.nonce, signature.issued_at, ctx.event.id
        )
        return None if fresh else replayed_nonce(signed.lab_id, key.key_id, signature.nonce)

    async def _reject_filing(
        self,
        ctx: Context,
        filed: SubmissionFiled,
        refusal: Refusal,
        *,
        digest: str | None,
        trusted: bool,
    ) -> None:
        answer = rejection(
            SubmissionRejected,
            refusal,
            submission_id=filed.submission_id,
            lab_id=filed.lab_id,
            event_id=ctx.event.id,
            now=ctx.now(),
            body_sha256=digest,
            trusted=trusted,
        )
        await self._answer(ctx, answer, HistoryKind.REJECTED, trusted=trusted)

    async def _answer(
        self,
        ctx: TxContext,
        answer: SubmissionRejected | WithdrawalRejected,
        kind: HistoryKind,
        *,
        trusted: bool,
    ) -> None:
        """Record the refusal and tell the sender.

        Only a trusted refusal goes into the submission's history; any other is
        kept by its event id alone.
        """
        await repository.add_history(
            ctx.conn,
            submission_id=answer.submission_id if trusted else None,
            at=answer.rejected_at,
            kind=kind,
            event_id=answer.rejected_event_id,
            reason=answer.reason.value,
            detail=answer.detail,
        )
        ctx.publish(answer)
