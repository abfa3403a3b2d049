"""Faults that are not the record's: the database going away mid-batch, a poison
record on one partition, an unstorable string. Nothing is lost or doubled, every
partition's offsets keep moving, and each poison record is dead-lettered once."""

from __future__ import annotations

import asyncio
import json
from functools import partial

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import encode, make_event
from services.runtime import RuntimeSettings
from tests.kit import NewTopic, StartService, produce, read_topic, wait_for
from tests.runtime.support import Ping, counter_service, ping_record
from tests.runtime.test_consumer import applied, count_applied, decoded_headers, unique


async def terminate_sessions(settings: RuntimeSettings, application: str) -> int:
    """What a restarting or failing-over database does to its clients:
    ``terminating connection due to administrator command`` (AdminShutdown)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            application,
        )
        return killed
    finally:
        await conn.close()


async def test_the_database_going_away_mid_batch_loses_and_doubles_nothing(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("restart")
    config = unique(settings, schema, consumer_batch_size=25)
    await start(counter_service(config, topic, delay=0.002))
    total = 600
    await produce(
        settings, topic, [(f"k{i % 5}", ping_record(f"k{i % 5}", i)) for i in range(total)]
    )
    kills = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not await count_applied(settings.database_url, schema, total):
        assert loop.time() < deadline, "not all records were applied"
        await asyncio.sleep(0.25)
        if len(await applied(settings.database_url, schema)) > 50 * (kills + 1):
            kills += await terminate_sessions(settings, config.service_name) > 0
    assert kills >= 3, f"the sessions were terminated only {kills} times"
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == list(range(total))
    assert all(r["times"] == 1 for r in rows), "an event was applied twice"
    assert await read_topic(settings, f"{topic}.dlq", expected=0, timeout=1) == [], (
        "an outage is not the records' fault: nothing is dead-lettered"
    )


async def test_one_partitions_poison_never_holds_back_the_others(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    topic = await new_topic("one-bad", partitions=3)
    config = unique(settings, schema, consumer_batch_size=50)
    await start(counter_service(config, topic))
    keys = ["k-a", "k-b", "k-c"]
    records: list[tuple[str | bytes | None, bytes]] = []
    seq = 0
    for _round in range(5):
        for key in keys:
            records.append((key, ping_record(key, seq)))
            seq += 1
        records.append(("k-a", ping_record("k-a", 1000 + _round, fail=True)))
    await produce(settings, topic, records)
    await wait_for(
        partial(count_applied, settings.database_url, schema, seq),
        timeout=60,
        what="every good record, on every partition",
    )
    dead = await read_topic(settings, f"{topic}.dlq", expected=5)
    assert len(dead) == 5, "each failing record is dead-lettered exactly once"
    assert {decoded_headers(r)["dlq.reason"] for r in dead} == {"handler_failed"}

    # The group's offsets reach the end of every partition.
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    try:
        ends: dict[TopicPartition, int] = {}
        for record in await read_topic(settings, topic, expected=len(records)):
            tp = TopicPartition(topic, record.partition)
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)

        async def committed_to_the_end() -> bool:
            group = config.topic(f"{config.service_name}.{topic}")
            offsets = await admin.list_consumer_group_offsets(group)
            return all(
                offsets.get(tp) is not None and offsets[tp].offset == end
                for tp, end in ends.items()
            )

        await wait_for(committed_to_the_end, what="offsets committed on every partition")
    finally:
        await admin.close()


async def test_an_id_the_database_cannot_store_is_dead_lettered_not_stalling(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    """Defence in depth below the envelope's own checks: if a string reached the
    database that it refuses, the record is found and dead-lettered, the rest applied."""
    topic = await new_topic("nul", partitions=1)
    await start(counter_service(unique(settings, schema), topic))
    poisoned = json.loads(encode(make_event(Ping(key="k", seq=99), source="/t", subject="k")))
    poisoned["id"] = "nul\u0000id"
    bad = json.dumps(poisoned).encode()
    await produce(
        settings, topic, [("k", ping_record("k", 0)), ("k", bad), ("k", ping_record("k", 1))]
    )
    await wait_for(partial(count_applied, settings.database_url, schema, 2), what="both good ones")
    (dead,) = await read_topic(settings, f"{topic}.dlq", expected=1)
    assert dead.value == bad
    assert decoded_headers(dead)["dlq.reason"] in {"invalid_envelope", "apply_failed"}
