"""The access schema applies on the real PostgreSQL and keeps its invariants."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from services.runtime.migrations import migrate

MIGRATIONS = Path(__file__).parents[2] / "services/access/migrations"


async def test_the_access_migrations_apply_in_order_and_refuse_an_end_without_its_time(
    database: str, schema: str
) -> None:
    conn = await asyncpg.connect(database)
    try:
        applied = await migrate(conn, schema, MIGRATIONS)
        assert applied[-2:] == ["migrations/0001_access", "migrations/0002_access_service"]
        await conn.execute(f'SET search_path TO "{schema}"')
        insert = (
            "INSERT INTO orders (order_id, model_id, lab_id, submission_id, body, effective_at,"
            " received_at, ended) VALUES ($1, 'l/m@1', 'l', $2, '{}', now(), now(), $3)"
        )
        await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), None)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, uuid.uuid4(), uuid.uuid4(), "lifted")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO model_heads VALUES ('l/m@1', 1)")
    finally:
        await conn.close()
