"""Fixtures for tests against the real Kafka broker and PostgreSQL.

deploy/stack.sh starts both (deploy/test.sh does it for you). Nothing here is
mocked: a test that needs the infrastructure fails with a clear message when
it is not running, it is never skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, ensure_topics

INFRA_HINT = "start the infrastructure first: bash deploy/stack.sh up"


@pytest.fixture(scope="session")
def settings() -> RuntimeSettings:
    return RuntimeSettings(handler_retry_backoff_s=0.01, relay_poll_interval_s=0.2)


@pytest.fixture(scope="session")
async def kafka(settings: RuntimeSettings) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await asyncio.wait_for(admin.start(), 15)
        await admin.list_topics()
    except Exception as exc:
        pytest.fail(f"Kafka at {settings.kafka_bootstrap} is unreachable ({exc!r}); {INFRA_HINT}")
    finally:
        await admin.close()
    await ensure_topics(settings.kafka_bootstrap, [TopicPlan(CHECKPOINT_TOPIC, 1)])
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
async def database(settings: RuntimeSettings) -> str:
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {settings.database_url} is unreachable ({exc!r}); {INFRA_HINT}")
    await conn.close()
    return settings.database_url


@pytest.fixture
async def schema(database: str) -> AsyncIterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


NewTopic = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(kafka: str) -> NewTopic:
    """Create a uniquely named topic (and its DLQ) for one test."""

    async def create(prefix: str = "t", partitions: int = 3) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        await ensure_topics(kafka, [TopicPlan(name, partitions), TopicPlan(f"{name}.dlq", 1)])
        return name

    return create


async def read_topic(
    bootstrap: str, topic: str, *, expected: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the start (read_committed) until ``expected`` records or timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
        # Linger briefly: a duplicate would arrive right after the expected count.
        batch = await consumer.getmany(timeout_ms=1000)
        for partition_records in batch.values():
            records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
