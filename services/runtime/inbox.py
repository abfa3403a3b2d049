"""Inbox: remembers which events a consumer applied, inside the same transaction."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from services.runtime.errors import PermanentError

if TYPE_CHECKING:
    from services.runtime.database import Connection


class EventIdReused(PermanentError):
    """Another record came with the id of an event already applied."""


async def claim(
    conn: Connection,
    *,
    consumer: str,
    event_id: str,
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
) -> bool:
    """Record ``event_id`` for ``consumer``; False when it was applied before.

    Must run in the transaction that applies the event: if that transaction
    rolls back, the claim goes with it and a redelivery applies the event.
    A redelivery carries the same bytes; a *different* record under an id
    already applied is not a duplicate to drop silently but an error
    (``EventIdReused``: dead-lettered with its reason).
    """
    digest = hashlib.sha256(value).digest()
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id, topic, "partition", "offset", digest)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING
           RETURNING true""",
        consumer,
        event_id,
        topic,
        partition,
        offset,
        digest,
    )
    if inserted:
        return True
    applied = await conn.fetchval(
        "SELECT digest FROM inbox WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )
    if applied is not None and applied != digest:
        raise EventIdReused(
            "event_id_reused",
            f"event id {event_id!r} was already applied with different content",
        )
    return False
