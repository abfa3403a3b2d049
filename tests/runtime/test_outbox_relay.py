"""The outbox relay publishes every committed row exactly once, in order per key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from functools import partial
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from contracts import make_event
from services.runtime.migrations import migrate
from services.runtime.outbox import Outbox
from services.runtime.relay import OutboxRelay
from services.runtime.settings import RuntimeSettings
from tests.conftest import NewTopic, read_topic, wait_for
from tests.runtime.support import Ping

KEYS = 8  # distinct record keys per fill


async def fill_outbox(
    database: str, schema: str, topic: str, rows: int, prefix: str = "submission"
) -> None:
    """``rows`` events, seq 0..n per key, written 50 to a transaction like handlers do."""
    conn = await asyncpg.connect(database)
    try:
        await migrate(conn, schema)
        await conn.execute(f'SET search_path TO "{schema}"')
        seq: dict[str, int] = defaultdict(int)
        for start in range(0, rows, 50):
            async with conn.transaction():
                outbox = Outbox(conn, "/tests")
                for i in range(start, min(rows, start + 50)):
                    key = f"{prefix}-{i % KEYS}"
                    await outbox.put(
                        topic, make_event(Ping(key=key, seq=seq[key]), source="/tests", subject=key)
                    )
                    seq[key] += 1
    finally:
        await conn.close()


async def published(database: str, schema: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        count: int = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NOT NULL'
        )
        return count
    finally:
        await conn.close()


async def assert_exactly_once_in_order(bootstrap: str, topic: str, rows: int) -> None:
    records = await read_topic(bootstrap, topic, expected=rows)
    events = [json.loads(r.value) for r in records if r.value is not None]
    ids = [e["id"] for e in events]
    assert len(ids) == rows, f"expected {rows} records, got {len(ids)}"
    assert len(set(ids)) == rows, "an outbox row was published twice"
    by_key: dict[str, list[int]] = defaultdict(list)
    for record, event in zip(records, events, strict=True):
        assert record.key == event["subject"].encode()
        by_key[event["subject"]].append(event["data"]["seq"])
    for key, seqs in by_key.items():
        assert seqs == list(range(len(seqs))), f"{key} out of order: {seqs[:20]}"


class CrashAfterSend(OutboxRelay):
    """Dies once between the Kafka commit and the Postgres mark (the hard window)."""

    crashed = False

    async def _mark(self, batch: int) -> None:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("simulated crash after publish, before mark")
        await super()._mark(batch)


class CrashMidBatch(OutboxRelay):
    """Dies once in the middle of a Kafka transaction (some records already sent)."""

    sends = 0
    crashed = False

    async def _send_one(self, producer: AIOKafkaProducer, row: Any) -> Any:
        self.sends += 1
        if self.sends == 30:
            self.crashed = True
            raise RuntimeError("simulated crash mid-batch")
        return await super()._send_one(producer, row)


async def test_relay_publishes_each_row_once_in_key_order(
    settings: RuntimeSettings, database: str, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("relay")
    rows = 400
    await fill_outbox(database, schema, topic, rows)
    relay_settings = settings.model_copy(
        update={"service_name": f"test-{uuid.uuid4().hex[:8]}", "relay_batch_size": 50}
    )
    pool = await asyncpg.create_pool(database, server_settings={"search_path": schema})
    assert pool is not None
    relay = OutboxRelay(relay_settings, pool, schema)
    relay.start()
    try:
        await wait_for(partial(_eq, database, schema, rows), what="all rows published")
    finally:
        await relay.stop()
        await pool.close()
    await assert_exactly_once_in_order(settings.kafka_bootstrap, topic, rows)


async def _eq(database: str, schema: str, rows: int) -> bool:
    return await published(database, schema) == rows


async def test_relay_crash_windows_neither_lose_nor_duplicate(
    settings: RuntimeSettings, database: str, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("relay-crash")
    relay_settings = settings.model_copy(
        update={"service_name": f"test-{uuid.uuid4().hex[:8]}", "relay_batch_size": 40}
    )
    pool = await asyncpg.create_pool(database, server_settings={"search_path": schema})
    assert pool is not None
    rows = 0
    try:
        for crashing in (CrashAfterSend, CrashMidBatch):
            await fill_outbox(database, schema, topic, 150, prefix=crashing.__name__)
            rows += 150
            relay = crashing(relay_settings, pool, schema)
            relay.start()  # run() restarts after the simulated crash, like a new process
            await wait_for(partial(_eq, database, schema, rows), what="all rows published")
            await relay.stop()
            assert relay.crashed, f"{crashing.__name__} never crashed"
    finally:
        await pool.close()
    await assert_exactly_once_in_order(settings.kafka_bootstrap, topic, rows)


async def test_relay_process_killed_mid_batch(
    settings: RuntimeSettings, database: str, schema: str, new_topic: NewTopic
) -> None:
    """SIGKILL the relay process three times while it publishes; nothing lost or doubled."""
    topic = await new_topic("relay-kill")
    rows = 3000
    await fill_outbox(database, schema, topic, rows)
    env = os.environ | {
        "FR_SERVICE_NAME": f"test-{uuid.uuid4().hex[:8]}",
        "FR_DB_SCHEMA": schema,
        "FR_RELAY_BATCH_SIZE": "100",
        "FR_LOG_JSON": "false",
    }
    kills = 0
    last = -1
    while kills < 3:
        process = subprocess.Popen([sys.executable, "-m", "services.runtime.relay"], env=env)
        try:
            # Kill once it has made progress since the last kill, i.e. mid-stream.
            await wait_for(
                partial(_progressed, database, schema, last), timeout=60, what="relay progress"
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        kills += 1
        last = await published(database, schema)
        if last == rows:
            break
    process = subprocess.Popen([sys.executable, "-m", "services.runtime.relay"], env=env)
    try:
        await wait_for(partial(_eq, database, schema, rows), timeout=90, what="all published")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    await assert_exactly_once_in_order(settings.kafka_bootstrap, topic, rows)


async def _progressed(database: str, schema: str, last: int) -> bool:
    return await published(database, schema) > last


async def test_prune_keeps_what_can_still_matter(
    settings: RuntimeSettings, database: str, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("prune")
    await fill_outbox(database, schema, topic, 4)
    conn = await asyncpg.connect(database, server_settings={"search_path": schema})
    pool = await asyncpg.create_pool(database, server_settings={"search_path": schema})
    assert pool is not None
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id")]
        # Two rows published long ago, one recently, one not yet.
        await conn.execute(
            "UPDATE outbox SET published_at = now() - interval '30 days' "
            "WHERE id = ANY($1::bigint[])",
            ids[:2],
        )
        await conn.execute("UPDATE outbox SET published_at = now() WHERE id = $1", ids[2])
        for age_days, event_id in ((120, "old"), (10, "recent")):
            await conn.execute(
                """INSERT INTO inbox (consumer, event_id, topic, "partition", "offset", received_at)
                   VALUES ('c', $1, $2, 0, 0, now() - make_interval(days => $3))""",
                event_id,
                topic,
                age_days,
            )
        await OutboxRelay(settings, pool, schema).prune()
        left = [r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id")]
        assert left == ids[2:], "old published rows go; recent and unpublished ones stay"
        assert [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")] == ["recent"]
    finally:
        await conn.close()
        await pool.close()


async def test_two_relays_on_one_outbox_publish_once(
    settings: RuntimeSettings, database: str, schema: str, new_topic: NewTopic
) -> None:
    """Replicas each run a relay; the advisory lock lets exactly one publish."""
    topic = await new_topic("relay-pair")
    rows = 600
    await fill_outbox(database, schema, topic, rows)
    relay_settings = settings.model_copy(update={"relay_batch_size": 50})
    pool = await asyncpg.create_pool(database, server_settings={"search_path": schema})
    assert pool is not None
    relays = [OutboxRelay(relay_settings, pool, schema) for _ in range(2)]
    try:
        for relay in relays:
            relay.start()
        await wait_for(partial(_eq, database, schema, rows), what="all rows published")
    finally:
        for relay in relays:
            await relay.stop()
        await pool.close()
    assert sorted(r.published for r in relays) == [0, rows], "one elected relay did it all"
    await assert_exactly_once_in_order(settings.kafka_bootstrap, topic, rows)
