"""A fresh schema with the trust library's tables, on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.runtime.migrations import migrate
from services.trust import TRUST_SQL


@pytest.fixture
async def conn(database: str, schema: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        database, server_settings={"search_path": schema}
    )
    try:
        await migrate(connection, schema, TRUST_SQL)
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def pool(
    database: str, schema: str, conn: asyncpg.Connection[asyncpg.Record]
) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    created = await asyncpg.create_pool(
        database, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    try:
        yield created
    finally:
        await created.close()
