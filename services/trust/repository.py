"""All of the trust library's SQL (tables: sql/0001_trust_registry.sql).

Every function takes the caller's connection, whose search_path names the
service's schema: a handler passes its transaction's connection, so a spent
nonce commits or rolls back with the handler's other writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from services.trust.principals import KeyLookup, Principal, PrincipalKey

if TYPE_CHECKING:
    from services.runtime.database import Connection

_KEY_COLUMNS = """k.kind, k.principal_id, k.key_id, k.public_key, k.valid_from, k.valid_until,
                  k.revoked_at, k.revoked_reason"""


def _key(row: asyncpg.Record) -> PrincipalKey:
    return PrincipalKey(
        kind=row["kind"],
        principal_id=row["principal_id"],
        key_id=row["key_id"],
        public_key=bytes(row["public_key"]),
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        revoked_at=row["revoked_at"],
        revoked_reason=row["revoked_reason"],
    )


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(
        kind=row["kind"],
        principal_id=row["principal_id"],
        name=row["name"],
        registered_at=row["registered_at"],
        removed_at=row["removed_at"],
        keys=row["keys"],
    )


# --- the verifier's lookup -------------------------------------------------------------


async def find_key(conn: Connection, kind: str, principal_id: str, key_id: str) -> KeyLookup:
    """The claimed principal's state and the key with the claimed id, in one round trip."""
    row = await conn.fetchrow(
        f"""SELECT p.principal_id IS NOT NULL AS registered, p.removed_at AS principal_removed_at,
                   {_KEY_COLUMNS}
            FROM (SELECT $1::text AS kind) claim
            LEFT JOIN trust_principals p ON p.kind = claim.kind AND p.principal_id = $2
            LEFT JOIN trust_keys k ON k.kind = claim.kind AND k.key_id = $3""",
        kind,
        principal_id,
        key_id,
    )
    assert row is not None  # the claim row always exists
    return KeyLookup(
        registered=row["registered"],
        removed_at=row["principal_removed_at"],
        key=_key(row) if row["key_id"] is not None else None,
    )


# --- principals -------------------------------------------------------------------------

_PRINCIPALS = """SELECT p.kind, p.principal_id, p.name, p.registered_at, p.removed_at,
                        (SELECT count(*) FROM trust_keys k
                         WHERE k.kind = p.kind AND k.principal_id = p.principal_id) AS keys
                 FROM trust_principals p"""


async def insert_principal(
    conn: Connection, kind: str, principal_id: str, name: str, at: datetime
) -> bool:
    """False when the id is taken (registered now or removed before)."""
    inserted = await conn.fetchval(
        """INSERT INTO trust_principals (kind, principal_id, name, registered_at)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        kind,
        principal_id,
        name,
        at,
    )
    return bool(inserted)


async def is_registered(conn: Connection, kind: str, principal_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT true FROM trust_principals
               WHERE kind = $1 AND principal_id = $2 AND removed_at IS NULL""",
            kind,
            principal_id,
        )
    )


async def lock_principal(conn: Connection, kind: str, principal_id: str) -> Principal | None:
    """The principal, locked until the transaction ends: key changes serialise on it."""
    row = await conn.fetchrow(
        _PRINCIPALS + " WHERE p.kind = $1 AND p.principal_id = $2 FOR UPDATE OF p",
        kind,
        principal_id,
    )
    return _principal(row) if row is not None else None


async def list_principals(
    conn: Connection, kind: str, *, include_removed: bool = False
) -> list[Principal]:
    rows = await conn.fetch(
        _PRINCIPALS + " WHERE p.kind = $1 AND ($2 OR p.removed_at IS NULL) ORDER BY p.principal_id",
        kind,
        include_removed,
    )
    return [_principal(r) for r in rows]


async def mark_removed(
    conn: Connection, kind: str, principal_id: str, at: datetime, reason: str | None
) -> list[str]:
    """Remove the principal and revoke its unrevoked keys; returns the keys revoked."""
    rows = await conn.fetch(
        """WITH removed AS (
               UPDATE trust_principals SET removed_at = $3, removed_reason = $4
               WHERE kind = $1 AND principal_id = $2 AND removed_at IS NULL
           )
           UPDATE trust_keys SET revoked_at = $3,
                                 revoked_reason = coalesce('principal removed: ' || $4,
                                                           'principal removed')
           WHERE kind = $1 AND principal_id = $2 AND revoked_at IS NULL
           RETURNING key_id""",
        kind,
        principal_id,
        at,
        reason,
    )
    return sorted(r["key_id"] for r in rows)


# --- keys -------------------------------------------------------------------------------


async def insert_key(conn: Connection, key: PrincipalKey, added_at: datetime) -> bool:
    """False when the key id (of this kind) or the public key exists already."""
    inserted = await conn.fetchval(
        """INSERT INTO trust_keys (kind, key_id, principal_id, public_key, valid_from,
                                   valid_until, added_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true""",
        key.kind,
        key.key_id,
        key.principal_id,
        key.public_key,
        key.valid_from,
        key.valid_until,
        added_at,
    )
    return bool(inserted)


async def key_by_id(conn: Connection, kind: str, key_id: str) -> PrincipalKey | None:
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM trust_keys k WHERE k.kind = $1 AND k.key_id = $2",
        kind,
        key_id,
    )
    return _key(row) if row is not None else None


async def end_other_keys(
    conn: Connection, kind: str, principal_id: str, keep: str, until: datetime
) -> list[str]:
    """Rotation: the principal's other live keys end at ``until`` (never later than before)."""
    rows = await conn.fetch(
        """UPDATE trust_keys SET valid_until = $4
           WHERE kind = $1 AND principal_id = $2 AND key_id <> $3 AND revoked_at IS NULL
             AND (valid_until IS NULL OR valid_until > $4) AND valid_from < $4
           RETURNING key_id""",
        kind,
        principal_id,
        keep,
        until,
    )
    return sorted(r["key_id"] for r in rows)


