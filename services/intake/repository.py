"""All of intake's SQL: submissions, their history, duplicates (the registry, nonces and
refusal counts are the trust library's, the review-window clock the runtime's timers).

Every function takes the connection it runs on; handlers pass the delivery's
connection so their writes share the inbox claim's transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from contracts.events.intake import SubmissionAccepted, SubmissionRejected
from services.intake.model import ClosedWindow, FiledSubmission, HistoryKind, SubmissionState

if TYPE_CHECKING:
    from services.runtime.database import Connection


async def prune(conn: Connection, *, history_before: datetime) -> None:
    """Forget history past its retention (settings, README); the refusal counts are the
    trust library's (``RefusalCountPurge``)."""
    await conn.execute("DELETE FROM submission_history WHERE at < $1", history_before)


# --- submissions ----------------------------------------------------------------------

_FILED = """SELECT submission_id, lab_id, state, body_sha256, filed_event_id, model_id,
                   deadline, reason, detail
            FROM submissions WHERE submission_id = $1"""


def _filed(row: asyncpg.Record | None) -> FiledSubmission | None:
    if row is None:
        return None
    return FiledSubmission(
        submission_id=row["submission_id"],
        lab_id=row["lab_id"],
        state=SubmissionState(row["state"]),
        body_sha256=row["body_sha256"],
        filed_event_id=row["filed_event_id"],
        model_id=row["model_id"],
        deadline=row["deadline"],
        reason=row["reason"],
        detail=row["detail"],
    )


async def find_submission(conn: Connection, submission_id: UUID) -> FiledSubmission | None:
    return _filed(await conn.fetchrow(_FILED, submission_id))


async def lock_submission(conn: Connection, submission_id: UUID) -> FiledSubmission | None:
    return _filed(await conn.fetchrow(_FILED + " FOR UPDATE", submission_id))


async def record_acceptance(
    conn: Connection, accepted: SubmissionAccepted, body: dict[str, Any]
) -> None:
    """The accepted submission and its history entry (its window is a runtime timer)."""
    assert accepted.body_sha256 is not None
    await conn.execute(
        """WITH submission AS (
               INSERT INTO submissions (submission_id, lab_id, body_sha256, filed_event_id, body,
                   state, reason, detail, criteria_version, model_id, review_days, received_at,
                   deadline, decision)
               VALUES ($1, $2, $3, $4, $5::jsonb, 'accepted', $6, $7, $8, $9, $10, $11, $12,
                       $13::jsonb)
           )
           INSERT INTO submission_history (submission_id, at, kind, event_id, reason, detail)
           VALUES ($1, $11, 'accepted', $4, $6, $7)""",
        accepted.submission_id,
        accepted.lab_id,
        accepted.body_sha256,
        accepted.filed_event_id,
        _json(body),
        accepted.reason.value,
        accepted.detail,
        accepted.criteria_version,
        accepted.model_id,
        accepted.review_days,
        accepted.accepted_at,
        accepted.deadline,
        accepted.model_dump_json(exclude_none=True),
    )


async def record_content_rejection(
    conn: Connection, rejected: SubmissionRejected, body: dict[str, Any]
) -> None:
    """An authenticated filing refused on its content still binds the id to its body."""
    assert rejected.submission_id is not None and rejected.lab_id is not None
    assert rejected.body_sha256 is not None and rejected.rejected_event_id is not None
    await conn.execute(
        """INSERT INTO submissions (submission_id, lab_id, body_sha256, filed_event_id, body,
               state, reason, detail, received_at, decision)
           VALUES ($1, $2, $3, $4, $5::jsonb, 'rejected', $6, $7, $8, $9::jsonb)""",
        rejected.submission_id,
        rejected.lab_id,
        rejected.body_sha256,
        rejected.rejected_event_id,
        _json(body),
        rejected.reason.value,
        rejected.detail,
        rejected.rejected_at,
        rejected.model_dump_json(exclude_none=True),
    )


async def count_duplicate(
    conn: Connection, submission_id: UUID, at: datetime
) -> tuple[int, SubmissionAccepted | SubmissionRejected]:
    """Count a duplicate filing in its clock hour; returns this hour's count and the
    original decision. The count lives on the submission's row: no row per duplicate."""
    row = await conn.fetchrow(
        """UPDATE submissions SET
               duplicates = duplicates + 1,
               duplicates_in_hour = CASE
                   WHEN duplicates_hour = date_trunc('hour', $2::timestamptz)
                   THEN duplicates_in_hour + 1 ELSE 1 END,
               duplicates_hour = date_trunc('hour', $2::timestamptz)
           WHERE submission_id = $1
           RETURNING state, duplicates_in_hour, decision::text""",
        submission_id,
        at,
    )
    assert row is not None, f"submission {submission_id} vanished"
    kind = SubmissionRejected if row["state"] == "rejected" else SubmissionAccepted
    return row["duplicates_in_hour"], kind.model_validate_json(row["decision"])


async def record_withdrawal(conn: Connection, submission_id: UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE submissions SET state = 'withdrawn', withdrawn_at = $2 WHERE submission_id = $1",
        submission_id,
        at,
    )


async def add_history(
    conn: Connection,
    *,
    submission_id: UUID | None,
    at: datetime,
    kind: HistoryKind,
    event_id: str | None,
    reason: str | None,
    detail: str,
) -> None:
    await conn.execute(
        """INSERT INTO submission_history (submission_id, at, kind, event_id, reason, detail)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        submission_id,
        at,
        kind.value,
        event_id,
        reason,
        detail,
    )


# --- the review window ------------------------------------------------------------------


async def close_window(conn: Connection, submission_id: UUID, now: datetime) -> ClosedWindow | None:
    """An accepted submission's window closes; None if it is not open (withdrawn)."""
    row = await conn.fetchrow(
        """WITH closed AS (
               UPDATE submissions SET state = 'closed', closed_at = $2
               WHERE submission_id = $1 AND state = 'accepted'
               RETURNING submission_id, lab_id, model_id, deadline
           ), history AS (
               INSERT INTO submission_history (submission_id, at, kind, detail)
               SELECT submission_id, $2, 'window_closed', 'the review window reached its deadline'
               FROM closed
           )
           SELECT * FROM closed""",
        submission_id,
        now,
    )
    if row is None:
        return None
    return ClosedWindow(row["submission_id"], row["lab_id"], row["model_id"], row["deadline"])


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))
