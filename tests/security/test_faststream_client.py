"""A FastStream broker connects with its own principal, and only to its own resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from faststream.kafka import KafkaBroker

from services.runtime.kafka import faststream_security, read_credentials
from services.runtime.kafka_admin import KafkaAdmin
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


async def test_a_connecting_client_logs_no_password_even_at_debug(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    settings = stack.settings_for("test")
    password = read_credentials(stack.principals_dir / "test.json").password.get_secret_value()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiokafka")  # conftest quiets it otherwise
    broker = KafkaBroker(settings.kafka_bootstrap, security=faststream_security(settings))
    await broker.start()
    try:
        with contextlib.suppress(Exception):  # refused or timed out: no such topic
            await asyncio.wait_for(broker.publish(b"x", unique("test.nowhere.")), 5)
    finally:
        await broker.stop()
    async with KafkaAdmin(settings) as admin:
        await admin.client.list_topics()
    assert "SCRAM-SHA-512" in caplog.text  # the handshake was logged, at all levels
    assert password not in caplog.text
