"""Read queries for the operator CLI (the write side is repository.py)."""

from __future__ import annotations

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
