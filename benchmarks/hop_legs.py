"""What one record pays on the hop, leg by leg: each leg of its guarantees, timed alone.

A record on the hop crosses Kafka twice and commits twice: the service's Postgres
transaction (inbox + state + outbox, fsync, ``synchronous_commit=on``), the NOTIFY
that wakes the relay, the relay's claim, and the relay's Kafka transaction (the
first produce, which adds the partition to the transaction; the checkpoint offset,
AddOffsetsToTxn + TxnOffsetCommit through the group coordinator, whose
``group.coordinator.append.linger.ms`` is 5 ms by default on Kafka 4.x and 0 in
deploy/; EndTxn), after which a ``read_committed`` consumer can fetch it. Here each
leg runs on its own, one record at a time with a pause between, on the benchmark's
broker and database. The sum of the medians (plus the raw produce -> consume
crossing measured by the main benchmark) is what one record pays alone. It is not
a bound under a steady stream: with no pause between records the connections and
the broker's threads stay warm and the same legs run faster (the fair loop, paced,
has gone under that sum); the fair loop, paced in the same run, is the reference.

The consumer group's offset commit is timed too: it is off the record's path (the
runtime commits applied offsets in the background), but it shows the linger. And
whole transactions back to back, as a relay sends them under a steady stream: one
begun while the previous one's markers are being written waits for them. Each leg's
p99 is given beside its median (``<leg>_p99_ms``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import BENCH_PREFIX, fresh_topic, percentile
from services.runtime.relay import CHECKPOINT_TOPIC, CONCURRENT_TXN_RETRY_S
from services.runtime.settings import RuntimeSettings

SAMPLES = 100
CHAINED_SAMPLES = 300  # back to back: no pause between, so cheap; p99 needs many
PAUSE_S = 0.03  # between samples: the previous transaction's markers are written


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def p99_key(name: str) -> str:
    """The key of a leg's p99 beside its median's (``..._ms`` -> ``..._p99_ms``)."""
    return name.removesuffix("_ms") + "_p99_ms"


def _figures(name: str, seconds: list[float]) -> dict[str, float]:
    """``name`` (the median, ms) and its p99 (``p99_key``)."""
    return {name: _ms(statistics.median(seconds)), p99_key(name): _ms(percentile(seconds, 99))}


async def _timed(samples: int, step: Callable[[], Awaitable[None]]) -> list[float]:
    taken = []
    for _ in range(samples):
        started = time.perf_counter()
        await step()
        taken.append(time.perf_counter() - started)
        await asyncio.sleep(PAUSE_S)
    return taken


async def postgres_legs(settings: RuntimeSettings, samples: int) -> dict[str, float]:
    """The transaction's commit (fsync), NOTIFY -> listener, one round trip (the claim)."""
    schema = f"bench_legs_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(settings.database_url)
    listener = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".rows (id bigserial PRIMARY KEY, v text)')
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await conn.fetchval("SHOW fsync") == "on"

        async def commit() -> None:
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{schema}".rows (v) VALUES ($1)', "x" * 900)

        woken: asyncio.Queue[float] = asyncio.Queue()
        channel = f"{schema}_outbox"
        await listener.add_listener(channel, lambda *_: woken.put_nowait(time.perf_counter()))
        notified: list[float] = []
        for _ in range(samples):
            sent = time.perf_counter()
            await conn.execute("SELECT pg_notify($1, '')", channel)
            notified.append(await woken.get() - sent)
            await asyncio.sleep(PAUSE_S)
        committed = await _timed(samples, commit)
        round_trip = await _timed(samples, lambda: conn.fetchval("SELECT 1"))
        # The listener wakes before the notifying statement's own answer is read: its
        # share of the path is what it takes beyond that statement's round trip.
        wakeup = max(0.0, statistics.median(notified) - statistics.median(round_trip))
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        await listener.close()
    return (
        _figures("floor_pg_commit_ms", committed)
        | {"floor_notify_wakeup_ms": _ms(wakeup)}
        | _figures("floor_pg_round_trip_ms", round_trip)
    )


