"""Outbox relay: publishes a service's outbox to Kafka exactly once, in order.

One relay per service is active at a time (a Postgres advisory lock elects it;
replicas wait). Each batch goes out in one Kafka transaction that also commits
the batch number as the offset of a checkpoint partition for the group
``outbox-relay.<database>.<schema>`` (also the transactional id):

1. claim: rows get the next batch number (Postgres commit);
2. publish: one Kafka transaction = the batch's records + checkpoint ``batch+1``;
3. mark: the batch's rows get ``published_at`` (Postgres commit).

A crash between 1 and 2 aborts the Kafka transaction (the next relay's
init_transactions fences it; read_committed consumers never see it) and the
batch is published again. A crash between 2 and 3 leaves the checkpoint
ahead of the marks; at start the relay marks those rows without sending them
again. So every row is published once, in id order per key, and the trace of
the span that wrote the row continues in the publish span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import attach_trace, current_trace_headers, detach_trace

log = logging.getLogger(__name__)

CHECKPOINT_TOPIC = "frontier-review.outbox-checkpoints"
CHECKPOINT = TopicPartition(CHECKPOINT_TOPIC, 0)

if TYPE_CHECKING:
    from services.runtime.database import Pool


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, str]
    traceparent: str | None
    tracestate: str | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> OutboxRow:
        return cls(
            id=record["id"],
            topic=record["topic"],
            key=record["key"],
            payload=record["payload"],
            headers=json.loads(record["headers"]),
            traceparent=record["traceparent"],
            tracestate=record["tracestate"],
        )


class OutboxRelay:
    def __init__(
        self,
        settings: RuntimeSettings,
        pool: Pool,
        schema: str,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = schema
        # Transactional id and checkpoint group name the outbox (database and
        # schema), not the process: two outboxes must never share a checkpoint,
        # and every relay of one outbox must fence the others. Set at election.
        self.group = ""
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    # lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay:{self.schema}")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Wait to be elected, then publish until stopped. Restarts after errors."""
        while not self._stopping.is_set():
            try:
                await self._run_elected()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; restarting in 1 s")
                await self._sleep(1.0)

    # internals -------------------------------------------------------------
    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _run_elected(self) -> None:
        listener = await self.pool.acquire()
        try:
            lock_key = f"outbox-relay:{self.schema}"
            while not await listener.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", lock_key
            ):
                await self._sleep(self.settings.relay_poll_interval_s)
                if self._stopping.is_set():
                    return
            database = await listener.fetchval("SELECT current_database()")
            self.group = f"outbox-relay.{database}.{self.schema}"
            channel = f"{self.schema}_outbox"
            await listener.add_listener(channel, self._notified)
            try:
                await self._publish_loop()
            finally:
                await listener.remove_listener(channel, self._notified)
                await listener.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
        finally:
            await self.pool.release(listener)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _publish_loop(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.service_name}-relay",
            transactional_id=self.group,  # a restarted relay fences its predecessor
            enable_idempotence=True,
            acks="all",
            max_request_size=max(1_048_576, self.settings.max_message_bytes + 65_536),
        )
        await producer.start()  # init_transactions: aborts what a killed relay left open
        try:
            await self._reconcile()
            pruned_at = 0.0
            loop = asyncio.get_running_loop()
            while not self._stopping.is_set():
                rows = await self._claim_batch()
                if not rows:
                    if loop.time() - pruned_at > self.settings.prune_interval_s:
                        await self.prune()
                        pruned_at = loop.time()
                    await self._sleep(self.settings.relay_poll_interval_s)
                    continue
                batch, records = rows
                await self._send(producer, batch, records)
                await self._mark(batch)
                self.published += len(records)
        finally:
            await producer.stop()

    async def prune(self) -> None:
        """Forget what can no longer matter, so the runtime tables stay bounded.

        Published outbox rows are kept a while for inspection. Inbox rows must
        outlive every record that could still be redelivered, i.e. the longest
        topic retention, or a replay from the earliest offset would apply twice.
        """
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM outbox WHERE published_at < now() - make_interval(days => $1)",
                self.settings.outbox_keep_days,
            )
            await conn.execute(
                "DELETE FROM inbox WHERE received_at < now() - make_interval(days => $1)",
                self.settings.inbox_keep_days,
            )

    async def _committed_batch(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group, partitions=[CHECKPOINT])
        finally:
            await admin.close()
        meta = offsets.get(CHECKPOINT)
        return meta.offset if meta is not None and meta.offset >= 0 else 0

    async def _reconcile(self) -> None:
        """Settle batches a previous relay left between publish and mark."""
        committed = await self._committed_batch()
        async with self.pool.acquire() as conn, conn.transaction():
            marked = await conn.execute(
                """UPDATE outbox SET published_at = now()
                   WHERE published_at IS NULL AND batch < $1""",
                committed,
            )
            await conn.execute(
                "UPDATE outbox SET batch = NULL WHERE published_at IS NULL AND batch >= $1",
                committed,
            )
        if marked != "UPDATE 0":
            log.info(
                "outbox relay: %s rows were already published (checkpoint %s)", marked, committed
            )

    async def _claim_batch(self) -> tuple[int, list[OutboxRow]] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                """SELECT id, topic, key, payload, headers, traceparent, tracestate
                   FROM outbox WHERE published_at IS NULL
                   ORDER BY id LIMIT $1""",
                self.settings.relay_batch_size,
            )
            if not records:
                return None
            batch: int = await conn.fetchval("SELECT nextval('outbox_batch_seq')")
            await conn.execute(
                "UPDATE outbox SET batch = $1 WHERE id = ANY($2::bigint[])",
                batch,
                [r["id"] for r in records],
            )
        return batch, [OutboxRow.from_record(r) for r in records]

    async def _send(self, producer: AIOKafkaProducer, batch: int, rows: list[OutboxRow]) -> None:
        async with producer.transaction():
            futures = []
            for row in rows:
                futures.append(await self._send_one(producer, row))
            await producer.send_offsets_to_transaction({CHECKPOINT: batch + 1}, self.group)
        # The transaction committed: every send is acknowledged. Surface any error.
        await asyncio.gather(*futures)

    async def _send_one(self, producer: AIOKafkaProducer, row: OutboxRow) -> asyncio.Future[Any]:
        token = attach_trace({"traceparent": row.traceparent, "tracestate": row.tracestate})
        try:
            with self.tracer.start_as_current_span(
                f"{row.topic} publish",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "publish",
                    "messaging.destination.name": row.topic,
                    "messaging.kafka.message.key": (row.key or b"").decode(errors="replace"),
                    "frontier_review.outbox.id": row.id,
                },
            ):
                headers = {**row.headers, **current_trace_headers()}
                return await producer.send(  # type: ignore[no-any-return]
                    row.topic,
                    value=row.payload,
                    key=row.key,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
        finally:
            detach_trace(token)

    async def _mark(self, batch: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE batch = $1 AND published_at IS NULL",
                batch,
            )


async def run_standalone(settings: RuntimeSettings, schema: str) -> None:
    """Run only the relay of one service schema until SIGTERM/SIGINT."""
    import signal

    from services.runtime.database import create_pool
    from services.runtime.telemetry import build_tracer_provider

    provider = build_tracer_provider(settings)
    pool = await create_pool(settings, schema)
    relay = OutboxRelay(settings, pool, schema, provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relay.start()
    await stop.wait()
    await relay.stop()
    await pool.close()
    provider.shutdown()


if __name__ == "__main__":
    import os
    import sys

    from services.runtime.telemetry import configure_logging

    if "FR_DB_SCHEMA" not in os.environ:
        sys.exit(
            "usage: FR_SERVICE_NAME=<name> FR_DB_SCHEMA=<schema> python -m services.runtime.relay"
        )
    _settings = RuntimeSettings()
    configure_logging(_settings)
    asyncio.run(run_standalone(_settings, os.environ["FR_DB_SCHEMA"]))
