"""Versioned SQL migrations per service schema, applied at start.

Files are ``NNNN_name.sql``; the runtime's own tables (sql/0000_runtime.sql)
come first. Everything runs in one transaction under an advisory lock, so
replicas starting together migrate once and a failed migration leaves nothing
half-applied. An applied file whose content changed is an error, not a silent
skip. (Alembic and yoyo need SQLAlchemy or a sync driver; this is the part of
them we need, on asyncpg.)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

RUNTIME_SQL = Path(__file__).parent / "sql"
_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")

if TYPE_CHECKING:
    from services.runtime.database import Connection


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(*directories: Path) -> list[Migration]:
    found: list[Migration] = []
    for directory in directories:
        for path in sorted(directory.glob("*.sql")):
            if not _NAME.match(path.name):
                raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
            found.append(Migration(f"{directory.name}/{path.stem}", path))
    return found


async def migrate(conn: Connection, schema: str, *directories: Path) -> list[str]:
    """Create ``schema`` if needed and apply pending migrations; returns what was applied."""
    migrations = discover(RUNTIME_SQL, *directories)
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.path} changed after it was applied to {schema}; "
                        "add a new migration instead"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                migration.version,
                migration.checksum,
            )
            applied_now.append(migration.version)
    return applied_now
