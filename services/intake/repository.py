"""All of intake's SQL: lab registry, nonces, submissions, review windows, history.

Every function takes the connection it runs on; handlers pass the delivery's
connection so their writes share the inbox claim's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from contracts.events.intake import SubmissionAccepted
from services.intake.decisions import FiledSubmission, HistoryKind, SubmissionState
from services.intake.status import HistoryEntry, SubmissionStatus
from services.intake.trust import LabKey, Refusal

if TYPE_CHECKING:
    from services.runtime.database import Connection


# --- lab registry ----------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    lab_id: str
    name: str
    registered_at: datetime
    keys: int


async def register_lab(conn: Connection, lab_id: str, name: str) -> bool:
    """False when the lab exists already."""
    inserted = await conn.fetchval(
        """INSERT INTO labs (lab_id, name) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        lab_id,
        name,
    )
    return bool(inserted)


async def lab_exists(conn: Connection, lab_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM labs WHERE lab_id = $1", lab_id))


async def list_labs(conn: Connection) -> list[Lab]:
    rows = await conn.fetch(
        """SELECT l.lab_id, l.name, l.registered_at, count(k.key_id) AS keys
           FROM labs l LEFT JOIN lab_keys k USING (lab_id)
           GROUP BY l.lab_id ORDER BY l.lab_id"""
    )
    return [Lab(r["lab_id"], r["name"], r["registered_at"], r["keys"]) for r in rows]


def _key(row: asyncpg.Record) -> LabKey:
    return LabKey(
        lab_id=row["lab_id"],
        key_id=row["key_id"],
        public_key=bytes(row["public_key"]),
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        revoked_at=row["revoked_at"],
    )


async def add_key(conn: Connection, key: LabKey) -> None:
    """Raises asyncpg.UniqueViolationError for a key id the lab has already."""
    await conn.execute(
        """INSERT INTO lab_keys (lab_id, key_id, public_key, valid_from, valid_until)
           VALUES ($1, $2, $3, $4, $5)""",
        key.lab_id,
        key.key_id,
        key.public_key,
        key.valid_from,
        key.valid_until,
    )


async def end_other_keys(conn: Connection, lab_id: str, keep: str, until: datetime) -> list[str]:
    """Rotation: every other live key of the lab stays valid until ``until``, then expires."""
    rows = await conn.fetch(
        """UPDATE lab_keys SET valid_until = $3
           WHERE lab_id = $1 AND key_id <> $2 AND revoked_at IS NULL
             AND (valid_until IS NULL OR valid_until > $3) AND valid_from < $3
           RETURNING key_id""",
        lab_id,
        keep,
        until,
    )
    return sorted(r["key_id"] for r in rows)


async def revoke_key(
    conn: Connection, lab_id: str, key_id: str, at: datetime, reason: str | None
) -> bool:
    """False when there is no such key or it is revoked already."""
    revoked = await conn.fetchval(
        """UPDATE lab_keys SET revoked_at = $3, revoked_reason = $4
           WHERE lab_id = $1 AND key_id = $2 AND revoked_at IS NULL
           RETURNING true""",
        lab_id,
        key_id,
        at,
        reason,
    )
    return bool(revoked)


async def list_keys(conn: Connection, lab_id: str | None = None) -> list[LabKey]:
    rows = await conn.fetch(
        """SELECT lab_id, key_id, public_key, valid_from, valid_until, revoked_at
           FROM lab_keys WHERE $1::text IS NULL OR lab_id = $1
           ORDER BY lab_id, valid_from, key_id""",
        lab_id,
    )
    return [_key(r) for r in rows]


async def find_lab_key(conn: Connection, lab_id: str, key_id: str) -> tuple[bool, LabKey | None]:
    """(is the lab registered, its key ``key_id`` if any) in one round trip."""
    row = await conn.fetchrow(
        """SELECT l.lab_id, k.key_id, k.public_key, k.valid_from, k.valid_until, k.revoked_at
           FROM labs l LEFT JOIN lab_keys k ON k.lab_id = l.lab_id AND k.key_id = $2
           WHERE l.lab_id = $1""",
        lab_id,
        key_id,
    )
    if row is None:
        return False, None
    return True, (_key(row) if row["key_id"] is not None else None)


# --- nonces ---------------------------------------------------------------------------


async def remember_nonce(
    conn: Connection, lab_id: str, key_id: str, nonce: str, issued_at: datetime, event_id: str
) -> bool:
    """False when this key used this nonce before: a replay."""
    inserted = await conn.fetchval(
        """INSERT INTO seen_nonces (lab_id, key_id, nonce, issued_at, event_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
        lab_id,
        key_id,
        nonce,
        issued_at,
        event_id,
    )
    return bool(inserted)


async def purge_nonces(conn: Connection, issued_before: datetime) -> int:
    result = await conn.execute("DELETE FROM seen_nonces WHERE issued_at < $1", issued_before)
    return int(result.split()[-1])


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
                   deadline)
               VALUES ($1, $2, $3, $4, $5::jsonb, 'accepted', $6, $7, $8, $9, $10, $11, $12)
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
    )


async def record_content_rejection(
    conn: Connection,
    *,
    submission_id: UUID,
    lab_id: str,
    body_sha256: str,
    event_id: str,
    body: dict[str, Any],
    refusal: Refusal,
    now: datetime,
) -> None:
    """An authenticated filing refused on its content still binds the id to its body."""
    await conn.execute(
        """INSERT INTO submissions (submission_id, lab_id, body_sha256, filed_event_id, body,
               state, reason, detail, received_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, 'rejected', $6, $7, $8)""",
        submission_id,
        lab_id,
        body_sha256,
        event_id,
        _json(body),
        refusal.reason.value,
        refusal.detail,
        now,
    )


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


@dataclass(frozen=True)
class ClosedWindow:
    submission_id: UUID
    lab_id: str
    model_id: str
    deadline: datetime


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


# --- status ---------------------------------------------------------------------------


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


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))
