"""Durable timers: the rows behind every deadline (review windows, decision
deadlines, order expiry, compliance overdue).

A timer is a row (kind, key) with a due time, a JSON payload and the trace
context of the code that scheduled it, in the scheduling transaction, so a
timer exists exactly when the state that needs it committed. The scheduler
(scheduler.py) claims due rows ``FOR UPDATE SKIP LOCKED`` on any replica, runs
the kind's handler in the same transaction, marks the row fired and writes the
handler's outbox rows, then commits: a replica killed mid-fire rolls back and
the row is claimed again; a fired or cancelled row never matches again. That
state is the guarantee of "exactly once"; the deterministic event ids of what a
timer publishes are defence in depth.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.runtime.database import Connection

TIMER_NAMESPACE = uuid.UUID("7c1f3e2a-95b4-4d0e-8a61-2b9f0c4d7e15")
CHANNEL_SUFFIX = "_timers"


def event_id(namespace: str, kind: str, key: str, name: str) -> str:
    return str(uuid.uuid5(TIMER_NAMESPACE, f"{namespace}/{kind}/{key}/{name}"))


@dataclass(frozen=True)
class DueTimer:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    traceparent: str | None
    tracestate: str | None


async def schedule(
    conn: Connection,
    kind: str,
    key: str,
    due_at: datetime,
    payload_json: str,
    traceparent: str | None,
    tracestate: str | None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO timers (kind, key, due_at, payload, traceparent, tracestate)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT DO NOTHING RETURNING true""",
        kind,
        key,
        due_at,
        payload_json,
        traceparent,
        tracestate,
    )
    return bool(inserted)


async def reschedule(conn: Connection, kind: str, key: str, due_at: datetime) -> bool:
    moved = await conn.fetchval(
        """UPDATE timers SET due_at = $3
           WHERE kind = $1 AND key = $2 AND state = 'pending' RETURNING true""",
        kind,
        key,
        due_at,
    )
    return bool(moved)


async def lock(conn: Connection, kind: str, key: str) -> str | None:
    """Lock the timer row (waiting for a replica firing it); its state, if it exists."""
    state: str | None = await conn.fetchval(
        "SELECT state FROM timers WHERE kind = $1 AND key = $2 FOR UPDATE", kind, key
    )
    return state


async def cancel(conn: Connection, kind: str, key: str) -> bool:
    cancelled = await conn.fetchval(
        """UPDATE timers SET state = 'cancelled', ended_at = now()
           WHERE kind = $1 AND key = $2 AND state = 'pending' RETURNING true""",
        kind,
        key,
    )
    return bool(cancelled)


async def claim_due(
    conn: Connection, kinds: list[str], now: datetime, limit: int
) -> list[DueTimer]:
    """Pending timers of ``kinds`` due at ``now``, locked; rows another replica holds
    are skipped."""
    rows = await conn.fetch(
        """SELECT kind, key, due_at, payload, traceparent, tracestate FROM timers
           WHERE state = 'pending' AND kind = ANY($1::text[]) AND due_at <= $2
           ORDER BY due_at LIMIT $3
           FOR UPDATE SKIP LOCKED""",
        kinds,
        now,
        limit,
    )
    return [
        DueTimer(
            r["kind"],
            r["key"],
            r["due_at"],
            json.loads(r["payload"]),
            r["traceparent"],
            r["tracestate"],
        )
        for r in rows
    ]


async def mark_fired(conn: Connection, kind: str, key: str, by: str) -> None:
    await conn.execute(
        """UPDATE timers SET state = 'fired', ended_at = now(), fired_by = $3
           WHERE kind = $1 AND key = $2 AND state = 'pending'""",
        kind,
        key,
        by,
    )


async def failed(
    conn: Connection, kind: str, key: str, error: str, retry_at: datetime | None
) -> None:
    """A handler failed: try again at ``retry_at``, or give up (state ``failed``)."""
    await conn.execute(
        """UPDATE timers SET attempts = attempts + 1, last_error = $3,
                  due_at = coalesce($4, due_at),
                  state = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE state END,
                  ended_at = CASE WHEN $4::timestamptz IS NULL THEN now() END
           WHERE kind = $1 AND key = $2 AND state = 'pending'""",
        kind,
        key,
        error[:2000],
        retry_at,
    )


async def attempts(conn: Connection, kind: str, key: str) -> int:
    made: int = await conn.fetchval(
        "SELECT attempts FROM timers WHERE kind = $1 AND key = $2", kind, key
    )
    return made


async def next_due(conn: Connection, kinds: list[str]) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        "SELECT min(due_at) FROM timers WHERE state = 'pending' AND kind = ANY($1::text[])",
        kinds,
    )
    return due


async def prune(conn: Connection, keep_days: int) -> None:
    """Fired and cancelled timers are kept a while for inspection, then forgotten."""
    await conn.execute(
        """DELETE FROM timers WHERE state <> 'pending'
           AND ended_at < now() - make_interval(days => $1)""",
        keep_days,
    )


@dataclass(frozen=True)
class TimerCounts:
    """Timers of one kind: pending (due or not), pending already due, failed."""

    pending: int = 0
    due: int = 0
    failed: int = 0


async def timer_counts(conn: Connection, kinds: list[str], now: datetime) -> dict[str, TimerCounts]:
    """Per kind: pending timers (e.g. review windows still open), those already due at
    ``now`` and those that gave up. Due and failed should be 0: due ones the scheduler
    has not fired yet mean it is behind or down; failed ones are a handler bug an
    operator must look at (``last_error``)."""
    rows = await conn.fetch(
        """SELECT kind, count(*) FILTER (WHERE state = 'pending') AS pending,
                  count(*) FILTER (WHERE state = 'pending' AND due_at <= $2) AS due,
                  count(*) FILTER (WHERE state = 'failed') AS failed
           FROM timers WHERE state IN ('pending', 'failed') AND kind = ANY($1::text[])
           GROUP BY kind""",
        kinds,
        now,
    )
    found = {kind: TimerCounts() for kind in kinds}
    for r in rows:
        found[r["kind"]] = TimerCounts(int(r["pending"]), int(r["due"]), int(r["failed"]))
    return found
