"""A service applies the trust library's tables into its own schema, beside its own migrations."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from services.runtime.migrations import migrate
from services.trust import TRUST_SQL


async def test_a_service_schema_gets_the_trust_tables_before_its_own(
    database: str, schema: str, tmp_path: Path
) -> None:
    service = tmp_path / "migrations"
    service.mkdir()
    (service / "0001_service.sql").write_text(
        """CREATE TABLE submissions (
               lab_kind text NOT NULL DEFAULT 'lab', lab_id text NOT NULL,
               FOREIGN KEY (lab_kind, lab_id) REFERENCES trust_principals)"""
    )
    conn = await asyncpg.connect(database, server_settings={"search_path": schema})
    try:
        applied = await migrate(conn, schema, TRUST_SQL, service)
        assert applied[-4:] == [
            "sql/0001_trust_registry",
            "sql/0002_trust_refusal_counts",
            "sql/0003_trust_registry_versions",
            "migrations/0001_service",
        ]
        assert await migrate(conn, schema, TRUST_SQL, service) == []
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        }
        assert {
            "trust_principals",
            "trust_keys",
            "trust_nonces",
            "trust_registry_versions",
            "submissions",
        } <= tables
    finally:
        await conn.close()


async def test_two_services_keep_separate_registries(database: str, schema: str) -> None:
    other = schema + "_b"
    conn = await asyncpg.connect(database)
    try:
        await migrate(conn, schema, TRUST_SQL)
        await migrate(conn, other, TRUST_SQL)
        await conn.execute(
            f"""INSERT INTO "{schema}".trust_principals (kind, principal_id, name, registered_at)
                VALUES ('lab', 'acme', 'Acme', now())"""
        )
        assert await conn.fetchval(f'SELECT count(*) FROM "{other}".trust_principals') == 0
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
        await conn.close()
