"""What happens to an evaluation, step by step: decisions + repository + events.

Each step runs in the transaction of the ``TxContext`` it is given (a consumed
event's, a worker's own), so a state change and the events it publishes
commit together. No SQL here (repository.py) and no rules of their own
(planning, jobs, findings).
"""

from __future__ import annotations

from uuid import UUID

from contracts.events import ExternalFindingSubmitted, RejectionReason, SubmissionAccepted
from contracts.events.evaluation import EvaluationEnd, FailureKind
from services.evaluation import repository as repo
from services.evaluation.findings import (
    NoScores,
    automated_findings,
    evidence_ref,
    manual_finding,
    may_record,
)
from services.evaluation.jobs import (
    GiveUp,
    RetryPolicy,
    after_failure,
    all_ended,
    evaluation_completed,
    evaluation_failed,
    stopped_state,
    worker_lost,
)
from services.evaluation.model import Evaluation, Failure, JobContext, Lease, LockedJob
from services.evaluation.planning import EvaluationPlan, evaluation_started, nothing_to_evaluate
from services.evaluation.runs import RunResult
from services.runtime import TxContext
from services.runtime.telemetry import current_trace_headers
from services.trust.refusal import Refusal


async def start_evaluation(
    ctx: TxContext, accepted: SubmissionAccepted, plan: EvaluationPlan
) -> bool:
    """Store the plan and queue its jobs; False if the submission was planned before.

    The jobs keep the current trace, so the worker's spans continue it."""
    now = ctx.now()
    if not await repo.insert_evaluation(ctx.conn, accepted, plan, now):
        return False
    traceparent = current_trace_headers().get("traceparent")
    await repo.insert_jobs(ctx.conn, plan, traceparent, now)
    await repo.wake_workers(ctx.conn)
    ctx.publish(evaluation_started(accepted, plan, now))
    return True


async def end_unplanned_evaluation(
    ctx: TxContext, accepted: SubmissionAccepted, registry_version: str, reason: str
) -> bool:
    """No suite applies: record the evaluation as ended and say so (EvaluationCompleted
    with no suites), so nobody waits for results that will never come. False if the
    submission was planned before."""
    now = ctx.now()
    plan = EvaluationPlan(accepted.submission_id, registry_version, [])
    if not await repo.insert_evaluation(ctx.conn, accepted, plan, now):
        return False
    await repo.end_evaluation(
        ctx.conn, accepted.submission_id, EvaluationEnd.NO_APPLICABLE_SUITES, now
    )
    ctx.publish(nothing_to_evaluate(accepted, reason, now))
    return True


async def record_success(
    ctx: TxContext, lease: Lease, job: JobContext, run: RunResult, policy: RetryPolicy
) -> bool:
    """Findings + completed job, or a failed attempt if the run scored nothing."""
    now = ctx.now()
    try:
        findings = automated_findings(job, run, now)
    except NoScores as exc:
        return await record_failure(ctx, lease, Failure(FailureKind.ERROR, str(exc)), policy)
    evaluation = await repo.lock_evaluation(ctx.conn, lease.submission_id)
    locked = await repo.lock_leased_job(ctx.conn, lease)
    if evaluation is None or locked is None:
        await repo.end_attempt(ctx.conn, lease.token, "lease_lost", now)
        return False
    for finding in findings:
        if await repo.insert_finding(ctx.conn, finding, job_id=lease.job_id):
            ctx.publish(finding)
    await repo.complete_job(ctx.conn, lease.job_id, now)
    await repo.end_attempt(
        ctx.conn,
        lease.token,
        "succeeded",
        now,
        evidence_ref=evidence_ref(job),
        inspect_seconds=run.inspect_seconds,
    )
    await _complete_if_all_ended(ctx, evaluation)
    return True


async def record_failure(
    ctx: TxContext, lease: Lease, failure: Failure, policy: RetryPolicy
) -> bool:
    """Retry later, or fail the suite for good; False if the lease was lost meanwhile."""
    now = ctx.now()
    evaluation = await repo.lock_evaluation(ctx.conn, lease.submission_id)
    locked = await repo.lock_leased_job(ctx.conn, lease)
    if evaluation is None or locked is None:
        await repo.end_attempt(ctx.conn, lease.token, "lease_lost", now)
        return False
    await repo.end_attempt(ctx.conn, lease.token, "failed", now, failure=failure)
    await _after_failure(ctx, evaluation, locked, failure, policy)
    return True


