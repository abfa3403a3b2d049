"""The outbox relay publishes every committed row exactly once, in order per key,
across crashes, competing replicas, a lost election lock and a re-created outbox."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import NotLeaderForPartitionError

from contracts.principals import Role
from services.runtime import SYSTEM_CLOCK, RuntimeSettings, outbox
from services.runtime.database import create_pool, migrate_schema
from services.runtime.outbox import publishing
from services.runtime.relay import OutboxRelay, OutboxRow
from tests.kit import NewTopic, create_feeds, read_topic, wait_for
from tests.runtime.support import Ping

KEYS = 8  # distinct record keys per fill


def relay_settings(settings: RuntimeSettings, schema: str, **extra: Any) -> RuntimeSettings:
    return settings.model_copy(
        update={"service_name": f"test-relay-{uuid.uuid4().hex[:8]}", "db_schema": schema} | extra
    )


async def fill_outbox(
    settings: RuntimeSettings, topic: str, rows: int, prefix: str = "submission", start: int = 0
) -> None:
    """``rows`` events, seq start..n per key, written 50 to a transaction like handlers do."""
    await migrate_schema(settings, [])
    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.db_schema}
    )
    try:
        for first in range(0, rows, 50):
            async with publishing(conn, settings, SYSTEM_CLOCK) as ctx:
                for i in range(first, min(rows, first + 50)):
                    key = f"{prefix}-{i % KEYS}"
                    ctx.publish_to(topic, Ping(key=key, seq=start + i // KEYS), subject=key)
    finally:
        await conn.close()


async def published(settings: RuntimeSettings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        count: int = await conn.fetchval(
            f'SELECT count(*) FROM "{settings.db_schema}".outbox WHERE published_at IS NOT NULL'
        )
        return count
    finally:
        await conn.close()


async def all_published(settings: RuntimeSettings, rows: int) -> bool:
    return await published(settings) == rows


async def assert_exactly_once_in_order(settings: RuntimeSettings, topic: str, rows: int) -> None:
    records = await read_topic(settings, topic, expected=rows, timeout=60)
    events = [json.loads(r.value) for r in records if r.value is not None]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} rows were published twice"
    assert len(ids) == rows, f"expected {rows} records, got {len(ids)}"
    by_key: dict[str, list[int]] = defaultdict(list)
    for record, event in zip(records, events, strict=True):
        assert record.key == event["subject"].encode()
        by_key[event["subject"]].append(event["data"]["seq"])
    for key, seqs in by_key.items():
        assert seqs == list(range(len(seqs))), f"{key} out of order: {seqs[:20]}"


@contextlib.asynccontextmanager
async def relays(
    settings: RuntimeSettings, *kinds: type[OutboxRelay]
) -> AsyncIterator[list[OutboxRelay]]:
    pool = await create_pool(settings)
    started = [kind(settings, pool) for kind in kinds]
    for relay in started:
        relay.start()
    try:
        yield started
    finally:
        for relay in started:
            await relay.stop()
        await pool.close()


class CrashAfterSend(OutboxRelay):
    """Dies once between the Kafka commit and the Postgres mark (the hard window)."""

    crashed = False

    async def _claim(self, leadership: Any, pending: tuple[int, int] | None) -> Any:
        if pending is not None and not self.crashed:
            self.crashed = True
            raise RuntimeError("simulated crash after publish, before mark")
        return await super()._claim(leadership, pending)


class CountsBatches(OutboxRelay):
    """Numbers the partition batches queued in each Kafka transaction (``nth``)."""

    nth = 0

    async def _send(
        self, producer: AIOKafkaProducer, batch: int, rows: list[OutboxRow], lead: Any
    ) -> None:
        self.nth = 0
        await super()._send(producer, batch, rows, lead)

    async def _send_batch(
        self, producer: AIOKafkaProducer, tp: TopicPartition, builder: Any
    ) -> asyncio.Future[Any]:
        self.nth += 1
        return await super()._send_batch(producer, tp, builder)


class CrashMidBatch(CountsBatches):
    """Dies once in the middle of a Kafka transaction (a partition's batch already sent)."""

    crashed = False

    async def _send_batch(
        self, producer: AIOKafkaProducer, tp: TopicPartition, builder: Any
    ) -> asyncio.Future[Any]:
        sent = await super()._send_batch(producer, tp, builder)
        if self.nth == 2 and not self.crashed:
            self.crashed = True
            raise RuntimeError("simulated crash mid-batch")
        return sent


class HangsMidBatch(CountsBatches):
    """Stops forever in the middle of its first Kafka transaction, leaving it open."""

    hung = asyncio.Event()

    async def _send_batch(
        self, producer: AIOKafkaProducer, tp: TopicPartition, builder: Any
    ) -> asyncio.Future[Any]:
        sent = await super()._send_batch(producer, tp, builder)
        if self.nth == 2:
            type(self).hung.set()
            await asyncio.Event().wait()
        return sent


class SendFailsLater(CountsBatches):
    """Once, a partition's batch fails after the transaction went on without it: what
    aiokafka does with a batch that expired on a retriable error (NotLeaderForPartition
    after its request timeout, seen on a first produce to a freshly created feed): the
    batch's future fails, the transaction does not, and a commit would mark its rows
    published although Kafka never took them."""

    failed = False

    async def _send_batch(
        self, producer: AIOKafkaProducer, tp: TopicPartition, builder: Any
    ) -> asyncio.Future[Any]:
        sent = await super()._send_batch(producer, tp, builder)
        if self.nth == 2 and not self.failed:
            self.failed = True
            await sent  # queued and acknowledged; the relay is told it was lost
            lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            lost.set_exception(NotLeaderForPartitionError())
            return lost
        return sent


async def test_relay_publishes_each_row_once_in_key_order(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("relay")
    config = relay_settings(settings, schema, relay_batch_size=50)
    await fill_outbox(config, topic, 400)
    async with relays(config, OutboxRelay):
        await wait_for(partial(all_published, config, 400), what="all rows published")
    await assert_exactly_once_in_order(config, topic, 400)


async def test_relay_crash_windows_neither_lose_nor_duplicate(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("relay-crash")
    config = relay_settings(settings, schema, relay_batch_size=40)
    rows = 0
    for crashing in (CrashAfterSend, CrashMidBatch):
        await fill_outbox(config, topic, 160, prefix=crashing.__name__)
        rows += 160
        async with relays(config, crashing) as (relay,):  # run() restarts after the crash
            await wait_for(partial(all_published, config, rows), what="all rows published")
            assert getattr(relay, "crashed"), f"{crashing.__name__} never crashed"  # noqa: B009
    await assert_exactly_once_in_order(config, topic, rows)


async def test_a_send_that_fails_after_the_fact_aborts_its_transaction(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """The relay waits for every record's acknowledgement before it commits: a record
    whose send failed (while the transaction itself did not) aborts the batch, and the
    batch is published again, whole; no row is marked published that Kafka lacks."""
    topic = await new_topic("relay-lost-send")
    config = relay_settings(settings, schema, relay_batch_size=40)
    await fill_outbox(config, topic, 160)
    async with relays(config, SendFailsLater) as (relay,):
        await wait_for(partial(all_published, config, 160), what="all rows published")
        assert getattr(relay, "failed"), "the send never failed"  # noqa: B009
    await assert_exactly_once_in_order(config, topic, 160)


async def test_a_transaction_left_open_is_fenced_by_the_successor(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """A relay that hangs mid-transaction and loses its lock: the next relay's
    init_transactions aborts what it left open; consumers never see the half batch."""
    topic = await new_topic("relay-open")
    config = relay_settings(settings, schema, relay_batch_size=100)
    await fill_outbox(config, topic, 300)
    async with relays(config, HangsMidBatch) as (_hanging,):
        await asyncio.wait_for(HangsMidBatch.hung.wait(), 30)
        await kill_lock_holders(config)
        async with relays(config, OutboxRelay):
            await wait_for(partial(all_published, config, 300), what="the successor published")
    await assert_exactly_once_in_order(config, topic, 300)


async def kill_lock_holders(settings: RuntimeSettings) -> int:
    """Terminate the sessions holding this outbox's election lock (as a failover,
    an idle-session kill or a restart would)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        killed: int = await conn.fetchval(
            """SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a
               JOIN pg_locks l ON l.pid = a.pid
               WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1""",
            settings.service_name,
        )
        return killed
    finally:
        await conn.close()


async def test_a_relay_that_lost_its_lock_stops_before_publishing_twice(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """Two replicas; the leader's lock session is killed three times while rows keep
    coming. Every claim and mark is fenced by the epoch: no row twice, no key backwards."""
    topic = await new_topic("relay-fence")
    config = relay_settings(settings, schema, relay_batch_size=20, relay_poll_interval_s=0.05)
    batches, per_batch = 30, 40

    async def keep_filling() -> None:
        for batch in range(batches):
            await fill_outbox(config, topic, per_batch, start=batch * per_batch // KEYS)
            await asyncio.sleep(0.05)

    await migrate_schema(config, [])
    async with relays(config, OutboxRelay, OutboxRelay):
        filler = asyncio.create_task(keep_filling())
        kills = 0
        while not filler.done():
            await asyncio.sleep(0.3)
            kills += await kill_lock_holders(config) > 0
        await filler
        await wait_for(
            partial(all_published, config, batches * per_batch),
            timeout=60,
            what="all rows published",
        )
    assert kills >= 3, f"the lock holder was killed only {kills} times"
    await assert_exactly_once_in_order(config, topic, batches * per_batch)


async def test_a_checkpoint_of_an_earlier_outbox_is_not_taken_for_this_ones(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """The schema is dropped and created again (or restored from elsewhere): the Kafka
    checkpoint of the same group name is ahead of the new outbox's batch numbers. A
    relay killed mid-batch must not, on restart, mark the new rows published unsent."""
    topic, again = await new_topic("relay-epoch"), await new_topic("relay-epoch-again")
    config = relay_settings(settings, schema, relay_batch_size=10)
    await fill_outbox(config, topic, 200)
    async with relays(config, OutboxRelay):
        await wait_for(partial(all_published, config, 200), what="first incarnation published")
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()
    await fill_outbox(config, again, 64)
    async with relays(config, CrashMidBatch) as (relay,):
        await wait_for(partial(all_published, config, 64), what="second incarnation published")
        assert getattr(relay, "crashed")  # noqa: B009
    await assert_exactly_once_in_order(config, again, 64)


async def test_a_lagging_restore_never_reuses_batch_numbers_kafka_has_seen(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("relay-lag")
    config = relay_settings(settings, schema, relay_batch_size=10)
    await fill_outbox(config, topic, 96)
    async with relays(config, OutboxRelay):
        await wait_for(partial(all_published, config, 96), what="published")
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    await conn.execute("SELECT setval('outbox_batch_seq', 1)")  # as a replica behind the primary
    await conn.close()
    await fill_outbox(config, topic, 64, start=96 // KEYS)
    async with relays(config, CrashMidBatch) as (relay,):
        await wait_for(partial(all_published, config, 160), what="all published")
        assert getattr(relay, "crashed")  # noqa: B009
    await assert_exactly_once_in_order(config, topic, 160)


async def test_relay_process_killed_mid_batch(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """SIGKILL the relay process three times while it publishes; nothing lost or doubled."""
    topic = await new_topic("relay-kill")
    rows = 3000
    config = relay_settings(settings, schema)
    await fill_outbox(config, topic, rows)
    env = os.environ | {
        "FR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FR_DATABASE_URL": settings.database_url,
        "FR_SERVICE_NAME": config.service_name,
        "FR_DB_SCHEMA": schema,
        "FR_TOPIC_PREFIX": settings.topic_prefix,
        "FR_RELAY_BATCH_SIZE": "100",
        "FR_LOG_JSON": "false",
    }
    command = [sys.executable, "-m", "services.runtime.relay"]
    last = -1
    for _ in range(3):
        process = subprocess.Popen(command, env=env)
        try:
            # Kill once it has made progress since the last kill, i.e. mid-stream.
            await wait_for(partial(progressed, config, last), timeout=60, what="relay progress")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        last = await published(config)
        if last == rows:
            break
    process = subprocess.Popen(command, env=env)
    try:
        await wait_for(partial(all_published, config, rows), timeout=90, what="all published")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    await assert_exactly_once_in_order(config, topic, rows)


async def progressed(settings: RuntimeSettings, last: int) -> bool:
    return await published(settings) > last


async def test_prune_keeps_what_can_still_matter(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("prune")
    config = relay_settings(settings, schema)
    await fill_outbox(config, topic, 4)
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    pool = await create_pool(config)
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
        await OutboxRelay(config, pool).prune()
        left = [r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id")]
        assert left == ids[2:], "old published rows go; recent and unpublished ones stay"
        assert [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")] == ["recent"]
    finally:
        await conn.close()
        await pool.close()


async def test_two_relays_on_one_outbox_publish_once(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """Replicas each run a relay; the advisory lock lets exactly one publish."""
    topic = await new_topic("relay-pair")
    config = relay_settings(settings, schema, relay_batch_size=50)
    await fill_outbox(config, topic, 600)
    async with relays(config, OutboxRelay, OutboxRelay) as pair:
        await wait_for(partial(all_published, config, 600), what="all rows published")
    assert sorted(r.published for r in pair) == [0, 600], "one elected relay did it all"
    await assert_exactly_once_in_order(config, topic, 600)


async def test_rows_for_a_feed_that_does_not_exist_are_parked_not_stopping_the_outbox(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """A tenant never provisioned (or removed with its feeds) must not stop everyone's
    events: its rows move aside, the rest go out in order, and once the feed exists an
    operator requeues them, in their order."""
    topic = await new_topic("relay-parking")
    lab = f"lab-{uuid.uuid4().hex[:8]}"
    feed = settings.topic(f"labs.{lab}.answers")
    config = relay_settings(settings, schema, relay_batch_size=30)
    await migrate_schema(config, [])
    conn = await asyncpg.connect(config.database_url, server_settings={"search_path": schema})
    try:
        for first in range(0, 100, 10):
            async with publishing(conn, config, SYSTEM_CLOCK) as ctx:
                for i in range(first, first + 10):
                    key = f"submission-{i % KEYS}"
                    ctx.publish_to(topic, Ping(key=key, seq=i // KEYS), subject=key)
                    if i % 5 == 0:
                        ctx.publish_to(feed, Ping(key="answers", seq=i), subject="answers")
        async with relays(config, OutboxRelay) as (relay,):
            await wait_for(partial(all_published, config, 100), what="the other rows published")
            await assert_exactly_once_in_order(config, topic, 100)
            assert relay.parked == 20
            assert await outbox.parked(conn) == [(feed, 20, "UnknownTopicOrPartitionError")]

            await create_feeds(config, Role.LAB, lab)
            assert await outbox.requeue(conn, feed) == 20
            await wait_for(partial(all_published, config, 120), what="the requeued rows published")
        records = await read_topic(config, feed, expected=20, timeout=60)
        assert [json.loads(r.value or b"")["data"]["seq"] for r in records] == list(
            range(0, 100, 5)
        )
        assert await outbox.parked(conn) == []
    finally:
        await conn.close()


def open_relay_producers(client_id: str) -> list[AIOKafkaProducer]:
    """The relay producers named ``client_id`` that were never closed."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, AIOKafkaProducer) and o.client._client_id == client_id and not o._closed
    ]


async def test_a_relay_whose_init_transactions_fails_closes_that_producer(
    settings: RuntimeSettings, schema: str, kafka: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refuses ``init_transactions`` (here: a transactional id outside the
    principal's ACLs; in production also a broker restarting): the relay restarts, and
    the producer of each failed start is closed, not left with its connections and tasks."""
    config = relay_settings(settings, schema, topic_prefix="refused-prefix.")
    await migrate_schema(config, [])
    client_id = f"{config.service_name}-relay"

    async def failed_starts() -> bool:
        return sum("outbox relay failed" in r.getMessage() for r in caplog.records) >= 2

    async with relays(config, OutboxRelay) as (relay,):
        await wait_for(failed_starts, timeout=30, what="two failed starts")
        assert not relay.leading.is_set()
        assert open_relay_producers(client_id) == [], "a failed start left its producer open"
