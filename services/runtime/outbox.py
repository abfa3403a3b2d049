"""Transactional outbox: outgoing records become rows in the handler's transaction.

Nothing reaches Kafka unless the state change that caused it committed, and
nothing that committed is lost: the relay (relay.py) publishes the rows, in
id order. A whole run of records writes its rows with one statement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from services.runtime.context import Outgoing, TxContext
from services.runtime.database import connect
from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from services.runtime.clock import Clock
    from services.runtime.database import Connection

# WITH ORDINALITY + ORDER BY: the ids (and so the publishing order) follow the
# order in which the handlers queued the rows.
_INSERT = """
INSERT INTO outbox (topic, key, event_id, event_type, payload, headers, traceparent, tracestate)
SELECT t, k, i, y, p, h::jsonb, tp, ts
FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bytea[], $6::text[],
            $7::text[], $8::text[]) WITH ORDINALITY AS u(t, k, i, y, p, h, tp, ts, n)
ORDER BY n
"""


async def write(conn: Connection, rows: Sequence[Outgoing]) -> None:
    """Queue ``rows``; ``conn`` must be inside the transaction of the change that caused them."""
    if not rows:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox writes must share the state change's transaction")
    await conn.execute(
        _INSERT,
        [r.topic for r in rows],
        [r.key for r in rows],
        [r.event_id for r in rows],
        [r.event_type for r in rows],
        [r.payload for r in rows],
        [json.dumps(r.headers, separators=(",", ":")) for r in rows],
        [r.traceparent for r in rows],
        [r.tracestate for r in rows],
    )


@contextlib.asynccontextmanager
async def publishing(
    conn: Connection, settings: RuntimeSettings, clock: Clock
) -> AsyncIterator[TxContext]:
    """A transaction on ``conn`` whose published events are written when it commits."""
    async with conn.transaction():
        ctx = TxContext(conn, settings, clock)
        yield ctx
        await write(conn, ctx.outgoing)


# Parked rows (relay.py: a tenant feed that did not exist) go back to the end of the
# outbox in their original order, under new ids; the relay delivers them next.
_REQUEUE = """
WITH moved AS (
    DELETE FROM outbox_parked WHERE ($1::text IS NULL OR topic = $1)
    RETURNING id, topic, key, event_id, event_type, payload, headers, traceparent, tracestate
), queued AS (
    INSERT INTO outbox (topic, key, event_id, event_type, payload, headers, traceparent,
                        tracestate)
    SELECT topic, key, event_id, event_type, payload, headers, traceparent, tracestate
    FROM moved ORDER BY id
    RETURNING 1
)
SELECT count(*) FROM queued
"""


async def parked(conn: Connection) -> list[tuple[str, int, str]]:
    """(topic, rows, reason) of what the relay parked."""
    rows = await conn.fetch(
        "SELECT topic, count(*) AS n, max(reason) AS reason FROM outbox_parked "
        "GROUP BY topic ORDER BY topic"
    )
    return [(r["topic"], r["n"], r["reason"]) for r in rows]


async def backlog(conn: Connection) -> tuple[int, float]:
    """(unpublished rows, age in seconds of the oldest): what the relay has yet to send.

    Claimed-but-unmarked rows count too (a batch in flight). The partial index on
    unpublished rows keeps this a short index scan while the relay keeps up; the age
    is the database's clock against the row's ``created_at``, both the server's.
    """
    row = await conn.fetchrow(
        """SELECT count(*) AS n,
                  coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS age
           FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return int(row["n"]), float(row["age"])


async def requeue(conn: Connection, topic: str | None = None) -> int:
    """Move parked rows (of ``topic``, or all) back into the outbox; how many."""
    async with conn.transaction():
        return int(await conn.fetchval(_REQUEUE, topic))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.runtime.outbox parked|requeue --schema S [--topic T]``."""
    parser = argparse.ArgumentParser(prog="python -m services.runtime.outbox")
    parser.add_argument("command", choices=["parked", "requeue"])
    parser.add_argument("--schema", required=True, help="the service's schema (e.g. intake)")
    parser.add_argument("--topic", help="requeue only this topic's rows")
    args = parser.parse_args(argv)
    settings = RuntimeSettings(db_schema=args.schema)

    async def run() -> int:
        async with connect(settings) as conn:
            if args.command == "parked":
                for topic, count, reason in await parked(conn):
                    print(f"{topic}\t{count}\t{reason}")
                return 0
            moved = await requeue(conn, args.topic)
            print(f"requeued {moved} rows", file=sys.stderr)
            return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
