"""Read queries for the CLI, the status endpoint and the metrics (the write SQL is in
repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from services.intake.model import HistoryEntry, SubmissionStatus

if TYPE_CHECKING:
    from services.runtime.database import Connection


async def fetch_status(conn: Connection, submission_id: UUID) -> SubmissionStatus | None:
    """None until a filing binds the id: refusals of other inputs are not on its record."""
    row = await conn.fetchrow(
        """SELECT submission_id, state, lab_id, model_id, reason, detail, criteria_version,
                  review_days, received_at, deadline, withdrawn_at, closed_at, filed_event_id,
                  body_sha256
           FROM submissions WHERE submission_id = $1""",
        submission_id,
    )
    if row is None:
        return None
    history = [
        HistoryEntry(r["at"], r["kind"], r["event_id"], r["reason"], r["detail"])
        for r in await conn.fetch(
            """SELECT at, kind, event_id, reason, detail FROM submission_history
               WHERE submission_id = $1 ORDER BY id""",
            submission_id,
        )
    ]
    return SubmissionStatus(**dict(row), history=history)


@dataclass(frozen=True)
class RefusalCount:
    source: str  # the lab id the refused input claimed, or "-"
    hour: datetime
    reason: str
    refused: int
    last_event_id: str | None


async def refusal_counts(conn: Connection, since: datetime) -> list[RefusalCount]:
    """Refusals of input that could not speak for a submission, per claimed sender and hour."""
    rows = await conn.fetch(
        """SELECT source, hour, reason, refused, last_event_id FROM trust_refusal_counts
           WHERE hour >= date_trunc('hour', $1::timestamptz)
           ORDER BY hour DESC, refused DESC""",
        since,
    )
    return [
        RefusalCount(r["source"], r["hour"], r["reason"], r["refused"], r["last_event_id"])
        for r in rows
    ]


# For the metrics (app.py).
async def submissions_by_state(conn: Connection) -> dict[tuple[str, str], int]:
    """Submissions by (state, reason code of intake's decision): both from closed sets."""
    rows = await conn.fetch(
        "SELECT state, reason, count(*) AS n FROM submissions GROUP BY state, reason"
    )
    return {(r["state"], r["reason"]): int(r["n"]) for r in rows}


async def recent_refusals(conn: Connection, now: datetime) -> dict[str, int]:
    """Refusals of input that could not speak for a submission, by reason, in the
    current and the previous clock hour (the hourly buckets trust_refusal_counts keeps). Not
    by claimed sender: that is the sender's choice, and labels must not be."""
    rows = await conn.fetch(
        """SELECT reason, sum(refused)::bigint AS n FROM trust_refusal_counts
           WHERE hour >= date_trunc('hour', $1::timestamptz) - interval '1 hour'
           GROUP BY reason""",
        now,
    )
    return {r["reason"]: int(r["n"]) for r in rows}
