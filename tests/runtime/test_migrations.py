"""Schema and topic setup: migrations apply once under a lock; topics match the registry."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.runtime.migrations import MigrationError, migrate
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicMismatch, TopicPlan, ensure_topics


async def test_concurrent_starts_migrate_once_and_edits_are_refused(
    database: str, schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    connections = [await asyncpg.connect(database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, schema, tmp_path) for c in connections))
        applied = [versions for versions in results if versions]
        assert len(applied) == 1, "exactly one replica applies the migrations"
        assert applied[0][-1] == f"{tmp_path.name}/0001_things"
        assert await migrate(connections[0], schema, tmp_path) == []

        (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(connections[0], schema, tmp_path)

        (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
        (tmp_path / "0002_broken.sql").write_text("CREATE TABLE more (id int); SELECT 1/0;")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(connections[0], schema, tmp_path)
        exists = await connections[0].fetchval("SELECT to_regclass($1)", f'"{schema}".more')
        assert exists is None, "a failed migration leaves nothing half-applied"
    finally:
        for conn in connections:
            await conn.close()


async def test_an_existing_topic_with_too_few_partitions_is_an_error(
    settings: RuntimeSettings, kafka: str
) -> None:
    name = f"test.partitions.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicPlan(name, 1)])
    with pytest.raises(TopicMismatch, match=f"{name} has 1 partitions"):
        await ensure_topics(settings, [TopicPlan(name, 3)])
    assert await ensure_topics(settings, [TopicPlan(name, 1)]) == []  # matching: nothing to do
