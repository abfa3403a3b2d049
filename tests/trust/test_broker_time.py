"""The broker timestamp on the real Kafka: with LogAppendTime no producer chooses it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.runtime.settings import RuntimeSettings
from services.trust.freshness import LOG_APPEND_TIME, FreshnessPolicy, check_freshness, receipt

A_YEAR_AGO = datetime.now(UTC) - timedelta(days=365)


async def produce_and_read(settings: RuntimeSettings, config: dict[str, str]) -> tuple[int, int]:
    """(timestamp, timestamp_type) of a record produced with a year-old CreateTime."""
    topic = f"test.trust.{uuid.uuid4().hex[:10]}"
    kafka = settings.kafka_options()
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", timestamp_ms=int(A_YEAR_AGO.timestamp() * 1000))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **kafka, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    return record.timestamp, record.timestamp_type


async def test_a_log_append_time_topic_stamps_records_with_the_brokers_clock(
    settings: RuntimeSettings, kafka: str
) -> None:
    before = datetime.now(UTC)
    timestamp, kind = await produce_and_read(settings, {"message.timestamp.type": "LogAppendTime"})
    received = receipt(
        "e", datetime.now(UTC), timestamp_ms=timestamp, log_append_time=kind == LOG_APPEND_TIME
    )
    assert received.appended_at is not None
    assert before - timedelta(seconds=5) <= received.appended_at <= datetime.now(UTC)
    # A signature issued a year ago is stale, whatever timestamp its producer claimed.
    assert check_freshness(A_YEAR_AGO, received, FreshnessPolicy()) is not None


async def test_a_create_time_topics_timestamp_is_not_taken_as_the_broker_time(
    settings: RuntimeSettings, kafka: str
) -> None:
    timestamp, kind = await produce_and_read(settings, {"message.timestamp.type": "CreateTime"})
    assert abs(timestamp / 1000 - A_YEAR_AGO.timestamp()) < 1  # the producer's choice
    received = receipt(
        "e", datetime.now(UTC), timestamp_ms=timestamp, log_append_time=kind == LOG_APPEND_TIME
    )
    assert received.appended_at is None  # judged against the service clock instead
