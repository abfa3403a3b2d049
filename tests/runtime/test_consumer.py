"""Consumers apply each event once, dead-letter what they can't apply, and keep going."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from contracts import encode, make_event
from services.runtime.consumer import InvalidRecord
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from tests.conftest import NewTopic, read_topic, wait_for
from tests.runtime.support import (
    MIGRATIONS,
    PING_TYPES,
    Ping,
    counter_service,
    counting_handler,
    ping_record,
    produce,
)


async def applied(database: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".applied')
        if exists is None:
            return []
        return await conn.fetch(f'SELECT event_id, key, seq, times FROM "{schema}".applied')
    finally:
        await conn.close()


async def count_applied(database: str, schema: str, expected: int) -> bool:
    return len(await applied(database, schema)) >= expected


def decoded_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}


StartService = Callable[[Service], Awaitable[Service]]


@pytest.fixture
async def start() -> AsyncIterator[StartService]:
    """Start a service for one test; it is stopped when the test ends."""
    services: list[Service] = []

    async def started(service: Service) -> Service:
        await service.start()
        services.append(service)
        return service

    yield started
    for service in services:
        await service.stop()


async def test_redelivered_event_is_applied_once(
    settings: RuntimeSettings,
    database: str,
    schema: str,
    new_topic: NewTopic,
    start: StartService,
) -> None:
    topic = await new_topic("redeliver")
    name = f"test-{uuid.uuid4().hex[:8]}"
    service = counter_service(settings, name, schema, topic)
    await start(service)
    event = encode(make_event(Ping(key="k", seq=0), source="/tests", subject="k"))
    # The same event delivered three times, as after a crash before the offset commit.
    await produce(settings.kafka_bootstrap, topic, [("k", event)] * 3)
    await produce(settings.kafka_bootstrap, topic, [("k", ping_record("k", 1))])
    await wait_for(partial(count_applied, database, schema, 2), what="two events applied")
    rows = await applied(database, schema)
    assert sorted(r["seq"] for r in rows) == [0, 1]
    assert all(r["times"] == 1 for r in rows)


async def test_poison_records_go_to_dlq_and_the_partition_moves_on(
    settings: RuntimeSettings,
    database: str,
    schema: str,
    new_topic: NewTopic,
    start: StartService,
) -> None:
    topic = await new_topic("poison", partitions=1)
    small = settings.model_copy(update={"max_message_bytes": 2000})
    service = counter_service(small, f"test-{uuid.uuid4().hex[:8]}", schema, topic)
    await start(service)

    unknown = json.loads(ping_record("k", 99))
    unknown["type"] = "test.Unknown"
    bad_field = json.loads(ping_record("k", 98))
    bad_field["data"]["seq"] = "not a number"
    poison = [
        (b"\x00\xffnot json", "malformed_json"),
        (b"[1, 2, 3]", "invalid_envelope"),
        (json.dumps(unknown).encode(), "unknown_event_type"),
        (json.dumps(bad_field).encode(), "schema_violation"),
        (b'{"pad": "' + b"x" * 3000 + b'"}', "oversized"),
        (ping_record("k", 97, fail=True), "handler_failed"),
        (ping_record("k", 96, permanent=True), "test_refused"),
    ]
    records: list[tuple[str, bytes]] = []
    for i, (value, _) in enumerate(poison):
        records += [("k", value), ("k", ping_record("k", i))]  # a good one after each
    await produce(settings.kafka_bootstrap, topic, records)

    await wait_for(partial(count_applied, database, schema, len(poison)), what="good records")
    rows = await applied(database, schema)
    assert sorted(r["seq"] for r in rows) == list(range(len(poison)))

    dead = await read_topic(settings.kafka_bootstrap, f"{topic}.dlq", expected=len(poison))
    assert len(dead) == len(poison)
    for record, (value, reason) in zip(dead, poison, strict=True):
        headers = decoded_headers(record)
        assert record.value == value, "the DLQ keeps the original bytes"
        assert headers["dlq.reason"] == reason
        assert headers["dlq.error"]
        assert headers["dlq.origin.topic"] == topic
        assert headers["dlq.origin.partition"] == "0"
    offsets = [int(dict(r.headers)["dlq.origin.offset"].decode()) for r in dead]
    assert offsets == [2 * i for i in range(len(poison))]
    attempts = {h["dlq.reason"]: h["dlq.attempts"] for h in map(decoded_headers, dead)}
    assert attempts["handler_failed"] == str(settings.handler_max_attempts)
    assert attempts["test_refused"] == "1", "a PermanentError is not retried"


@pytest.mark.parametrize(
    ("stop_signal", "graceful_timeout_s"),
    [
        (signal.SIGKILL, 5.0),
        (signal.SIGTERM, 5.0),  # in-flight batch finishes within the grace period
        (signal.SIGTERM, 0.05),  # grace period ends mid-batch: the handler is cancelled
    ],
    ids=["sigkill", "sigterm", "sigterm-cut-off"],
)
async def test_consumer_process_stopped_mid_stream_loses_and_doubles_nothing(
    settings: RuntimeSettings,
    database: str,
    schema: str,
    new_topic: NewTopic,
    stop_signal: signal.Signals,
    graceful_timeout_s: float,
) -> None:
    topic = await new_topic("crash")
    total = 300
    await produce(
        settings.kafka_bootstrap,
        topic,
        [(f"k{i % 7}", ping_record(f"k{i % 7}", i)) for i in range(total)],
    )
    env = os.environ | {
        "FR_SERVICE_NAME": f"test-{uuid.uuid4().hex[:8]}",
        "TEST_SCHEMA": schema,
        "TEST_TOPIC": topic,
        "TEST_DELAY": "0.01",  # slow enough to be stopped mid-stream
        "FR_GRACEFUL_TIMEOUT_S": str(graceful_timeout_s),
        "FR_CONSUMER_BATCH_SIZE": "20",  # small batches: a stop lands mid-stream
        "FR_LOG_JSON": "false",
    }
    command = [sys.executable, "-m", "tests.runtime.support"]
    process = subprocess.Popen(command, env=env)
    try:
        await wait_for(partial(count_applied, database, schema, 40), timeout=60, what="progress")
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=30)
    assert code == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0)
    assert len(await applied(database, schema)) < total, "stopped too late to prove anything"

    process = subprocess.Popen(command, env=env | {"TEST_DELAY": "0"})
    try:
        await wait_for(partial(count_applied, database, schema, total), timeout=90, what="all")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rows = await applied(database, schema)
    assert sorted(r["seq"] for r in rows) == list(range(total))
    assert all(r["times"] == 1 for r in rows), "an event was applied twice"


async def test_reused_event_id_with_other_content_is_dead_lettered(
    settings: RuntimeSettings,
    database: str,
    schema: str,
    new_topic: NewTopic,
    start: StartService,
) -> None:
    topic = await new_topic("reuse", partitions=1)
    service = counter_service(settings, f"test-{uuid.uuid4().hex[:8]}", schema, topic)
    await start(service)
    original = make_event(Ping(key="k", seq=0), source="/tests", subject="k")
    impostor = original.model_copy(update={"data": Ping(key="k", seq=1)})
    await produce(settings.kafka_bootstrap, topic, [("k", encode(original))])
    await wait_for(partial(count_applied, database, schema, 1), what="original applied")
    await produce(
        settings.kafka_bootstrap,
        topic,
        [("k", encode(original)), ("k", encode(impostor)), ("k", ping_record("k", 2))],
    )
    await wait_for(partial(count_applied, database, schema, 2), what="next record applied")
    rows = await applied(database, schema)
    assert sorted(r["seq"] for r in rows) == [0, 2], "the impostor was not applied"
    (dead,) = await read_topic(settings.kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert decoded_headers(dead)["dlq.reason"] == "event_id_reused"
    assert dead.value == encode(impostor)


async def test_a_failing_on_invalid_hook_dead_letters_instead_of_stalling(
    settings: RuntimeSettings,
    database: str,
    schema: str,
    new_topic: NewTopic,
    start: StartService,
) -> None:
    topic = await new_topic("hook", partitions=1)

    async def broken_hook(record: InvalidRecord) -> bool:
        raise RuntimeError("the hook cannot parse this either")

    service = Service(
        f"test-{uuid.uuid4().hex[:8]}", settings=settings, schema=schema, migrations=MIGRATIONS
    )
    service.consume(topic, counting_handler(), event_types=PING_TYPES, on_invalid=broken_hook)
    await start(service)
    await produce(settings.kafka_bootstrap, topic, [("k", b"{}"), ("k", ping_record("k", 0))])
    await wait_for(partial(count_applied, database, schema, 1), what="the record behind it")
    (dead,) = await read_topic(settings.kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert decoded_headers(dead)["dlq.reason"] == "invalid_envelope"
