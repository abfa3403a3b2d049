"""asyncpg pools and connections, each confined to its service's own schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar
from urllib.parse import urlparse

import asyncpg

from services.runtime.migrations import migrate
from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What handlers receive: a pooled connection or a plain one (scripts, tests).
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]

T = TypeVar("T")


def database_name(database_url: str) -> str:
    """The database of a URL (an outbox relay's transactional id names it)."""
    return urlparse(database_url).path.lstrip("/") or "postgres"


def _server_settings(settings: RuntimeSettings) -> dict[str, str]:
    return {"search_path": settings.db_schema, "application_name": settings.service_name}


async def create_pool(settings: RuntimeSettings) -> Pool:
    """A pool whose connections see only the service's schema (plus pg_catalog).

    Statements are written unqualified; the search_path keeps each service in
    the schema it owns, so a table of one service can't be touched by another
    by accident.
    """
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        server_settings=_server_settings(settings),
    )
    assert pool is not None
    return pool


async def migrate_schema(settings: RuntimeSettings, migrations: Sequence[Path]) -> list[str]:
    """Create the schema and apply pending migrations (before any pool is useful)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await migrate(conn, settings.db_schema, *migrations)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def connect(
    settings: RuntimeSettings, migrations: Sequence[Path] = ()
) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """One connection to the service's schema, migrated first: what CLIs use, so an
    operator can fill a registry before the service ever ran."""
    await migrate_schema(settings, migrations)
    conn = await asyncpg.connect(settings.database_url, server_settings=_server_settings(settings))
    try:
        yield conn
    finally:
        await conn.close()


class Probe:
    """One connection of its own, for readiness checks and metrics queries.

    Never a pool connection: a probe must not wait for the handlers' connections
    (an exhausted pool would turn a busy service "unready"), nor take one from
    them. It connects on first use (a process nobody probes holds none), runs one
    statement at a time, bounds every call by ``limit_s`` (connecting included; a
    statement cut off is cancelled with its connection), and after any error drops the
    connection, so the next call connects again: a database that went away and
    came back is seen at once.
    """

    def __init__(self, settings: RuntimeSettings, purpose: str) -> None:
        self.settings = settings
        self.purpose = purpose
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lock = asyncio.Lock()

    async def run(
        self, work: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[T]], *, limit_s: float
    ) -> T:
        """``await work(conn)`` on the probe's connection, within ``limit_s`` seconds."""
        async with asyncio.timeout(limit_s), self._lock:
            try:
                return await work(await self._connection(limit_s))
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never waits: the server may be the thing that is gone

    async def _connection(self, limit_s: float) -> asyncpg.Connection[asyncpg.Record]:
        if self._conn is None or self._conn.is_closed():
            server_settings = _server_settings(self.settings) | {
                "application_name": f"{self.settings.service_name}-{self.purpose}"
            }
            self._conn = await asyncpg.connect(
                self.settings.database_url, timeout=limit_s, server_settings=server_settings
            )
        return self._conn
