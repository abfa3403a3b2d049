"""Transactional outbox: outgoing records become rows in the handler's transaction.

Nothing reaches Kafka unless the state change that caused it committed, and
nothing that committed is lost: the relay (relay.py) publishes the rows, in
id order. A whole run of records writes its rows with one statement.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from services.runtime.context import Outgoing, TxContext

if TYPE_CHECKING:
    from services.runtime.clock import Clock
    from services.runtime.database import Connection
    from services.runtime.settings import RuntimeSettings

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