async def kafka_legs(settings: RuntimeSettings, samples: int) -> dict[str, float]:
    """One record per Kafka transaction, as the relay sends it, leg by leg; then the
    time until a read_committed consumer has it; and a consumer group's offset commit."""
    topic = await fresh_topic(settings, "legs", partitions=1)
    transactional_id = settings.topic(f"bench-legs-{uuid.uuid4().hex[:6]}")
    checkpoint = TopicPartition(settings.topic(CHECKPOINT_TOPIC), 0)
    producer = AIOKafkaProducer(
        **settings.kafka_options(),
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        retry_backoff_ms=10,
    )
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_options(),
        group_id=settings.topic(f"bench-legs-{uuid.uuid4().hex[:6]}"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await producer.start()
    await consumer.start()
    legs: dict[str, list[float]] = {
        k: [] for k in ("first_produce", "offsets", "end_txn", "visible", "group_commit", "chained")
    }
    try:
        await consumer.getmany(timeout_ms=2000)  # joined, positioned
        for batch in range(1, samples + 1):
            started = time.perf_counter()
            await producer.begin_transaction()
            sent = await producer.send(topic, value=b"x" * 900, key=b"k")
            await sent  # AddPartitionsToTxn, then the produce, acknowledged
            produced = time.perf_counter()
            await producer.send_offsets_to_transaction({checkpoint: batch}, transactional_id)
            offsets = time.perf_counter()
            await producer.commit_transaction()
            committed = time.perf_counter()
            while not await consumer.getmany(timeout_ms=1000):
                pass
            visible = time.perf_counter()
            legs["first_produce"].append(produced - started)
            legs["offsets"].append(offsets - produced)
            legs["end_txn"].append(committed - offsets)
            legs["visible"].append(visible - committed)
            position = await consumer.position(TopicPartition(topic, 0))
            before = time.perf_counter()
            await consumer.commit({TopicPartition(topic, 0): position})
            legs["group_commit"].append(time.perf_counter() - before)
            await asyncio.sleep(PAUSE_S)
        # Back to back, as the relay under a steady stream sends them: each transaction
        # begins while the coordinator still writes the previous one's markers, and its
        # AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS until they are written.
        for batch in range(samples + 1, samples + 1 + CHAINED_SAMPLES):
            started = time.perf_counter()
            async with producer.transaction():
                await (await producer.send(topic, value=b"x" * 900, key=b"k"))
                await producer.send_offsets_to_transaction({checkpoint: batch}, transactional_id)
            legs["chained"].append(time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
    names = {
        "first_produce": "floor_kafka_first_produce_ms",
        "offsets": "floor_kafka_txn_offsets_ms",
        "end_txn": "floor_kafka_end_txn_ms",
        "visible": "floor_kafka_commit_to_read_committed_ms",
        "group_commit": "floor_group_offset_commit_ms",
        "chained": "floor_kafka_txn_back_to_back_ms",
    }
    figures: dict[str, float] = {}
    for leg, taken in legs.items():
        figures |= _figures(names[leg], taken)
    return figures


async def measure_legs(settings: RuntimeSettings, samples: int = SAMPLES) -> dict[str, float]:
    """Every leg's median (ms), and ``floor_legs_ms``: the legs on a record's path
    summed (the raw crossing into the service is added by the caller)."""
    legs = await postgres_legs(settings, samples) | await kafka_legs(settings, samples)
    on_path = (
        "floor_pg_commit_ms",
        "floor_notify_wakeup_ms",
        "floor_pg_round_trip_ms",
        "floor_kafka_first_produce_ms",
        "floor_kafka_txn_offsets_ms",
        "floor_kafka_end_txn_ms",
        "floor_kafka_commit_to_read_committed_ms",
    )
    legs["floor_legs_ms"] = round(sum(legs[k] for k in on_path), 2)
    legs["concurrent_txn_retry_ms"] = CONCURRENT_TXN_RETRY_S * 1000
    return legs


if __name__ == "__main__":
    config = RuntimeSettings(topic_prefix=BENCH_PREFIX)
    for name, value in asyncio.run(measure_legs(config, 30)).items():
        print(f"{name}: {value}")
