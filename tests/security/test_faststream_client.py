"""A FastStream broker connects with its own principal, and only to its own resources."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker

from services.runtime.kafka import faststream_security
from services.runtime.topics import TopicPlan, ensure_topics
from tests.security.support import Stack, end_offsets, unique


async def test_a_faststream_broker_publishes_and_consumes_as_its_principal(stack: Stack) -> None:
    settings = stack.settings_for("test")
    topic = unique("test.faststream.")
    await ensure_topics(settings, [TopicPlan(topic, 1)])
    received: asyncio.Queue[bytes] = asyncio.Queue()
    broker = KafkaBroker(settings.kafka_bootstrap, security=faststream_security(settings))

    @broker.subscriber(topic, group_id=f"{topic}.group", auto_offset_reset="earliest")
    async def handle(body: bytes) -> None:
        await received.put(body)

    await broker.start()
    try:
        await broker.publish(b"hello", topic)
        assert await asyncio.wait_for(received.get(), 20) == b"hello"
    finally:
        await broker.stop()


async def test_a_faststream_broker_cannot_publish_outside_its_grants(stack: Stack) -> None:
    settings = stack.settings_for("test")
    before = await end_offsets(stack.operator, "intake.events")
    broker = KafkaBroker(settings.kafka_bootstrap, security=faststream_security(settings))
    await broker.start()
    try:
        refused: BaseException | None = None
        try:
            await broker.publish(b"forged", "intake.events")
        except Exception as exc:
            refused = exc
    finally:
        await broker.stop()
    assert type(refused).__name__ == "TopicAuthorizationFailedError"
    assert await end_offsets(stack.operator, "intake.events") == before
