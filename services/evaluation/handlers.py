"""Kafka handlers: thin adapters from a delivery to the workflow (no evaluation runs here)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from contracts.registry import subject_for
from services.evaluation import repository as repo
from services.evaluation import workflow
from services.evaluation.findings import (
    Refused,
    content_hash,
    manual_finding,
    rejection,
    verify_external,
)
from services.evaluation.planning import NothingToPlan, plan_evaluation
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import SuiteRegistry
from services.runtime.consumer import Delivery, InvalidRecord
from services.runtime.telemetry import current_trace_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handlers:
    settings: EvaluationSettings
    registry: SuiteRegistry

    @property
    def topic(self) -> str:
        return self.settings.evaluation_topic

    # --- intake.events --------------------------------------------------------------

    async def intake_event(self, d: Delivery) -> None:
        data = d.event.data
        now = datetime.now(UTC)
        if isinstance(data, SubmissionAccepted):
            await self._plan(d, data, now)
        elif isinstance(data, ReviewWindowClosed):
            await workflow.stop_evaluation(
                d.conn, d.outbox, self.topic, data.submission_id, EvaluationEnd.WINDOW_CLOSED, now
            )
        elif isinstance(data, SubmissionWithdrawn):
            await workflow.stop_evaluation(
                d.conn, d.outbox, self.topic, data.submission_id, EvaluationEnd.WITHDRAWN, now
            )
        # SubmissionRejected / WithdrawalRejected: nothing to evaluate.

    async def _plan(self, d: Delivery, accepted: SubmissionAccepted, now: datetime) -> None:
        try:
            plan = plan_evaluation(accepted, self.registry)
        except NothingToPlan as nothing:
            registry_version, reason = nothing.registry_version, nothing.reason
            if await workflow.end_unplanned_evaluation(
                d.conn, d.outbox, self.topic, accepted, registry_version, reason, now
            ):
                log.warning(
                    "submission %s: nothing to evaluate: %s", accepted.submission_id, reason
                )
            return
        traceparent = current_trace_headers().get("traceparent")
        await workflow.start_evaluation(
            d.conn, d.outbox, self.topic, accepted, plan, traceparent, now
        )

    # --- evaluators.findings --------------------------------------------------------

    async def external_finding(self, d: Delivery) -> None:
        submitted = d.event.data
        assert isinstance(submitted, ExternalFindingSubmitted)
        data: dict[str, Any] = json.loads(d.raw)["data"]
        now = datetime.now(UTC)
        try:
            await self._accept_external(d, submitted, data, now)
        except Refused as refused:
            answer = rejection(
                refused.reason,
                refused.detail,
                now,
                rejected_event_id=d.event.id,
                data=data,
                errors=refused.errors,
            )
            assert answer is not None  # a decoded event always has an id
            log.info("external finding %s refused: %s", submitted.external_finding_id, refused)
            await d.outbox.publish(self.topic, answer, subject=subject_for(answer))

    async def _accept_external(
        self, d: Delivery, submitted: ExternalFindingSubmitted, data: dict[str, Any], now: datetime
    ) -> None:
        key = await repo.evaluator_key(d.conn, submitted.signature.key_id)
        verify_external(
            submitted,
            data,
            d.event.subject,
            await repo.evaluator_known(d.conn, submitted.evaluator_id),
            key,
            now,
            max_age=timedelta(seconds=self.settings.signature_max_age_s),
            max_future=timedelta(seconds=self.settings.signature_max_future_s),
        )
        if not await repo.claim_nonce(
            d.conn, submitted.signature.key_id, submitted.signature.nonce, now
        ):
            raise Refused(RejectionReason.REPLAYED_NONCE, "this signature nonce was used before")
        # Locked: its FindingRecorded must not overtake the worker's EvaluationCompleted
        # (or follow it) out of order on the submission's partition.
        evaluation = await repo.lock_evaluation(d.conn, submitted.submission_id)
        if evaluation is None:
            raise Refused(
                RejectionReason.UNKNOWN_SUBMISSION,
                f"submission {submitted.submission_id} is not under evaluation",
            )
        if evaluation.ended_by is EvaluationEnd.WITHDRAWN:
            raise Refused(RejectionReason.INVALID_STATE, "the submission was withdrawn")
        digest = content_hash(data)
        earlier = await repo.external_finding_hash(d.conn, submitted.external_finding_id)
        if earlier is not None:
            if earlier != digest:
                raise Refused(
                    RejectionReason.CONFLICT,
                    f"external finding {submitted.external_finding_id} was recorded with "
                    "different content",
                )
            return  # the same finding, re-signed: recorded already
        finding = manual_finding(submitted, evaluation.model_id, now)
        if await repo.insert_finding(d.conn, finding, content_sha256=digest):
            await d.outbox.publish(self.topic, finding, subject=str(finding.submission_id))

    async def invalid_external_finding(self, record: InvalidRecord) -> bool:
        """Answer a finding that failed decoding; bytes that aren't JSON go to the DLQ."""
        try:
            document = json.loads(record.raw)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            return False
        if not isinstance(document, dict):
            return False
        event_id = document.get("id")
        if not (isinstance(event_id, str) and 0 < len(event_id) <= 200):
            event_id = None
        answer = rejection(
            RejectionReason(record.violation.reason),
            record.violation.detail,
            datetime.now(UTC),
            rejected_event_id=event_id,
            data=document.get("data"),
            errors=field_errors(record.violation),
        )
        if answer is None:
            return False
        await record.outbox.publish(self.topic, answer, subject=subject_for(answer))
        return True
