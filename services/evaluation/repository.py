"""All of evaluation's write-side SQL (schema: migrations/; read queries for the CLI
are in queries.py).

Every function takes the connection of the caller's transaction. Times that
decide something (leases, backoff, deadlines) come from the caller's injected
clock, never from the database's ``now()``. Lock order, to stay free of
deadlocks: the evaluation row first (``lock_evaluation``), then its jobs.
Claiming takes job rows only, with SKIP LOCKED, so it never waits.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import asyncpg

from contracts.events import FindingRecorded, SubmissionAccepted
from contracts.events.common import RiskDomain
from contracts.events.evaluation import EvaluationEnd
from services.evaluation.model import (
    Assignment,
    ClaimedJob,
    Evaluation,
    Failure,
    JobState,
    JobView,
    Lease,
    LockedJob,
)
from services.evaluation.planning import EvaluationPlan

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from services.runtime.database import Connection

D = TypeVar("D", bound="DataclassInstance")


def jobs_channel(schema: str) -> str:
    """The NOTIFY channel that wakes the workers of a schema."""
    return f"{schema}_jobs"


def _from_row(cls: type[D], row: asyncpg.Record, **converted: Any) -> D:
    """The state type ``cls`` from the row's columns named as its fields; ``converted``
    gives the fields whose values need more than the column (an enum, another name)."""
    columns = {f.name: row[f.name] for f in fields(cls) if f.name not in converted}
    return cls(**columns, **converted)


# --- evaluations ------------------------------------------------------------------


async def insert_evaluation(
    conn: Connection, accepted: SubmissionAccepted, plan: EvaluationPlan, started_at: datetime
) -> bool:
    """False when the submission was planned before."""
    access = accepted.evaluation_access
    inserted = await conn.fetchval(
        """INSERT INTO evaluations (submission_id, lab_id, model_id, endpoint, api_model,
                                    credential_ref, registry_version, deadline, started_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (submission_id) DO NOTHING
           RETURNING true""",
        accepted.submission_id,
        accepted.lab_id,
        accepted.model_id,
        str(access.endpoint),
        access.api_model,
        access.credential_ref,
        plan.registry_version,
        accepted.deadline,
        started_at,
    )
    return bool(inserted)


async def insert_jobs(
    conn: Connection, plan: EvaluationPlan, traceparent: str | None, now: datetime
) -> None:
    await conn.executemany(
        """INSERT INTO jobs (job_id, submission_id, suite_id, suite_version, domain, capability,
                             task_ref, timeout_seconds, max_attempts, traceparent, available_at,
                             created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11)""",
        [
            (
                job.job_id,
                plan.submission_id,
                job.suite.id,
                job.suite.version,
                job.suite.domain.value,
                job.suite.capability,
                job.suite.task,
                job.suite.timeout_seconds,
                job.suite.max_attempts,
                traceparent,
                now,
            )
            for job in plan.jobs
        ],
    )


async def wake_workers(conn: Connection) -> None:
    """Delivered at commit: idle workers claim at once instead of at their next poll."""
    await conn.execute("SELECT pg_notify(current_schema() || '_jobs', '')")


def _evaluation(row: asyncpg.Record) -> Evaluation:
    ended_by = row["ended_by"]
    return _from_row(Evaluation, row, ended_by=EvaluationEnd(ended_by) if ended_by else None)


async def lock_evaluation(conn: Connection, submission_id: UUID) -> Evaluation | None:
    row = await conn.fetchrow(
        "SELECT * FROM evaluations WHERE submission_id = $1 FOR UPDATE", submission_id
    )
    return _evaluation(row) if row else None


async def end_evaluation(
    conn: Connection, submission_id: UUID, ended_by: EvaluationEnd, now: datetime
) -> None:
    await conn.execute(
        "UPDATE evaluations SET ended_by = $2, ended_at = $3 WHERE submission_id = $1",
        submission_id,
        ended_by.value,
        now,
    )


async def close_window(conn: Connection, submission_id: UUID, now: datetime) -> None:
    """Record that the review window closed (whether or not the evaluation had ended)."""
    await conn.execute(
        """UPDATE evaluations SET window_closed_at = $2
           WHERE submission_id = $1 AND window_closed_at IS NULL""",
        submission_id,
        now,
    )


async def job_views(conn: Connection, submission_id: UUID) -> list[JobView]:
    rows = await conn.fetch(
        """SELECT j.job_id, j.suite_id, j.suite_version, j.domain, j.state, j.attempts,
                  coalesce(array_agg(f.finding_id ORDER BY f.metric)
                           FILTER (WHERE f.finding_id IS NOT NULL), '{}') AS finding_ids
           FROM jobs j LEFT JOIN findings f ON f.job_id = j.job_id
           WHERE j.submission_id = $1
           GROUP BY j.job_id ORDER BY j.suite_id, j.suite_version""",
        submission_id,
    )
    return [
        _from_row(
            JobView,
            r,
            domain=RiskDomain(r["domain"]),
            state=JobState(r["state"]),
            finding_ids=list(r["finding_ids"]),
        )
        for r in rows
    ]


# --- the queue ----------------------------------------------------------------------


async def claim_jobs(
    conn: Connection, worker: str, limit: int, lease_s: float, now: datetime
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs of open evaluations; skips rows others hold."""
    rows = await conn.fetch(
        """WITH ready AS (
               SELECT j.job_id FROM jobs j JOIN evaluations e USING (submission_id)
               WHERE j.state = 'pending' AND j.available_at <= $4
                 AND e.ended_by IS NULL AND e.deadline > $4
               ORDER BY j.available_at, j.created_at
               LIMIT $2
               FOR UPDATE OF j SKIP LOCKED)
           UPDATE jobs j
           SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,
               lease_token = gen_random_uuid(),
               lease_expires_at = $4::timestamptz + make_interval(secs => $3),
               heartbeat_at = $4, updated_at = $4
           FROM ready, evaluations e
           WHERE j.job_id = ready.job_id AND e.submission_id = j.submission_id
           RETURNING j.*, e.lab_id, e.model_id, e.endpoint, e.api_model, e.credential_ref,
                     e.deadline""",
        worker,
        limit,
        lease_s,
        now,
    )
    if rows:
        await conn.executemany(
            """INSERT INTO job_attempts (job_id, attempt, worker, lease_token, started_at)
               VALUES ($1, $2, $3, $4, $5)""",
            [(r["job_id"], r["attempts"], worker, r["lease_token"], now) for r in rows],
        )
    return [_claimed(r) for r in rows]


def _claimed(row: asyncpg.Record) -> ClaimedJob:
    """A claimed job from its row (``j.*`` and the evaluation's columns the run needs)."""
    return _from_row(
        ClaimedJob,
        row,
        domain=RiskDomain(row["domain"]),
        attempt=row["attempts"],  # the attempt this claim started
    )


async def heartbeat(conn: Connection, lease: Lease, lease_s: float, now: datetime) -> bool:
    """Extend the lease; False when it is no longer ours (expired and taken, or stopped)."""
    renewed = await conn.fetchval(
        """UPDATE jobs SET lease_expires_at = $3::timestamptz + make_interval(secs => $4),
                          heartbeat_at = $3
           WHERE job_id = $1 AND lease_token = $2 AND state = 'running'
           RETURNING true""",
        lease.job_id,
        lease.token,
        now,
        lease_s,
    )
    return bool(renewed)


async def expired_jobs(conn: Connection, now: datetime, limit: int = 50) -> list[tuple[UUID, UUID]]:
    """(job id, submission id) of running jobs whose worker stopped heartbeating."""
    rows = await conn.fetch(
        """SELECT job_id, submission_id FROM jobs
           WHERE state = 'running' AND lease_expires_at < $1
           ORDER BY lease_expires_at LIMIT $2""",
        now,
        limit,
    )
    return [(r["job_id"], r["submission_id"]) for r in rows]


def _locked(row: asyncpg.Record) -> LockedJob:
    return _from_row(LockedJob, row, domain=RiskDomain(row["domain"]), state=JobState(row["state"]))


async def lock_leased_job(conn: Connection, lease: Lease) -> LockedJob | None:
    """The job, locked, if this lease still holds it; None means the attempt was lost."""
    row = await conn.fetchrow(
        """SELECT * FROM jobs WHERE job_id = $1 AND lease_token = $2 AND state = 'running'
           FOR UPDATE""",
        lease.job_id,
        lease.token,
    )
    return _locked(row) if row else None


async def lock_expired_job(conn: Connection, job_id: UUID, now: datetime) -> LockedJob | None:
    row = await conn.fetchrow(
        """SELECT * FROM jobs WHERE job_id = $1 AND state = 'running' AND lease_expires_at < $2
           FOR UPDATE SKIP LOCKED""",
        job_id,
        now,
    )
    return _locked(row) if row else None


async def complete_job(conn: Connection, job_id: UUID, now: datetime) -> None:
    await conn.execute(
        """UPDATE jobs SET state = 'completed', lease_owner = NULL, lease_token = NULL,
                          lease_expires_at = NULL, last_failure = NULL, last_error = NULL,
                          updated_at = $2, finished_at = $2
           WHERE job_id = $1""",
        job_id,
        now,
    )


async def retry_job(
    conn: Connection, job_id: UUID, delay_s: float, failure: Failure, now: datetime
) -> None:
    await conn.execute(
        """UPDATE jobs SET state = 'pending',
                          available_at = $5::timestamptz + make_interval(secs => $2),
                          lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                          last_failure = $3, last_error = $4, updated_at = $5
           WHERE job_id = $1""",
        job_id,
        delay_s,
        failure.kind.value,
        failure.message,
        now,
    )


async def fail_job(conn: Connection, job_id: UUID, failure: Failure, now: datetime) -> None:
    await conn.execute(
        """UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_token = NULL,
                          lease_expires_at = NULL, last_failure = $2, last_error = $3,
                          updated_at = $4, finished_at = $4
           WHERE job_id = $1""",
        job_id,
        failure.kind.value,
        failure.message,
        now,
    )


async def release_job(conn: Connection, lease: Lease, now: datetime) -> bool:
    """Give a job back unharmed (graceful shutdown): the attempt does not count."""
    released = await conn.fetchval(
        """UPDATE jobs SET state = 'pending', attempts = attempts - 1, available_at = $3,
                          lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                          updated_at = $3
           WHERE job_id = $1 AND lease_token = $2 AND state = 'running'
           RETURNING true""",
        lease.job_id,
        lease.token,
        now,
    )
    return bool(released)


async def stop_jobs(conn: Connection, submission_id: UUID, state: JobState, now: datetime) -> int:
    """Every unfinished job of the submission becomes ``state``; running attempts are stopped."""
    await conn.execute(
        """UPDATE job_attempts a SET outcome = 'stopped', ended_at = $2
           FROM jobs j
           WHERE j.job_id = a.job_id AND j.submission_id = $1 AND j.state = 'running'
             AND a.lease_token = j.lease_token AND a.outcome = 'running'""",
        submission_id,
        now,
    )
    stopped = await conn.fetch(
        """UPDATE jobs SET state = $2, lease_owner = NULL, lease_token = NULL,
                          lease_expires_at = NULL, updated_at = $3, finished_at = $3
           WHERE submission_id = $1 AND state IN ('pending', 'running')
           RETURNING job_id""",
        submission_id,
        state.value,
        now,
    )
    return len(stopped)


async def end_attempt(
    conn: Connection,
    lease_token: UUID,
    outcome: str,
    now: datetime,
    *,
    failure: Failure | None = None,
    evidence_ref: str | None = None,
    inspect_seconds: float | None = None,
) -> None:
    """Close the attempt's record; a failure keeps its public message only (model.Failure)."""
    await conn.execute(
        """UPDATE job_attempts SET outcome = $2, ended_at = $3, failure = $4, error = $5,
                                  evidence_ref = $6, inspect_seconds = $7
           WHERE lease_token = $1 AND outcome = 'running'""",
        lease_token,
        outcome,
        now,
        failure.kind.value if failure else None,
        failure.message if failure else None,
        evidence_ref,
        inspect_seconds,
    )


# --- findings -----------------------------------------------------------------------


async def insert_finding(
    conn: Connection,
    finding: FindingRecorded,
    *,
    job_id: UUID | None = None,
    content_sha256: str | None = None,
) -> bool:
    """False when this finding id was recorded before (nothing is written then)."""
    inserted = await conn.fetchval(
        """INSERT INTO findings (finding_id, submission_id, job_id, external_finding_id,
                                 content_sha256, method, evaluator, suite_id, suite_version,
                                 domain, capability, metric, score, stderr, samples_total,
                                 samples_scored, evidence_ref, evidence_sha256, summary,
                                 recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                   $18, $19, $20)
           ON CONFLICT DO NOTHING
           RETURNING true""",
        finding.finding_id,
        finding.submission_id,
        job_id,
        finding.external_finding_id,
        content_sha256,
        finding.method.value,
        finding.evaluator,
        finding.suite_id,
        finding.suite_version,
        finding.domain.value,
        finding.capability,
        finding.metric,
        finding.score,
        finding.stderr,
        finding.samples_total,
        finding.samples_scored,
        finding.evidence_ref,
        finding.evidence_sha256,
        finding.summary,
        finding.recorded_at,
    )
    return bool(inserted)


async def external_finding_hash(conn: Connection, external_finding_id: UUID) -> str | None:
    """content_sha256 of an external finding recorded before, else None."""
    value: str | None = await conn.fetchval(
        "SELECT content_sha256 FROM findings WHERE external_finding_id = $1", external_finding_id
    )
    return value


# --- assignments -----------------------------------------------------------------


async def evaluation_exists(conn: Connection, submission_id: UUID) -> bool:
    exists = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM evaluations WHERE submission_id = $1)", submission_id
    )
    return bool(exists)


async def assign(conn: Connection, assignment: Assignment) -> bool:
    """False when the evaluator was assigned to the submission already."""
    inserted = await conn.fetchval(
        """INSERT INTO evaluator_assignments (evaluator_id, submission_id, assigned_at, assigned_by)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        assignment.evaluator_id,
        assignment.submission_id,
        assignment.assigned_at,
        assignment.assigned_by,
    )
    return bool(inserted)


async def unassign(conn: Connection, evaluator_id: str, submission_id: UUID) -> bool:
    deleted = await conn.fetchval(
        """DELETE FROM evaluator_assignments WHERE evaluator_id = $1 AND submission_id = $2
           RETURNING true""",
        evaluator_id,
        submission_id,
    )
    return bool(deleted)


async def lock_assignment(
    conn: Connection, evaluator_id: str, submission_id: UUID
) -> Assignment | None:
    """The assignment, share-locked: an ``unassign`` waits for the finding being recorded."""
    row = await conn.fetchrow(
        """SELECT * FROM evaluator_assignments WHERE evaluator_id = $1 AND submission_id = $2
           FOR SHARE""",
        evaluator_id,
        submission_id,
    )
    return _from_row(Assignment, row) if row is not None else None
