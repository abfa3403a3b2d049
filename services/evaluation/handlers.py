"""Thin adapters: a consumed event -> the workflow step it starts (no evaluation runs here)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from contracts.events import (
    ExternalFindingSubmitted,
    RejectionReason,
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionWithdrawn,
    field_errors,
)
from contracts.events.evaluation import EvaluationEnd
from services.evaluation import repository as repo
from services.evaluation import workflow
from services.evaluation.findings import Refusal, rejection, verify_external
from services.evaluation.planning import NothingToPlan, plan_evaluation
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import SuiteRegistry
from services.runtime import Context, InvalidContext

log = logging.getLogger(__name__)


class EvaluationHandlers:
    def __init__(self, settings: EvaluationSettings, registry: SuiteRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.max_age = timedelta(seconds=settings.evaluation_signature_max_age_s)
        self.max_future = timedelta(seconds=settings.evaluation_signature_max_future_s)

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
        data: dict[str, Any] = json.loads(ctx.raw)["data"]  # the data as signed
        refusal = await self._authenticate(ctx, submitted, data)
        if refusal is None:
            refusal = await workflow.record_external_finding(ctx, submitted, data)
        if refusal is None:
            return
        log.info("external finding %s refused: %s", submitted.external_finding_id, refusal)
        answer = rejection(refusal, ctx.now(), rejected_event_id=ctx.event.id, data=data)
        assert answer is not None  # a decoded event always has an id
        ctx.publish(answer)

    async def _authenticate(
        self, ctx: Context, submitted: ExternalFindingSubmitted, data: dict[str, Any]
    ) -> Refusal | None:
        """Subject, evaluator, key, signature, freshness, nonce: the first failure."""
        now = ctx.now()
        signature = submitted.signature
        refusal = verify_external(
            submitted,
            data,
            ctx.event.subject,
            await repo.evaluator_known(ctx.conn, submitted.evaluator_id),
            await repo.evaluator_key(ctx.conn, signature.key_id),
            now,
            max_age=self.max_age,
            max_future=self.max_future,
        )
        if refusal is not None:
            return refusal
        if not await repo.claim_nonce(ctx.conn, signature.key_id, signature.nonce, now):
            return Refusal(RejectionReason.REPLAYED_NONCE, "this signature nonce was used before")
        return None

    async def invalid_external_finding(self, ctx: InvalidContext) -> bool:
        """Answer a finding that failed decoding; bytes that aren't JSON go to the DLQ."""
        try:
            document = json.loads(ctx.raw)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            return False
        if not isinstance(document, dict):
            return False
        event_id = document.get("id")
        if not (isinstance(event_id, str) and 0 < len(event_id) <= 200):
            event_id = None
        try:
            reason = RejectionReason(ctx.violation.reason)
        except ValueError:  # a decode reason the contract has no rejection code for
            reason = RejectionReason.MALFORMED
        refusal = Refusal(reason, ctx.violation.detail, tuple(field_errors(ctx.violation)))
        answer = rejection(
            refusal, ctx.now(), rejected_event_id=event_id, data=document.get("data")
        )
        if answer is None:
            return False
        ctx.publish(answer)
        return True