async def reclaim_expired(
    ctx: TxContext, job_id: UUID, submission_id: UUID, policy: RetryPolicy
) -> bool:
    """A job whose worker stopped heartbeating: its attempt failed (worker lost)."""
    now = ctx.now()
    evaluation = await repo.lock_evaluation(ctx.conn, submission_id)
    locked = await repo.lock_expired_job(ctx.conn, job_id, now)
    if evaluation is None or locked is None:
        return False
    failure = worker_lost(locked.attempts)
    if locked.lease_token is not None:
        await repo.end_attempt(ctx.conn, locked.lease_token, "lease_lost", now, failure=failure)
    await _after_failure(ctx, evaluation, locked, failure, policy)
    return True


async def _after_failure(
    ctx: TxContext,
    evaluation: Evaluation,
    job: LockedJob,
    failure: Failure,
    policy: RetryPolicy,
) -> None:
    now = ctx.now()
    decision = after_failure(job.attempts, job.max_attempts, policy, failure.kind)
    if not isinstance(decision, GiveUp):
        await repo.retry_job(ctx.conn, job.job_id, decision.delay_s, failure, now)
        return
    await repo.fail_job(ctx.conn, job.job_id, failure, now)
    ctx.publish(
        evaluation_failed(evaluation.submission_id, evaluation.model_id, job.view, failure, now)
    )
    await _complete_if_all_ended(ctx, evaluation)


async def _complete_if_all_ended(ctx: TxContext, evaluation: Evaluation) -> None:
    jobs = await repo.job_views(ctx.conn, evaluation.submission_id)
    if not evaluation.open or not all_ended(jobs):
        return
    ended_by = EvaluationEnd.ALL_SUITES_ENDED
    now = ctx.now()
    await repo.end_evaluation(ctx.conn, evaluation.submission_id, ended_by, now)
    ctx.publish(
        evaluation_completed(evaluation.submission_id, evaluation.model_id, ended_by, jobs, now)
    )


async def stop_evaluation(ctx: TxContext, submission_id: UUID, ended_by: EvaluationEnd) -> bool:
    """Window closed or withdrawn: unfinished jobs stop; EvaluationCompleted says which.

    Running attempts notice at their next heartbeat (the lease is gone) and are killed;
    a result that arrives later finds no lease and is discarded. The window's closing
    is recorded even when the evaluation had ended before: manual findings stop then.
    """
    now = ctx.now()
    evaluation = await repo.lock_evaluation(ctx.conn, submission_id)
    if evaluation is None:
        return False
    if ended_by is EvaluationEnd.WINDOW_CLOSED:
        await repo.close_window(ctx.conn, submission_id, now)
    if not evaluation.open:
        return False
    await repo.stop_jobs(ctx.conn, submission_id, stopped_state(ended_by), now)
    await repo.end_evaluation(ctx.conn, submission_id, ended_by, now)
    jobs = await repo.job_views(ctx.conn, submission_id)
    ctx.publish(evaluation_completed(submission_id, evaluation.model_id, ended_by, jobs, now))
    return True


async def record_external_finding(
    ctx: TxContext, submitted: ExternalFindingSubmitted, digest: str
) -> Refusal | None:
    """An authenticated evaluator's finding (signature, freshness and nonce checked by
    the caller): recorded as a manual finding if the evaluator is assigned to the
    submission and its window is open; else the refusal. ``digest`` is the body digest
    of the data as signed (``services.trust.digest``): the same finding re-signed has
    the same digest, a changed one does not."""
    now = ctx.now()
    assignment = await repo.lock_assignment(
        ctx.conn, submitted.evaluator_id, submitted.submission_id
    )
    # Locked: its FindingRecorded must not overtake the worker's EvaluationCompleted
    # (or follow it) out of order on the submission's partition.
    evaluation = (
        await repo.lock_evaluation(ctx.conn, submitted.submission_id) if assignment else None
    )
    refusal = may_record(submitted, assignment, evaluation, now)
    if refusal is not None or evaluation is None:
        return refusal
    earlier = await repo.external_finding_hash(ctx.conn, submitted.external_finding_id)
    if earlier is not None:
        if earlier != digest:
            return Refusal(
                RejectionReason.CONFLICT,
                f"external finding {submitted.external_finding_id} was recorded with "
                "different content",
            )
        return None  # the same finding, re-signed: recorded already
    finding = manual_finding(submitted, evaluation.model_id, now)
    if await repo.insert_finding(ctx.conn, finding, content_sha256=digest):
        ctx.publish(finding)
        ctx.publish_to_owner(submitted.evaluator_id, finding)  # the evaluator's receipt
    return None
