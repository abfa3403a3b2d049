"""Read queries for the operator CLI and the metrics (the write side is repository.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

if TYPE_CHECKING:
    from services.runtime.database import Connection


async def evaluations(conn: Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT e.submission_id, e.model_id, e.registry_version, e.deadline, e.ended_by,
                  e.window_closed_at, count(j.*) AS jobs,
                  count(j.*) FILTER (WHERE j.state = 'completed') AS completed
           FROM evaluations e LEFT JOIN jobs j USING (submission_id)
           GROUP BY e.submission_id ORDER BY e.started_at DESC LIMIT $1""",
        limit,
    )


async def jobs(
    conn: Connection, submission_id: UUID | None, state: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT job_id, submission_id, suite_id, suite_version, state, attempts, max_attempts,
                  lease_owner, lease_expires_at, available_at, last_failure
           FROM jobs
           WHERE ($1::uuid IS NULL OR submission_id = $1) AND ($2::text IS NULL OR state = $2)
           ORDER BY created_at DESC, suite_id LIMIT $3""",
        submission_id,
        state,
        limit,
    )


async def job_detail(
    conn: Connection, job_id: UUID
) -> tuple[asyncpg.Record | None, list[asyncpg.Record], list[asyncpg.Record]]:
    job = await conn.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
    attempts = await conn.fetch(
        "SELECT * FROM job_attempts WHERE job_id = $1 ORDER BY started_at", job_id
    )
    found = await conn.fetch("SELECT * FROM findings WHERE job_id = $1 ORDER BY metric", job_id)
    return job, attempts, found


async def findings(conn: Connection, submission_id: UUID | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM findings WHERE ($1::uuid IS NULL OR submission_id = $1)
           ORDER BY recorded_at, suite_id, metric""",
        submission_id,
    )


async def finding(conn: Connection, finding_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM findings WHERE finding_id = $1", finding_id)


async def assignments(conn: Connection, submission_id: UUID | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT evaluator_id, submission_id, assigned_at, assigned_by
           FROM evaluator_assignments WHERE ($1::uuid IS NULL OR submission_id = $1)
           ORDER BY submission_id, evaluator_id""",
        submission_id,
    )


# The job queue, for the metrics (app.py): each a short scan of a partial index.
async def jobs_by_state(conn: Connection) -> dict[str, int]:
    """Jobs waiting (pending: due, or backing off before a retry) and running."""
    rows = await conn.fetch(
        """SELECT state, count(*) AS n FROM jobs
           WHERE state IN ('pending', 'running') GROUP BY state"""
    )
    return {"pending": 0, "running": 0} | {r["state"]: int(r["n"]) for r in rows}


async def oldest_due_job_wait(conn: Connection, now: datetime) -> float:
    """Seconds the longest-waiting due job has waited for a worker (0: none waits)."""
    waited = await conn.fetchval(
        """SELECT coalesce(extract(epoch FROM $1 - min(available_at)), 0) FROM jobs
           WHERE state = 'pending' AND available_at <= $1""",
        now,
    )
    return max(0.0, float(waited))


async def expired_leases(conn: Connection, now: datetime) -> int:
    """Running jobs whose worker stopped renewing its lease (died; not yet taken back)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires_at < $1", now
        )
    )
