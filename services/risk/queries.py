"""Read queries for the risk service's CLIs (policies, escalations, audit, STIX export).

Nothing here writes. The rows become the service's own types (services/risk/model.py)
through the repository's row mappers, so a CLI shows what the handlers decide on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from contracts.events import FindingRecorded, RiskAssessed
from services.risk import repository
from services.risk.model import AuditEntry, Escalation

if TYPE_CHECKING:
    from services.runtime.database import Connection


@dataclass(frozen=True)
class PolicyUse:
    """A policy version the service ran with, and how many assessments name it."""

    version: str
    sha256: str
    first_used_at: datetime
    assessments: int


@dataclass(frozen=True)
class AssessmentSummary:
    assessment_id: UUID
    submission_id: UUID
    model_id: str
    sequence: int
    overall_level: str
    escalation_required: bool
    evaluation_incomplete: bool
    assessed_at: datetime


async def policy_uses(conn: Connection) -> list[PolicyUse]:
    rows = await conn.fetch(
        """SELECT v.version, v.sha256, v.first_used_at, count(a.assessment_id) AS assessments
           FROM policy_versions v LEFT JOIN assessments a ON a.policy_version = v.version
           GROUP BY v.version ORDER BY v.first_used_at, v.version"""
    )
    return [PolicyUse(**dict(r)) for r in rows]


async def policy_content(conn: Connection, version: str) -> tuple[str, str] | None:
    """(sha256, text) of a version as the service loaded it."""
    row = await conn.fetchrow(
        "SELECT sha256, content FROM policy_versions WHERE version = $1", version
    )
    return (row["sha256"], row["content"]) if row is not None else None


async def assessments_using(conn: Connection, version: str) -> list[AssessmentSummary]:
    rows = await conn.fetch(
        """SELECT a.assessment_id, a.submission_id, r.model_id, a.sequence, a.overall_level,
                  a.escalation_required, a.evaluation_incomplete, a.assessed_at
           FROM assessments a JOIN reviews r USING (submission_id)
           WHERE a.policy_version = $1 ORDER BY a.assessed_at, a.assessment_id""",
        version,
    )
    return [AssessmentSummary(**dict(r)) for r in rows]


async def escalations(conn: Connection, *, include_closed: bool = False) -> list[Escalation]:
    """Escalations awaiting the reviewers (all of them with ``include_closed``)."""
    condition = "true" if include_closed else "e.status = 'open'"
    found = await repository.escalations_where(conn, condition)
    return sorted(found, key=lambda e: (e.decide_by, str(e.escalation_id)))


async def escalation(conn: Connection, escalation_id: UUID) -> Escalation | None:
    return await repository.find_escalation(conn, escalation_id)


async def justifications(conn: Connection, escalation_id: UUID) -> dict[UUID, str]:
    rows = await conn.fetch(
        "SELECT decision_id, justification FROM decisions WHERE escalation_id = $1",
        escalation_id,
    )
    return {r["decision_id"]: r["justification"] for r in rows}


# --- the audit log ---------------------------------------------------------------------------


async def audit_entries(conn: Connection) -> list[AuditEntry]:
    rows = await conn.fetch(f"SELECT {repository.AUDIT_COLUMNS} FROM audit_log ORDER BY sequence")
    return [repository.entry_from_row(r) for r in rows]


async def audit_head(conn: Connection) -> tuple[int, str]:
    """What the head row says: (size, entry hash of the last entry)."""
    row = await conn.fetchrow("SELECT sequence, entry_sha256 FROM audit_head")
    assert row is not None
    return row["sequence"], row["entry_sha256"]


async def stored_checkpoints(conn: Connection) -> list[dict[str, Any]]:
    """The checkpoints the service published, as it stored them (AuditCheckpoint data)."""
    rows = await conn.fetch("SELECT body FROM audit_checkpoints ORDER BY size, checkpointed_at")
    return [json.loads(r["body"]) for r in rows]


# --- a submission's material for the STIX export -------------------------------------------


@dataclass(frozen=True)
class SubmissionRecord:
    submission_id: UUID
    lab_id: str
    model_id: str
    findings: list[FindingRecorded]
    assessment: RiskAssessed | None


async def submission_record(conn: Connection, submission_id: UUID) -> SubmissionRecord | None:
    row = await conn.fetchrow(
        "SELECT lab_id, model_id FROM reviews WHERE submission_id = $1", submission_id
    )
    if row is None:
        return None
    return SubmissionRecord(
        submission_id=submission_id,
        lab_id=row["lab_id"],
        model_id=row["model_id"],
        findings=await repository.findings_of(conn, submission_id),
        assessment=await repository.last_assessment(conn, submission_id),
    )


# For the metrics (app.py); each reads a small table or a partial index.
async def open_escalations(conn: Connection, now: datetime) -> dict[tuple[str, bool], int]:
    """Open escalations by (level, past its decision deadline)."""
    rows = await conn.fetch(
        """SELECT level, decide_by < $1 AS overdue, count(*) AS n FROM escalations
           WHERE status = 'open' GROUP BY level, overdue""",
        now,
    )
    return {(r["level"], bool(r["overdue"])): int(r["n"]) for r in rows}


async def assessments_by_level(conn: Connection) -> dict[str, int]:
    """Every assessment published, by overall level (a total the database keeps)."""
    rows = await conn.fetch(
        "SELECT overall_level, count(*) AS n FROM assessments GROUP BY overall_level"
    )
    return {r["overall_level"]: int(r["n"]) for r in rows}


async def reviewer_decisions(conn: Connection) -> dict[tuple[str, str], int]:
    """Reviewers' accepted decisions by (question, decision)."""
    rows = await conn.fetch(
        "SELECT question, decision, count(*) AS n FROM decisions GROUP BY question, decision"
    )
    return {(r["question"], r["decision"]): int(r["n"]) for r in rows}
