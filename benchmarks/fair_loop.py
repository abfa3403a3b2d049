"""The fair ceiling for the runtime's hop: a hand-written loop with the same guarantees.

Consume a batch (read_committed, manual offsets); apply it in one Postgres
transaction of three set-based statements (inbox claims, state rows, outbox
rows); commit that batch's offsets; publish the batch in one Kafka transaction
with its checkpoint offset. Nothing is lost and nothing applies twice, as in
the runtime, but with none of its generality: no per-record handler, no
dead-letter attribution, no tracing, no background commits. The runtime's hop
is measured against this and against raw aiokafka in the same run, in bursts and
paced (benchmarks/platform_hop.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.runtime.relay import CHECKPOINT_TOPIC, MAX_BATCH_BYTES
from services.runtime.settings import RuntimeSettings

_CLAIM = """
INSERT INTO inbox (consumer, event_id, topic, "partition", "offset", digest)
SELECT $1, k, $2, p, o, d
FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bytea[]) AS u(k, p, o, d)
ON CONFLICT DO NOTHING RETURNING event_id
"""
_STATE = "INSERT INTO ticks (event_id, seq) SELECT * FROM unnest($1::text[], $2::int[])"
_OUTBOX = """
INSERT INTO outbox (topic, key, event_id, event_type, payload, headers)
SELECT $1, k, i, 'bench.Tick', p, '{}'::jsonb
FROM unnest($2::bytea[], $3::text[], $4::bytea[]) AS u(k, i, p)
"""


async def fair_loop(
    settings: RuntimeSettings, pool: asyncpg.Pool[Any], source: str, sink: str, expected: int
) -> None:
    """Forward ``expected`` records from ``source`` to ``sink`` with the guarantees."""
    group = settings.topic(f"bench-fair-{uuid.uuid4().hex[:6]}")
    checkpoint = TopicPartition(settings.topic(CHECKPOINT_TOPIC), 0)
    transactional_id = settings.topic(f"bench-fair-relay-{group}")
    consumer = AIOKafkaConsumer(
        source,
        **settings.kafka_options(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        **settings.kafka_options(),
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        # The relay's producer tuning (services/runtime/relay.py), so that the ratio
        # compares the loops, not the clients' settings.
        max_batch_size=MAX_BATCH_BYTES,
        retry_backoff_ms=10,
    )
    await consumer.start()
    await producer.start()
    done, batch_number = 0, 0
    try:
        while done < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=500)
            records = [r for batch in fetched.values() for r in batch]
            if not records:
                continue
            events = [json.loads(r.value or b"") for r in records]
            async with pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetch(
                    _CLAIM,
                    group,
                    source,
                    [e["id"] for e in events],
                    [r.partition for r in records],
                    [r.offset for r in records],
                    [hashlib.sha256(r.value or b"").digest() for r in records],
                )
                fresh = {row["event_id"] for row in claimed}
                applied = [(r, e) for r, e in zip(records, events, strict=True) if e["id"] in fresh]
                await conn.execute(
                    _STATE, [e["id"] for _, e in applied], [e["data"]["seq"] for _, e in applied]
                )
                out = [(r.key, f"{e['id']}-out", r.value) for r, e in applied]
                await conn.execute(
                    _OUTBOX,
                    sink,
                    [k for k, _, _ in out],
                    [i for _, i, _ in out],
                    [v for _, _, v in out],
                )
            await consumer.commit(
                {
                    TopicPartition(tp.topic, tp.partition): batch[-1].offset + 1
                    for tp, batch in fetched.items()
                }
            )
            batch_number += 1
            async with producer.transaction():
                for key, _, value in out:
                    await producer.send(sink, value=value, key=key)
                await producer.send_offsets_to_transaction(
                    {checkpoint: batch_number + 1}, transactional_id
                )
            done += len(records)
    finally:
        await producer.stop()
        await consumer.stop()


async def main_loop(
    settings: RuntimeSettings, source: str, sink: str, expected: int, schema: str
) -> asyncio.Task[None]:
    """Start the loop as a task on a fresh schema (runtime tables + the ticks table)."""
    from benchmarks.platform_hop import MIGRATIONS
    from services.runtime.database import migrate_schema

    config = settings.model_copy(update={"db_schema": schema})
    await migrate_schema(config, [MIGRATIONS])
    pool = await asyncpg.create_pool(settings.database_url, server_settings={"search_path": schema})
    assert pool is not None

    async def run() -> None:
        try:
            await fair_loop(settings, pool, source, sink, expected)
        finally:
            await pool.close()

    return asyncio.create_task(run())
