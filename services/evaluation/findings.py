"""Findings: scored Inspect results (automated) and external evaluators' reports (manual).

Finding ids are deterministic (per job and metric, or per external finding id),
so a job that is re-run after a crash, or an event that is redelivered, can
never record the same finding twice. The method of a finding is the agency's
classification, never the sender's: an external evaluator's report is
``manual``, always.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.events import (
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
    RejectionReason,
    signing_input,
)
from contracts.events.common import EvaluationMethod, FieldError
from contracts.events.evaluation import EvaluationEnd
from services.evaluation.model import Assignment, Evaluation, EvaluatorKey, JobContext
from services.evaluation.runs import MetricResult, RunResult

FINDING_NAMESPACE = UUID("2c9a7f41-5e3b-4d6c-8a1f-9b0e7d6c5a43")
AGENCY = "agency"
EXTERNAL_SUITE = "external"
MANUAL_SUITE_VERSION = "manual"
EVIDENCE_PREFIX = "inspect-logs"


class NoScores(Exception):
    """The run succeeded but produced no metric a finding can carry."""


def finding_id(job_id: UUID, metric: str) -> UUID:
    return uuid.uuid5(FINDING_NAMESPACE, f"{job_id}/{metric}")


def evidence_name(job: JobContext) -> str:
    """The log's name under the Inspect log directory: ``<submission>/<suite>@<version>/...``."""
    return f"{job.submission_id}/{job.suite_id}@{job.suite_version}/attempt-{job.attempt}.eval"


def log_file(log_dir: Path, job: JobContext) -> Path:
    return log_dir / evidence_name(job)


def evidence_ref(job: JobContext) -> str:
    """What a finding cites: ``inspect-logs/<name>`` (inspect-logs/ = FR_INSPECT_LOG_DIR)."""
    return f"{EVIDENCE_PREFIX}/{evidence_name(job)}"


def metric_name(result: MetricResult, several_scorers: bool) -> str:
    name = f"{result.scorer}.{result.metric}" if several_scorers else result.metric
    return re.sub(r"[^a-z0-9._-]", "-", name.lower()).strip("-._")[:64] or "score"


def automated_findings(job: JobContext, run: RunResult, now: datetime) -> list[FindingRecorded]:
    """One finding per metric normalised to [0, 1]; other metrics can't be compared."""
    several = len({m.scorer for m in run.metrics}) > 1
    findings = []
    for result in run.metrics:
        if not 0.0 <= result.value <= 1.0:
            continue
        metric = metric_name(result, several)
        scored = result.samples_scored
        findings.append(
            FindingRecorded(
                finding_id=finding_id(job.job_id, metric),
                submission_id=job.submission_id,
                model_id=job.model_id,
                suite_id=job.suite_id,
                suite_version=job.suite_version,
                domain=job.domain,
                capability=job.capability,
                score=result.value,
                metric=metric,
                stderr=result.stderr if result.stderr is not None and result.stderr >= 0 else None,
                samples_total=run.samples_total,
                samples_scored=min(scored, run.samples_total) if scored is not None else None,
                method=EvaluationMethod.AUTOMATED,
                evaluator=AGENCY,
                evidence_ref=evidence_ref(job),
                evidence_sha256=run.log_sha256,
                recorded_at=now,
            )
        )
    if not findings:
        raise NoScores(f"the run produced no metric in [0, 1] ({len(run.metrics)} metrics)")
    return findings


