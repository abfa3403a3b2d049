"""Inbox: remembers which events a consumer applied, inside the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.runtime.database import Connection


async def claim(
    conn: Connection,
    *,
    consumer: str,
    event_id: str,
    topic: str,
    partition: int,
    offset: int,
) -> bool:
    """Record ``event_id`` for ``consumer``; False when it was applied before.

    Must run in the transaction that applies the event: if that transaction
    rolls back, the claim goes with it and a redelivery applies the event.
    """
    inserted = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id, topic, "partition", "offset")
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING
           RETURNING true""",
        consumer,
        event_id,
        topic,
        partition,
        offset,
    )
    return bool(inserted)
