"""Consumers apply each event once, answer or dead-letter what they can't apply, and go on."""

from __future__ import annotations

import json
import uuid
from functools import partial

import asyncpg
from aiokafka import ConsumerRecord

from contracts import encode, make_event
from services.runtime import InvalidContext, RuntimeSettings, Service
from tests.kit import NewTopic, StartService, produce, read_topic, wait_for
from tests.runtime.support import (
    MIGRATIONS,
    Ping,
    Pong,
    counter_service,
    counter_settings,
    counting_handler,
    ping_record,
    ping_topic,
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


def unique(settings: RuntimeSettings, schema: str, **extra: object) -> RuntimeSettings:
    return counter_settings(settings, f"test-{uuid.uuid4().hex[:8]}", schema, **extra)


async def test_redelivered_event_is_applied_once(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("redeliver")
    await start(counter_service(unique(settings, schema), topic))
    event = encode(make_event(Ping(key="k", seq=0), source="/tests", subject="k"))
    # The same event delivered three times, as after a crash before the offset commit.
    await produce(settings, topic, [("k", event)] * 3)
    await produce(settings, topic, [("k", ping_record("k", 1))])
    await wait_for(partial(count_applied, settings.database_url, schema, 2), what="two applied")
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == [0, 1]
    assert all(r["times"] == 1 for r in rows)


async def test_poison_records_go_to_the_dlq_once_and_the_partition_moves_on(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("poison", partitions=1)
    await start(counter_service(unique(settings, schema, max_message_bytes=2000), topic))

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
    records: list[tuple[str | bytes | None, bytes]] = []
    for i, (value, _) in enumerate(poison):
        records += [("k", value), ("k", ping_record("k", i))]  # a good one after each
    await produce(settings, topic, records)

    await wait_for(
        partial(count_applied, settings.database_url, schema, len(poison)), what="good records"
    )
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == list(range(len(poison)))

    dead = await read_topic(settings, f"{topic}.dlq", expected=len(poison))
    assert len(dead) == len(poison), "each poison record is dead-lettered exactly once"
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


async def test_a_record_just_under_the_broker_limit_is_dead_lettered_whole(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    """Production sizes: above the consumers' 1,000,000-byte limit, below the broker's
    1,048,588: the DLQ copy (with its headers) must be accepted, or the partition stalls."""
    topic = await new_topic("huge", partitions=1)
    await start(counter_service(unique(settings, schema), topic))
    assert settings.max_message_bytes == 1_000_000
    huge = [bytes([0xFF]) * (1_040_000 + i) for i in range(6)]  # not JSON either
    records: list[tuple[str | bytes | None, bytes]] = [("k", value) for value in huge]
    await produce(settings, topic, [*records, ("k", ping_record("k", 0))])
    await wait_for(
        partial(count_applied, settings.database_url, schema, 1),
        timeout=60,
        what="the record behind six huge ones",
    )
    dead = await read_topic(settings, f"{topic}.dlq", expected=len(huge), timeout=60)
    assert [r.value for r in dead] == huge
    assert {decoded_headers(r)["dlq.reason"] for r in dead} == {"oversized"}


async def test_reused_event_id_with_other_content_is_dead_lettered(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("reuse", partitions=1)
    await start(counter_service(unique(settings, schema), topic))
    original = make_event(Ping(key="k", seq=0), source="/tests", subject="k")
    impostor = original.model_copy(update={"data": Ping(key="k", seq=1)})
    await produce(settings, topic, [("k", encode(original))])
    await wait_for(partial(count_applied, settings.database_url, schema, 1), what="original")
    await produce(
        settings,
        topic,
        [("k", encode(original)), ("k", encode(impostor)), ("k", ping_record("k", 2))],
    )
    await wait_for(partial(count_applied, settings.database_url, schema, 2), what="next record")
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == [0, 2], "the impostor was not applied"
    (dead,) = await read_topic(settings, f"{topic}.dlq", expected=1)
    assert decoded_headers(dead)["dlq.reason"] == "event_id_reused"
    assert dead.value == encode(impostor)


async def test_types_the_table_ignores_are_skipped_and_unknown_ones_dead_lettered(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("table", partitions=1)
    service = Service(unique(settings, schema), migrations=[MIGRATIONS])
    # Pong travels on the topic but this consumer neither handles nor ignores it.
    service.consume(ping_topic(topic), {Ping: counting_handler()})
    await start(service)
    pong = encode(make_event(Pong(key="k"), source="/tests", subject="k"))
    await produce(settings, topic, [("k", pong), ("k", ping_record("k", 0))])
    await wait_for(partial(count_applied, settings.database_url, schema, 1), what="the ping")
    (dead,) = await read_topic(settings, f"{topic}.dlq", expected=1)
    assert decoded_headers(dead)["dlq.reason"] == "unknown_event_type"

    ignoring = Service(unique(settings, f"{schema}_ign"), migrations=[MIGRATIONS])
    ignoring.consume(ping_topic(topic), {Ping: counting_handler()}, ignore=[Pong])
    try:
        await start(ignoring)
        await wait_for(
            partial(count_applied, settings.database_url, f"{schema}_ign", 1), what="the ping"
        )
        assert len(await read_topic(settings, f"{topic}.dlq", expected=1)) == 1
    finally:
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_ign" CASCADE')
        await conn.close()


async def test_a_failing_on_invalid_hook_dead_letters_instead_of_stalling(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("hook", partitions=1)

    async def broken_hook(ctx: InvalidContext) -> bool:
        await ctx.conn.execute("INSERT INTO applied (event_id, key, seq) VALUES ('x', 'x', -1)")
        raise RuntimeError("the hook cannot parse this either")

    service = Service(unique(settings, schema), migrations=[MIGRATIONS])
    service.consume(
        ping_topic(topic), {Ping: counting_handler()}, ignore=[Pong], on_invalid=broken_hook
    )
    await start(service)
    await produce(settings, topic, [("k", b"{}"), ("k", ping_record("k", 0))])
    await wait_for(partial(count_applied, settings.database_url, schema, 1), what="the record")
    (dead,) = await read_topic(settings, f"{topic}.dlq", expected=1)
    assert decoded_headers(dead)["dlq.reason"] == "invalid_envelope"
    rows = await applied(settings.database_url, schema)
    assert [r["seq"] for r in rows] == [0], "the failed hook's write was rolled back"


async def test_an_answered_invalid_record_is_answered_once(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic, answers = await new_topic("answer", partitions=1), await new_topic("answers")

    async def answer(ctx: InvalidContext) -> bool:
        ctx.publish_to(answers, Pong(key=ctx.violation.reason), subject="k")
        return True

    service = Service(unique(settings, schema), migrations=[MIGRATIONS])
    service.consume(ping_topic(topic), {Ping: counting_handler()}, ignore=[Pong], on_invalid=answer)
    await start(service)
    # The same bytes at two positions are two records: two answers, no dead letter.
    await produce(settings, topic, [("k", b"[]"), ("k", b"[]"), ("k", ping_record("k", 0))])
    await wait_for(partial(count_applied, settings.database_url, schema, 1), what="the record")
    assert len(await read_topic(settings, answers, expected=2)) == 2
    assert await read_topic(settings, f"{topic}.dlq", expected=0, timeout=1) == []
