"""What happens to an evaluation, step by step: domain decisions + repository + outbox.

Each function runs inside the caller's transaction (a consumer's delivery or a
worker's own), so a state change and the events it causes commit together.
No SQL here (repository.py) and no rules of their own (planning, jobs, findings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from contracts.events import SubmissionAccepted
from contracts.events.evaluation import EvaluationEnd, FailureKind
from services.evaluation import repository as repo
from services.evaluation.findings import JobContext, NoScores, automated_findings, evidence_ref
from services.evaluation.jobs import (
    GiveUp,
    JobView,
    RetryPolicy,
    after_failure,
    all_ended,
    evaluation_completed,
    evaluation_failed,
    stopped_state,
)
from services.evaluation.planning import EvaluationPlan, evaluation_started, nothing_to_evaluate
from services.evaluation.runs import RunResult

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.outbox import Outbox


@dataclass(frozen=True)
class Lease:
    """The attempt a worker holds: its result counts only while the lease does."""

    job_id: UUID
    submission_id: UUID
    attempt: int
    token: UUID


async def start_evaluation(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    accepted: SubmissionAccepted,
    plan: EvaluationPlan,
    traceparent: str | None,
    now: datetime,
) -> bool:
    """Store the plan and queue its jobs; False if the submission was planned before."""
    if not await repo.insert_evaluation(conn, accepted, plan, now):
        return False
    await repo.insert_jobs(conn, plan, traceparent)
    await repo.wake_workers(conn)
    started = evaluation_started(accepted, plan, now)
    await outbox.publish(topic, started, subject=str(accepted.submission_id))
    return True


async def end_unplanned_evaluation(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    accepted: SubmissionAccepted,
    registry_version: str,
    reason: str,
    now: datetime,
) -> bool:
    """No suite applies: record the evaluation as ended and say so (EvaluationCompleted
    with no suites), so nobody waits for results that will never come. False if the
    submission was planned before."""
    plan = EvaluationPlan(accepted.submission_id, registry_version, [])
    if not await repo.insert_evaluation(conn, accepted, plan, now):
        return False
    await repo.end_evaluation(conn, accepted.submission_id, EvaluationEnd.NO_APPLICABLE_SUITES)
    completed = nothing_to_evaluate(accepted, reason, now)
    await outbox.publish(topic, completed, subject=str(accepted.submission_id))
    return True


async def record_success(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    lease: Lease,
    job: JobContext,
    run: RunResult,
    policy: RetryPolicy,
    now: datetime,
) -> bool:
    """Findings + completed job, or a failed attempt if the run scored nothing."""
    try:
        findings = automated_findings(job, run, now)
    except NoScores as exc:
        return await record_failure(
            conn, outbox, topic, lease, FailureKind.ERROR, str(exc), policy, now
        )
    evaluation = await repo.lock_evaluation(conn, lease.submission_id)
    locked = await repo.lock_leased_job(conn, lease.job_id, lease.token)
    if evaluation is None or locked is None:
        await repo.end_attempt(conn, lease.token, "lease_lost")
        return False
    for finding in findings:
        if await repo.insert_finding(conn, finding, job_id=lease.job_id):
            await outbox.publish(topic, finding, subject=str(finding.submission_id))
    await repo.complete_job(conn, lease.job_id)
    await repo.end_attempt(
        conn,
        lease.token,
        "succeeded",
        evidence_ref=evidence_ref(job),
        inspect_seconds=run.inspect_seconds,
    )
    await _complete_if_all_ended(conn, outbox, topic, evaluation, now)
    return True


async def record_failure(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    lease: Lease,
    failure: FailureKind,
    error: str,
    policy: RetryPolicy,
    now: datetime,
) -> bool:
    """Retry later, or fail the suite for good; False if the lease was lost meanwhile."""
    evaluation = await repo.lock_evaluation(conn, lease.submission_id)
    locked = await repo.lock_leased_job(conn, lease.job_id, lease.token)
    if evaluation is None or locked is None:
        await repo.end_attempt(conn, lease.token, "lease_lost")
        return False
    await repo.end_attempt(conn, lease.token, "failed", failure=failure, error=error)
    await _after_failure(conn, outbox, topic, evaluation, locked, failure, error, policy, now)
    return True


async def reclaim_expired(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    job_id: UUID,
    submission_id: UUID,
    policy: RetryPolicy,
    now: datetime,
) -> bool:
    """A job whose worker stopped heartbeating: its attempt failed (worker lost)."""
    evaluation = await repo.lock_evaluation(conn, submission_id)
    locked = await repo.lock_expired_job(conn, job_id)
    if evaluation is None or locked is None:
        return False
    error = f"attempt {locked.attempts}: the worker stopped renewing its lease"
    if locked.lease_token is not None:
        await repo.end_attempt(
            conn, locked.lease_token, "lease_lost", failure=FailureKind.WORKER_LOST, error=error
        )
    await _after_failure(
        conn, outbox, topic, evaluation, locked, FailureKind.WORKER_LOST, error, policy, now
    )
    return True


async def _after_failure(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    evaluation: repo.Evaluation,
    job: repo.LockedJob,
    failure: FailureKind,
    error: str,
    policy: RetryPolicy,
    now: datetime,
) -> None:
    decision = after_failure(job.attempts, job.max_attempts, policy, failure)
    if not isinstance(decision, GiveUp):
        await repo.retry_job(conn, job.job_id, decision.delay_s, failure, error)
        return
    await repo.fail_job(conn, job.job_id, failure, error)
    view = JobView(job.job_id, job.suite_id, job.suite_version, job.domain, job.state, job.attempts)
    failed = evaluation_failed(
        evaluation.submission_id, evaluation.model_id, view, failure, error, now
    )
    await outbox.publish(topic, failed, subject=str(evaluation.submission_id))
    await _complete_if_all_ended(conn, outbox, topic, evaluation, now)


async def _complete_if_all_ended(
    conn: Connection, outbox: Outbox, topic: str, evaluation: repo.Evaluation, now: datetime
) -> None:
    jobs = await repo.job_views(conn, evaluation.submission_id)
    if not evaluation.open or not all_ended(jobs):
        return
    ended_by = EvaluationEnd.ALL_SUITES_ENDED
    await repo.end_evaluation(conn, evaluation.submission_id, ended_by)
    completed = evaluation_completed(
        evaluation.submission_id, evaluation.model_id, ended_by, jobs, now
    )
    await outbox.publish(topic, completed, subject=str(evaluation.submission_id))


async def stop_evaluation(
    conn: Connection,
    outbox: Outbox,
    topic: str,
    submission_id: UUID,
    ended_by: EvaluationEnd,
    now: datetime,
) -> bool:
    """Window closed or withdrawn: unfinished jobs stop; EvaluationCompleted says which.

    Running attempts notice at their next heartbeat (the lease is gone) and are killed;
    a result that arrives later finds no lease and is discarded.
    """
    evaluation = await repo.lock_evaluation(conn, submission_id)
    if evaluation is None or not evaluation.open:
        return False
    await repo.stop_jobs(conn, submission_id, stopped_state(ended_by))
    await repo.end_evaluation(conn, submission_id, ended_by)
    jobs = await repo.job_views(conn, submission_id)
    completed = evaluation_completed(submission_id, evaluation.model_id, ended_by, jobs, now)
    await outbox.publish(topic, completed, subject=str(submission_id))
    return True
