"""Fixtures for tests against the real Kafka broker and PostgreSQL.

deploy/stack.sh starts both (deploy/test.sh does it for you). Nothing here is
mocked: a test that needs the infrastructure fails with a clear message when
it is not running, it is never skipped. Every test that uses the ``kafka``,
``database`` or (tests/security) ``stack`` fixture, directly or through
another fixture, is marked ``stack``, so ``pytest -m "not stack"`` runs the
fast tests alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, ensure_topics
from tests.kit.kafka import new_topic_name
from tests.kit.services import NewTopic, StartService

INFRA_HINT = "start the infrastructure first: bash deploy/stack.sh up"
STACK_FIXTURES = frozenset({"kafka", "database", "stack"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def settings() -> RuntimeSettings:
    # Every Kafka name of the tests is under "test.", which the test principal's
    # prefixed ACLs cover (contracts/acl.py); a rig adds a prefix of its own below it.
    return RuntimeSettings(
        topic_prefix="test.",
        handler_retry_backoff_s=0.01,
        relay_poll_interval_s=0.2,
        transient_retry_s=0.2,
        timer_poll_s=0.2,
        log_json=False,
    )


@pytest.fixture(scope="session")
async def kafka(settings: RuntimeSettings) -> str:
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    try:
        await asyncio.wait_for(admin.start(), 15)
        await admin.list_topics()
    except Exception as exc:
        pytest.fail(f"Kafka at {settings.kafka_bootstrap} is unreachable ({exc!r}); {INFRA_HINT}")
    finally:
        await admin.close()
    await ensure_topics(
        settings,
        [TopicPlan(settings.topic(CHECKPOINT_TOPIC), 1, {"cleanup.policy": "compact"})],
    )
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


@pytest.fixture
async def new_topic(settings: RuntimeSettings, kafka: str) -> NewTopic:
    """Create a uniquely named topic (and its DLQ) for one test."""

    async def create(prefix: str = "t", partitions: int = 3) -> str:
        return await new_topic_name(settings, prefix, partitions)

    return create


@pytest.fixture
async def start(kafka: str, database: str) -> AsyncIterator[StartService]:
    """Start services for one test; they are stopped when the test ends."""
    services: list[Service] = []

    async def started(service: Service) -> Service:
        await service.start()
        services.append(service)
        return service

    yield started
    for service in reversed(services):
        await service.stop()
