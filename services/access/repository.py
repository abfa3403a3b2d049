"""All of access's write-side SQL (reads for CLIs and the API: queries.py).

Every function takes the caller's connection: a handler's ``ctx.conn`` (the
run's transaction, holding the inbox claim), a timer's, or a CLI's. The tables
are in migrations/; the trust library's (lab keys, nonces) come first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from contracts.events.access import ComplianceOverdue, EnforcedOrder
from contracts.events.risk import RestrictionOrdered
from services.access.compliance import AcceptedAcknowledgement
from services.access.model import ModelPolicy, OrderRecord, OrderState

if TYPE_CHECKING:
    import asyncpg

    from services.runtime.database import Connection


async def lock_model(conn: Connection, model_id: str, lab_id: str, now: datetime) -> None:
    """Serialise every change of one model's policy (see migrations/0002)."""
    await conn.execute(
        """INSERT INTO models (model_id, lab_id, first_seen_at) VALUES ($1, $2, $3)
           ON CONFLICT (model_id) DO NOTHING""",
        model_id,
        lab_id,
        now,
    )
    await conn.execute("SELECT 1 FROM models WHERE model_id = $1 FOR UPDATE", model_id)


async def lock_existing_model(conn: Connection, model_id: str) -> bool:
    """Lock the model's row if access ever restricted it (acknowledgements never add one)."""
    found = await conn.fetchval("SELECT true FROM models WHERE model_id = $1 FOR UPDATE", model_id)
    return bool(found)


def _record(row: asyncpg.Record) -> OrderRecord:
    ended = row["ended"]
    return OrderRecord(
        order=RestrictionOrdered.model_validate_json(row["body"]),
        ended=OrderState(ended) if ended is not None else None,
        ended_at=row["ended_at"],
        superseded_by=row["superseded_by"],
        lifted_by=row["lifted_by"],
        end_reason=row["end_reason"],
    )


async def model_orders(conn: Connection, model_id: str) -> dict[UUID, OrderRecord]:
    """Every order received for the model (ended ones too), by id."""
    rows = await conn.fetch("SELECT * FROM orders WHERE model_id = $1", model_id)
    return {row["order_id"]: _record(row) for row in rows}


async def find_order(conn: Connection, order_id: UUID) -> OrderRecord | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    return _record(row) if row is not None else None


async def save_orders(conn: Connection, records: Iterable[OrderRecord], now: datetime) -> None:
    """Insert new orders; store the end of known ones (ends are final: never undone)."""
    for record in records:
        order = record.order
        await conn.execute(
            """INSERT INTO orders (order_id, model_id, lab_id, submission_id, body,
                                   effective_at, expires_at, supersedes, received_at,
                                   ended, ended_at, superseded_by, lifted_by, end_reason)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14)
               ON CONFLICT (order_id) DO UPDATE SET
                   ended = excluded.ended, ended_at = excluded.ended_at,
                   superseded_by = excluded.superseded_by, lifted_by = excluded.lifted_by,
                   end_reason = excluded.end_reason
               WHERE orders.ended IS NULL""",
            order.order_id,
            order.model_id,
            order.model_id.split("/", 1)[0],
            order.submission_id,
            order.model_dump_json(),
            order.effective_at,
            order.expires_at,
            order.supersedes,
            now,
            record.ended.value if record.ended is not None else None,
            record.ended_at,
            record.superseded_by,
            record.lifted_by,
            record.end_reason,
        )


def policy_from_row(row: asyncpg.Record) -> ModelPolicy:
    return ModelPolicy(
        model_id=row["model_id"],
        lab_id=row["lab_id"],
        version=row["version"],
        cedar_policies=row["cedar_policies"],
        content_hash=row["content_hash"],
        orders=tuple(EnforcedOrder.model_validate(o) for o in json.loads(row["orders"])),
        published_at=row["published_at"],
        acknowledge_by=row["acknowledge_by"],
        schema_version=row["schema_version"],
        country_groups_version=row["country_groups_version"],
        order_ids=tuple(row["order_ids"]),
        problems=tuple(row["problems"]),
    )


async def current_policy(conn: Connection, model_id: str) -> ModelPolicy | None:
    row = await conn.fetchrow(
        """SELECT p.* FROM model_heads h
           JOIN model_policies p ON p.model_id = h.model_id AND p.version = h.version
           WHERE h.model_id = $1""",
        model_id,
    )
    return policy_from_row(row) if row is not None else None


async def find_policy(conn: Connection, model_id: str, version: int) -> ModelPolicy | None:
    row = await conn.fetchrow(
        "SELECT * FROM model_policies WHERE model_id = $1 AND version = $2", model_id, version
    )
    return policy_from_row(row) if row is not None else None


async def save_policy(conn: Connection, policy: ModelPolicy) -> None:
    """Store a new version and make it the model's head."""
    orders: list[dict[str, Any]] = [o.model_dump(mode="json") for o in policy.orders]
    await conn.execute(
        """INSERT INTO model_policies (model_id, version, lab_id, cedar_policies, content_hash,
                                       order_ids, orders, schema_version,
                                       country_groups_version, published_at, acknowledge_by,
                                       problems)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12)""",
        policy.model_id,
        policy.version,
        policy.lab_id,
        policy.cedar_policies,
        policy.content_hash,
        list(policy.order_ids),
        json.dumps(orders),
        policy.schema_version,
        policy.country_groups_version,
        policy.published_at,
        policy.acknowledge_by,
        list(policy.problems),
    )
    await conn.execute(
        """INSERT INTO model_heads (model_id, version) VALUES ($1, $2)
           ON CONFLICT (model_id) DO UPDATE SET version = excluded.version""",
        policy.model_id,
        policy.version,
    )


async def record_acknowledgement(
    conn: Connection, accepted: AcceptedAcknowledgement, *, event_id: str, key_id: str
) -> None:
    await conn.execute(
        """INSERT INTO acknowledgements (event_id, model_id, version, lab_id, content_hash,
                                         enforced_at, received_at, enforcement_points, key_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (event_id) DO NOTHING""",
        event_id,
        accepted.model_id,
        accepted.policy_version,
        accepted.lab_id,
        accepted.content_hash,
        accepted.enforced_at,
        accepted.received_at,
        list(accepted.enforcement_points),
        key_id,
    )


async def acknowledgements(
    conn: Connection, model_id: str, *, from_version: int
) -> list[AcceptedAcknowledgement]:
    """Accepted acknowledgements of the model's version ``from_version`` or later."""
    rows = await conn.fetch(
        """SELECT * FROM acknowledgements WHERE model_id = $1 AND version >= $2
           ORDER BY received_at""",
        model_id,
        from_version,
    )
    return [
        AcceptedAcknowledgement(
            model_id=r["model_id"],
            lab_id=r["lab_id"],
            policy_version=r["version"],
            content_hash=r["content_hash"],
            enforced_at=r["enforced_at"],
            received_at=r["received_at"],
            enforcement_points=tuple(r["enforcement_points"]),
        )
        for r in rows
    ]


async def record_overdue(conn: Connection, overdue: ComplianceOverdue, event_id: str) -> bool:
    """Remember a ComplianceOverdue; False if this version's was raised already."""
    inserted = await conn.fetchval(
        """INSERT INTO compliance_overdue (model_id, version, event_id, detected_at)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
        overdue.model_id,
        overdue.policy_version,
        event_id,
        overdue.detected_at,
    )
    return bool(inserted)
