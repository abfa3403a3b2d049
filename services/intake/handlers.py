"""Thin adapters: a lab.submissions record -> trust checks and decisions -> state + outbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from contracts.events.intake import SubmissionAccepted, SubmissionRejected, WithdrawalRejected
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from contracts.registry import subject_for
from services.intake import repository
from services.intake.clock import Clock
from services.intake.criteria import CoverageCriteria
from services.intake.decisions import (
    Duplicate,
    HistoryKind,
    decide_filing,
    decide_refiling,
    decide_withdrawal,
    filed_by,
    rejection,
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
from services.runtime.consumer import Delivery, InvalidRecord, PermanentError
from services.runtime.outbox import Outbox
from services.runtime.telemetry import current_trace_headers

if TYPE_CHECKING:
    from services.runtime.database import Connection


class IntakeHandlers:
    def __init__(self, settings: IntakeSettings, criteria: CoverageCriteria, clock: Clock) -> None:
        self.settings = settings
        self.criteria = criteria
        self.clock = clock
        self.events_topic = settings.intake_events_topic
        self.max_skew = timedelta(seconds=settings.intake_max_clock_skew_s)

    async def handle(self, d: Delivery) -> None:
        data = d.event.data
        if isinstance(data, SubmissionFiled):
            await self._filed(d, data)
        elif isinstance(data, WithdrawalRequested):
            await self._withdrawal(d, data)
        else:  # decode only lets the topic's event types through
            raise PermanentError("unexpected_event", f"{d.event.type} is not handled by intake")

    async def on_invalid(self, record: InvalidRecord) -> bool:
        """Answer decodable-but-wrong input; False sends it to the DLQ.

        Such input is not authenticated: it is answered to its event id and leaves
        the submission it names alone.
        """
        now = self.clock.now()
        answer = answer_invalid(record.raw, record.violation, now)
        if answer is None:
            return False
        kind = (
            HistoryKind.WITHDRAWAL_REJECTED
            if isinstance(answer, WithdrawalRejected)
            else HistoryKind.REJECTED
        )
        await self._answer(record.conn, record.outbox, answer, kind, now, trusted=False)
        return True

    async def _authenticate(
        self,
        d: Delivery,
        signed: SubmissionFiled | WithdrawalRequested,
        data: dict[str, Any],
        now: datetime,
    ) -> Refusal | None:
        """Subject, lab, key, signature, freshness, nonce: the first failure is the answer."""
        signature = signed.signature
        refusal = check_subject(d.event.subject, signed.submission_id)
        if refusal is not None:
            return refusal
        lab_known, key = await repository.find_lab_key(d.conn, signed.lab_id, signature.key_id)
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
            d.conn, signed.lab_id, key.key_id, signature.nonce, signature.issued_at, d.event.id
        )
        return None if fresh else replayed_nonce(signed.lab_id, key.key_id, signature.nonce)

    async def _filed(self, d: Delivery, filed: SubmissionFiled) -> None:
        now = self.clock.now()
        data = received_data(d.raw)
        digest = body_digest(data)
        if isinstance(digest, Refusal):  # RFC 8785 refuses the body: nothing can be verified
            await self._reject_filing(d, filed, digest, now, digest=None, trusted=False)
            return
        refusal = await self._authenticate(d, filed, data, now)
        if refusal is not None:
            await self._reject_filing(d, filed, refusal, now, digest=digest, trusted=False)
            return
        existing = await repository.find_submission(d.conn, filed.submission_id)
        if existing is not None:
            outcome = decide_refiling(filed, existing, digest)
            if isinstance(outcome, Duplicate):  # the same body again: no second review
                await repository.add_history(
                    d.conn,
                    submission_id=filed.submission_id,
                    at=now,
                    kind=HistoryKind.DUPLICATE,
                    event_id=d.event.id,
                    reason=None,
                    detail=outcome.detail,
                )
                return
            trusted = filed_by(existing, filed.lab_id)
            await self._reject_filing(d, filed, outcome, now, digest=digest, trusted=trusted)
            return
        decision = decide_filing(
            filed,
            event_id=d.event.id,
            body_sha256=digest,
            criteria=self.criteria,
            now=now,
            seconds_per_day=self.settings.intake_seconds_per_day,
            allow_http=self.settings.intake_allow_http_endpoints,
        )
        if isinstance(decision, SubmissionAccepted):
            traceparent = current_trace_headers().get("traceparent")
            await repository.record_acceptance(d.conn, decision, data, traceparent)
            await d.outbox.publish(self.events_topic, decision, subject=str(filed.submission_id))
            return
        await repository.record_content_rejection(
            d.conn,
            submission_id=filed.submission_id,
            lab_id=filed.lab_id,
            body_sha256=digest,
            event_id=d.event.id,
            body=data,
            refusal=decision,
            now=now,
        )
        await self._reject_filing(d, filed, decision, now, digest=digest, trusted=True)

    async def _reject_filing(
        self,
        d: Delivery,
        filed: SubmissionFiled,
        refusal: Refusal,
        now: datetime,
        *,
        digest: str | None,
        trusted: bool,
    ) -> None:
        answer = rejection(
            SubmissionRejected,
            refusal,
            submission_id=filed.submission_id,
            lab_id=filed.lab_id,
            event_id=d.event.id,
            now=now,
            body_sha256=digest,
            trusted=trusted,
        )
        await self._answer(d.conn, d.outbox, answer, HistoryKind.REJECTED, now, trusted=trusted)

    async def _withdrawal(self, d: Delivery, request: WithdrawalRequested) -> None:
        now = self.clock.now()
        refusal = await self._authenticate(d, request, received_data(d.raw), now)
        trusted = False
        if refusal is None:
            existing = await repository.lock_submission(d.conn, request.submission_id)
            refusal = decide_withdrawal(request, existing, now)
            trusted = filed_by(existing, request.lab_id)
            if refusal is None and existing is not None:
                await repository.record_withdrawal(d.conn, request.submission_id, now)
                await repository.add_history(
                    d.conn,
                    submission_id=request.submission_id,
                    at=now,
                    kind=HistoryKind.WITHDRAWN,
                    event_id=d.event.id,
                    reason=None,
                    detail=withdrawn_detail(request),
                )
                event = withdrawn(request, existing, event_id=d.event.id, now=now)
                await d.outbox.publish(self.events_topic, event, subject=str(request.submission_id))
                return
        assert refusal is not None
        answer = rejection(
            WithdrawalRejected,
            refusal,
            submission_id=request.submission_id,
            lab_id=request.lab_id,
            event_id=d.event.id,
            now=now,
            trusted=trusted,
        )
        await self._answer(
            d.conn, d.outbox, answer, HistoryKind.WITHDRAWAL_REJECTED, now, trusted=trusted
        )

    async def _answer(
        self,
        conn: Connection,
        outbox: Outbox,
        answer: SubmissionRejected | WithdrawalRejected,
        kind: HistoryKind,
        now: datetime,
        *,
        trusted: bool,
    ) -> None:
        """Record the refusal and tell the sender.

        Only a trusted refusal goes into the submission's history; any other is
        kept by its event id alone.
        """
        await repository.add_history(
            conn,
            submission_id=answer.submission_id if trusted else None,
            at=now,
            kind=kind,
            event_id=answer.rejected_event_id,
            reason=answer.reason.value,
            detail=answer.detail,
        )
        await outbox.publish(self.events_topic, answer, subject=subject_for(answer))
