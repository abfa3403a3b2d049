"""Findings: scored Inspect results (automated) and external evaluators' reports (manual).

Finding ids are deterministic (per job and metric, or per external finding id),
so a job that is re-run after a crash, or an event that is redelivered, can
never record the same finding twice. The method of a finding is the agency's
classification, never the sender's: an external evaluator's report is
``manual``, always.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from uuid import UUID

from contracts.events import (
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
    RejectionReason,
)
from contracts.events.common import EvaluationMethod
from contracts.events.evaluation import EvaluationEnd
from services.evaluation.model import Assignment, Evaluation, JobContext
from services.evaluation.runs import MetricResult, RunResult
from services.trust.refusal import Refusal, answer_fields, field_error
from services.trust.unverified import Addressing
from services.trust.verifier import Authenticated

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
#
# Who sent one (signature, key, freshness at the broker's append time, nonce) is the
# trust library's to say (services.trust.verifier.authenticate); these are the
# evaluation's own rules for an authenticated evaluator's finding.


def check_observation(submitted: ExternalFindingSubmitted, latest: datetime) -> Refusal | None:
    """``observed_at`` may not lie after ``latest`` (when the record was appended, plus
    the signer's accepted clock lead): nobody reports what they have not observed yet."""
    if submitted.observed_at <= latest:
        return None
    return Refusal(
        RejectionReason.MALFORMED,
        f"observed_at {submitted.observed_at.isoformat()} is in the future",
        (field_error("data.observed_at", "must not be in the future"),),
    )


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
    where: Addressing,
    sender: Authenticated | None,
    external_finding_id: UUID | None = None,
) -> ExternalFindingRejected | None:
    """The evaluator's answer, addressed to the refused event's id; None when the input
    has no usable event id (the dead-letter topic keeps it for an operator).

    A sender that did not authenticate (``sender`` None) is told the precise reason
    only for shape errors, anything else as ``authentication_failed``
    (``answer_fields``), and its answer does not name the submission it claims, so it
    is keyed by the event id: unauthenticated input never puts a record on a
    submission's partition. An authenticated evaluator hears the precise reason,
    about the submission and the finding it named.
    """
    if where.event_id is None:
        return None
    authenticated = sender is not None
    return ExternalFindingRejected(
        **answer_fields(refusal, sender),
        rejected_event_id=where.event_id,
        rejected_at=now,
        submission_id=UUID(where.subject_id) if authenticated and where.subject_id else None,
        evaluator_id=where.principal_id,
        external_finding_id=external_finding_id if authenticated else None,
    )
