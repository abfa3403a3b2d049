"""Inbox: remembers which records a consumer applied, inside the same transaction.

Each applied record leaves a claim (consumer, key, digest of the bytes). The
key is what makes two deliveries "the same record":

- on the agency's own topics, the CloudEvent id (its producers choose unique
  ids, and an event the relay published twice is still one event);
- on topics written from outside (labs, evaluators, reviewers), the record's
  position (partition, offset) and digest: the id there is chosen by an
  unauthenticated sender, so a record copying another's id must not be able to
  make the genuine one look like a duplicate. The authenticated sender's own
  idempotency (signed nonce, submission id) is the service's business, after
  verification.

A redelivery carries the same bytes and is skipped; a *different* record under
an id already applied is not a duplicate to drop silently but an error,
dead-lettered as ``event_id_reused``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.runtime.database import Connection


@dataclass(frozen=True)
class Claim:
    key: str  # the claim: the event id, or the position key
    position_key: str  # a record dead-lettered or answered is claimed by position
    topic: str
    partition: int
    offset: int
    digest: bytes


def digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def position_key(partition: int, offset: int, value_digest: bytes) -> str:
    """The claim key of a record by its position (digest included: a topic that was
    deleted and created again reuses offsets, and those are other records)."""
    return f"@{partition}/{offset}/{value_digest[:12].hex()}"


@dataclass(frozen=True)
class ClaimResult:
    fresh: frozenset[str]  # claimed now: apply these
    reused: frozenset[str]  # claimed before with other bytes: dead-letter these
    # everything else was applied (or answered, or dead-lettered) before: skip


async def claim(conn: Connection, consumer: str, claims: Sequence[Claim]) -> ClaimResult:
    """Claim ``claims`` (distinct keys) in one statement; must run in the applying transaction.

    A record already dead-lettered or answered by its position is not claimed
    again by its event id (a redelivery of a dead letter must not run again).
    """
    if not claims:
        return ClaimResult(frozenset(), frozenset())
    inserted = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id, topic, "partition", "offset", digest)
           SELECT $1, k, t, p, o, d
           FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[],
                       $7::bytea[]) AS u(k, pk, t, p, o, d)
           WHERE k = pk
              OR NOT EXISTS (SELECT 1 FROM inbox x WHERE x.consumer = $1 AND x.event_id = u.pk)
           ON CONFLICT DO NOTHING
           RETURNING event_id""",
        consumer,
        [c.key for c in claims],
        [c.position_key for c in claims],
        [c.topic for c in claims],
        [c.partition for c in claims],
        [c.offset for c in claims],
        [c.digest for c in claims],
    )
    fresh = frozenset(r["event_id"] for r in inserted)
    if len(fresh) == len(claims):
        return ClaimResult(fresh, frozenset())
    others = [c for c in claims if c.key not in fresh]
    earlier = {
        r["event_id"]: r["digest"]
        for r in await conn.fetch(
            """SELECT event_id, digest FROM inbox
               WHERE consumer = $1 AND event_id = ANY($2::text[])""",
            consumer,
            [c.key for c in others] + [c.position_key for c in others if c.position_key != c.key],
        )
    }

    def reused(c: Claim) -> bool:
        if c.position_key != c.key and c.position_key in earlier:
            return False  # dead-lettered (or answered) before: skip
        stored = earlier.get(c.key)
        # Rows from before the inbox kept digests have none: they count as the same record.
        return stored is not None and bytes(stored) != c.digest

    return ClaimResult(fresh, frozenset(c.key for c in others if reused(c)))