async def revoke_key(
    conn: Connection, kind: str, principal_id: str, key_id: str, at: datetime, reason: str | None
) -> bool:
    """False when the principal has no such unrevoked key."""
    revoked = await conn.fetchval(
        """UPDATE trust_keys SET revoked_at = $4, revoked_reason = $5
           WHERE kind = $1 AND principal_id = $2 AND key_id = $3 AND revoked_at IS NULL
           RETURNING true""",
        kind,
        principal_id,
        key_id,
        at,
        reason,
    )
    return bool(revoked)


async def list_keys(
    conn: Connection, kind: str, principal_id: str | None = None
) -> list[PrincipalKey]:
    rows = await conn.fetch(
        f"""SELECT {_KEY_COLUMNS} FROM trust_keys k
            WHERE k.kind = $1 AND ($2::text IS NULL OR k.principal_id = $2)
            ORDER BY k.principal_id, k.valid_from, k.key_id""",
        kind,
        principal_id,
    )
    return [_key(r) for r in rows]


# --- nonces -----------------------------------------------------------------------------


async def spend_nonce(
    conn: Connection,
    *,
    kind: str,
    principal_id: str,
    key_id: str,
    nonce: str,
    issued_at: datetime,
    event_id: str,
    at: datetime,
) -> bool:
    """False when this principal's key spent this nonce before: a replay."""
    inserted = await conn.fetchval(
        """INSERT INTO trust_nonces (kind, principal_id, key_id, nonce, issued_at, event_id,
                                     spent_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true""",
        kind,
        principal_id,
        key_id,
        nonce,
        issued_at,
        event_id,
        at,
    )
    return bool(inserted)


async def purge_nonces(conn: Connection, issued_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` nonces issued before ``issued_before``; returns how many."""
    status = await conn.execute(
        """DELETE FROM trust_nonces WHERE ctid = ANY (ARRAY(
               SELECT ctid FROM trust_nonces WHERE issued_at < $1 LIMIT $2))""",
        issued_before,
        limit,
    )
    return int(status.split()[-1])  # "DELETE <n>"


# --- refusals of input that may not speak for itself ------------------------------------


async def count_refusal(
    conn: Connection, *, source: str, reason: str, at: datetime, event_id: str | None
) -> int:
    """Count a refusal in its claimed sender's hour; returns that sender's count this hour
    over every reason."""
    count: int = await conn.fetchval(
        """WITH counted AS (
               INSERT INTO trust_refusal_counts (source, hour, reason, refused,
                                                 first_event_id, last_event_id)
               VALUES ($1, date_trunc('hour', $2::timestamptz), $3, 1, $4, $4)
               ON CONFLICT (source, hour, reason) DO UPDATE
                   SET refused = trust_refusal_counts.refused + 1, last_event_id = $4
               RETURNING refused
           )
           SELECT (SELECT refused FROM counted) + coalesce(
               (SELECT sum(refused) FROM trust_refusal_counts
                WHERE source = $1 AND hour = date_trunc('hour', $2::timestamptz)
                  AND reason <> $3), 0)""",
        source,
        at,
        reason,
        event_id,
    )
    return count


async def purge_refusal_counts(conn: Connection, before: datetime) -> int:
    """Delete the counts of hours before ``before``; returns how many rows."""
    status: str = await conn.execute(
        "DELETE FROM trust_refusal_counts WHERE hour < date_trunc('hour', $1::timestamptz)",
        before,
    )
    return int(status.split()[-1])


# --- registry versions (replica.py) -------------------------------------------------------


async def next_registry_version(conn: Connection, kind: str, principal_id: str) -> int:
    """The principal's entry's next version (1 for the first), stored at once: the owner's
    side, in the transaction of the change."""
    version: int = await conn.fetchval(
        """INSERT INTO trust_registry_versions AS v (kind, principal_id, version)
           VALUES ($1, $2, 1)
           ON CONFLICT (kind, principal_id) DO UPDATE SET version = v.version + 1
           RETURNING version""",
        kind,
        principal_id,
    )
    return version


async def registry_version(conn: Connection, kind: str, principal_id: str) -> int | None:
    """The version of the principal's entry applied here last (None: never)."""
    version: int | None = await conn.fetchval(
        "SELECT version FROM trust_registry_versions WHERE kind = $1 AND principal_id = $2",
        kind,
        principal_id,
    )
    return version


async def set_registry_version(
    conn: Connection, kind: str, principal_id: str, version: int
) -> None:
    """Record the version applied (the receiver's side; only ever raised)."""
    await conn.execute(
        """INSERT INTO trust_registry_versions AS v (kind, principal_id, version)
           VALUES ($1, $2, $3)
           ON CONFLICT (kind, principal_id) DO UPDATE SET version = greatest(v.version, $3)""",
        kind,
        principal_id,
        version,
    )


async def end_key(
    conn: Connection, kind: str, principal_id: str, key_id: str, until: datetime
) -> bool:
    """End an unrevoked key's validity at ``until`` if that is earlier (never extended)."""
    ended = await conn.fetchval(
        """UPDATE trust_keys SET valid_until = $4
           WHERE kind = $1 AND principal_id = $2 AND key_id = $3 AND revoked_at IS NULL
             AND (valid_until IS NULL OR valid_until > $4) AND valid_from < $4
           RETURNING true""",
        kind,
        principal_id,
        key_id,
        until,
    )
    return bool(ended)