# --- external findings -----------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why an external finding is refused: reason code, a human text, failing fields."""

    reason: RejectionReason
    detail: str
    field_errors: tuple[FieldError, ...] = ()

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def verify_external(
    submitted: ExternalFindingSubmitted,
    data: dict[str, Any],
    subject: str,
    evaluator_known: bool,
    key: EvaluatorKey | None,
    now: datetime,
    max_age: timedelta,
    max_future: timedelta,
) -> Refusal | None:
    """Authenticity and freshness; None when both hold. Replay (nonce) is checked by the
    caller, with the nonce store.

    ``evaluator_known``: some key was ever registered for ``submitted.evaluator_id``.
    """
    if subject != str(submitted.submission_id):
        return Refusal(
            RejectionReason.SUBJECT_MISMATCH,
            f"CloudEvent subject {subject!r} is not the signed submission id",
        )
    signature = submitted.signature
    if not evaluator_known:
        return Refusal(
            RejectionReason.UNKNOWN_EVALUATOR,
            f"evaluator {submitted.evaluator_id!r} has no registered key",
        )
    if key is None or key.evaluator_id != submitted.evaluator_id:
        return Refusal(
            RejectionReason.UNKNOWN_KEY,
            f"key {signature.key_id!r} is not registered for evaluator {submitted.evaluator_id!r}",
        )
    if key.revoked:
        return Refusal(RejectionReason.REVOKED_KEY, f"key {key.key_id!r} is revoked")
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(
            base64.b64decode(signature.value, validate=True), signing_input(data)
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return Refusal(
            RejectionReason.BAD_SIGNATURE,
            f"the signature does not verify with key {key.key_id!r}",
        )
    if signature.issued_at < now - max_age:
        return Refusal(RejectionReason.STALE_ISSUED_AT, f"issued_at {signature.issued_at} is stale")
    if signature.issued_at > now + max_future:
        return Refusal(
            RejectionReason.FUTURE_ISSUED_AT, f"issued_at {signature.issued_at} is in the future"
        )
    if submitted.observed_at > now + max_future:
        return Refusal(
            RejectionReason.MALFORMED,
            "observed_at is in the future",
            (FieldError(path="data.observed_at", message="must not be in the future"),),
        )
    return None


def may_record(
    submitted: ExternalFindingSubmitted,
    assignment: Assignment | None,
    evaluation: Evaluation | None,
    now: datetime,
) -> Refusal | None:
    """An authenticated evaluator may add a finding to a submission it is assigned to,
    while the submission's review window is open and it is not withdrawn."""
    if assignment is None or evaluation is None:
        return Refusal(
            RejectionReason.NOT_ASSIGNED,
            f"evaluator {submitted.evaluator_id!r} is not assigned to submission "
            f"{submitted.submission_id}; an operator assigns evaluators to submissions",
        )
    if evaluation.ended_by is EvaluationEnd.WITHDRAWN:
        return Refusal(RejectionReason.INVALID_STATE, "the submission was withdrawn")
    if not evaluation.window_open(now):
        closed = evaluation.window_closed_at or evaluation.deadline
        return Refusal(
            RejectionReason.INVALID_STATE,
            f"the review window of submission {submitted.submission_id} closed at "
            f"{closed.isoformat()}: findings are accepted only while it is open",
        )
    return None


def content_hash(data: dict[str, Any]) -> str:
    """What the finding says, without its signature: tells a re-send from a conflict."""
    body = {k: v for k, v in data.items() if k != "signature"}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def manual_finding(
    submitted: ExternalFindingSubmitted, model_id: str, now: datetime
) -> FindingRecorded:
    return FindingRecorded(
        finding_id=uuid.uuid5(FINDING_NAMESPACE, f"external/{submitted.external_finding_id}"),
        submission_id=submitted.submission_id,
        model_id=model_id,
        suite_id=EXTERNAL_SUITE,
        suite_version=MANUAL_SUITE_VERSION,
        domain=submitted.domain,
        capability=submitted.capability,
        score=submitted.score,
        metric=submitted.metric,
        samples_total=submitted.samples_total,
        method=EvaluationMethod.MANUAL,  # the agency's classification, not the sender's
        evaluator=submitted.evaluator_id,
        evidence_ref=submitted.evidence_ref,
        summary=submitted.summary,
        external_finding_id=submitted.external_finding_id,
        recorded_at=now,
    )


def rejection(
    refusal: Refusal,
    now: datetime,
    *,
    rejected_event_id: str | None,
    data: object = None,
) -> ExternalFindingRejected | None:
    """The evaluator's answer; None when the input names nothing to address it to."""
    data = data if isinstance(data, dict) else {}
    submission_id = _uuid(data.get("submission_id"))
    if submission_id is None and not rejected_event_id:
        return None
    evaluator = data.get("evaluator_id")
    return ExternalFindingRejected(
        reason=refusal.reason,
        detail=refusal.detail[:4000] or refusal.reason.value,
        field_errors=list(refusal.field_errors[:100]),
        rejected_event_id=rejected_event_id,
        rejected_at=now,
        submission_id=submission_id,
        evaluator_id=evaluator
        if isinstance(evaluator, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", evaluator)
        else None,
        external_finding_id=_uuid(data.get("external_finding_id")),
    )


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None
