"""Thin adapters: a consumed event -> the workflow step it starts (no evaluation runs here).

External findings are signed input from outside: the trust library (services/trust)
decides who sent one — the data as received, the evaluator's key, the signature,
freshness against the broker's append time, the nonce — before evaluation's own
rules run. Only an authenticated evaluator is told a precise reason; anyone else
hears ``authentication_failed`` for everything but a shape error, and the precise
reason goes to the service log.
"""

from __future__ import annotations

import logging

from contracts.events import (
    ExternalFindingSubmitted,
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionWithdrawn,
)
from contracts.events.evaluation import EvaluationEnd, ExternalFindingRejected
from services.evaluation import workflow
from services.evaluation.findings import check_observation, rejection
from services.evaluation.planning import NothingToPlan, plan_evaluation
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import SuiteRegistry
from services.runtime import Context, InvalidContext, TxContext
from services.trust.freshness import received
from services.trust.principals import EVALUATOR
from services.trust.refusal import Refusal, shape_refusal
from services.trust.registry import registered
from services.trust.unverified import Addressing, check_subject, read_addressing, read_signed
from services.trust.verifier import Authenticated, authenticate

log = logging.getLogger(__name__)


class EvaluationHandlers:
    def __init__(self, settings: EvaluationSettings, registry: SuiteRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.freshness = settings.evaluation_freshness

    # --- intake.events --------------------------------------------------------------

    async def accepted(self, ctx: Context, accepted: SubmissionAccepted) -> None:
        try:
            plan = plan_evaluation(accepted, self.registry)
        except NothingToPlan as nothing:
            if await workflow.end_unplanned_evaluation(
                ctx, accepted, nothing.registry_version, nothing.reason
            ):
                log.warning(
                    "submission %s: nothing to evaluate: %s", accepted.submission_id, nothing
                )
            return
        await workflow.start_evaluation(ctx, accepted, plan)

    async def window_closed(self, ctx: Context, closed: ReviewWindowClosed) -> None:
        await workflow.stop_evaluation(ctx, closed.submission_id, EvaluationEnd.WINDOW_CLOSED)

    async def withdrawn(self, ctx: Context, withdrawn: SubmissionWithdrawn) -> None:
        await workflow.stop_evaluation(ctx, withdrawn.submission_id, EvaluationEnd.WITHDRAWN)

    # --- evaluators.findings --------------------------------------------------------

    async def external_finding(self, ctx: Context, submitted: ExternalFindingSubmitted) -> None:
        """Authenticate (spends the nonce), then record the finding or refuse it."""
        where = Addressing(
            event_id=ctx.event.id,
            event_type=ctx.event.type,
            principal_id=submitted.evaluator_id,
            subject_id=str(submitted.submission_id),
        )
        signed = read_signed(ctx.raw, principal_field="evaluator_id")
        if isinstance(signed, Refusal):  # a shape error: told as it is
            await self._refuse(ctx, signed, where, sender=None)
            return
        refusal = check_subject(ctx.event.subject, signed, "submission_id")
        if refusal is not None:
            await self._refuse(ctx, refusal, where, sender=None)
            return
        receipt = received(ctx)  # judged at the broker's append time (LogAppendTime)
        sender = await authenticate(
            ctx.conn, signed, kind=EVALUATOR, received=receipt, policy=self.freshness
        )
        if isinstance(sender, Refusal):
            await self._refuse(ctx, sender, where, sender=None)
            return
        refusal = check_observation(
            submitted, receipt.reference + self.freshness.max_future
        ) or await workflow.record_external_finding(ctx, submitted, signed.digest)
        if refusal is not None:
            await self._refuse(ctx, refusal, where, sender=sender, submitted=submitted)

    async def invalid_external_finding(self, ctx: InvalidContext) -> bool:
        """Answer a finding that failed decoding (a shape error, told as it is) to its
        event id; input without a usable event id goes to the DLQ."""
        where = read_addressing(
            ctx.raw, principal_field="evaluator_id", subject_field="submission_id"
        )
        refusal = shape_refusal(
            ctx.violation, "evaluators.findings carries ExternalFindingSubmitted only"
        )
        answer = rejection(refusal, ctx.now(), where=where, sender=None)
        if answer is None:
            return False
        ctx.publish(answer)
        await self._tell_evaluator(ctx, answer, None)
        return True

    async def _refuse(
        self,
        ctx: Context,
        refusal: Refusal,
        where: Addressing,
        *,
        sender: Authenticated | None,
        submitted: ExternalFindingSubmitted | None = None,
    ) -> None:
        """Log the precise refusal for the operator; publish what the sender may learn."""
        log.info(
            "refused external finding %s (event %s) claiming evaluator %s%s: %s",
            submitted.external_finding_id if submitted else "-",
            ctx.event.id,
            where.principal_id,
            "" if sender is not None else " (not authenticated)",
            refusal,
            extra={"event_id": ctx.event.id},
        )
        answer = rejection(
            refusal,
            ctx.now(),
            where=where,
            sender=sender,
            external_finding_id=submitted.external_finding_id if submitted else None,
        )
        if answer is not None:
            ctx.publish(answer)
            await self._tell_evaluator(ctx, answer, sender.principal_id if sender else None)

    async def _tell_evaluator(
        self, ctx: TxContext, answer: ExternalFindingRejected, authenticated: str | None
    ) -> None:
        """The refusal on the evaluator's own feed: the authenticated sender's, or the
        registered evaluator the input claims to be (only evaluators' principals may write
        evaluators.findings, so this is one of them, perhaps with a stale key)."""
        owner = authenticated or answer.evaluator_id
        if owner is not None and (authenticated or await registered(ctx.conn, EVALUATOR, owner)):
            ctx.publish_to_owner(owner, answer)
