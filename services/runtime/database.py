"""asyncpg pools: one per service, confined to the service's own schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What handlers receive: a pooled connection or a plain one (scripts, tests).
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]


async def create_pool(settings: RuntimeSettings, schema: str) -> Pool:
    """A pool whose connections see only ``schema`` (plus pg_catalog).

    Statements are written unqualified; the search_path keeps each service in
    the schema it owns, so a table of one service can't be touched by another
    by accident.
    """
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        server_settings={"search_path": schema, "application_name": settings.service_name},
    )
    assert pool is not None
    return pool
