"""Outbox relay: publishes a service's outbox to Kafka exactly once, in order.

One relay per outbox is active at a time: a Postgres advisory lock elects it,
and the election bumps an **epoch** in ``relay_leadership`` that every claim
and every mark names. A relay that lost its lock without noticing (its session
was killed, the database failed over) finds the epoch moved on: its next claim
claims nothing and its next mark marks nothing, and it stops. Each batch goes
out in one Kafka transaction that also commits ``batch + 1`` as the offset of
a checkpoint partition for the group ``outbox-relay.<database>.<schema>``
(also the transactional id, so a new relay's ``init_transactions`` fences the
old one's producer), with the outbox's **identity** as the offset's metadata:

1. claim: unclaimed rows get the next batch number; the previous batch's rows
   are marked published in the same statement (one round trip per batch);
2. publish: one Kafka transaction = the batch's records + the checkpoint. While
   it runs, the next batch is claimed (marking the batch before it, committed),
   so under a backlog the claim costs no time of its own.

A crash between 1 and 2 aborts the Kafka transaction (the next relay's
``init_transactions`` fences and aborts it; read_committed consumers never see
it) and the batch is published again. A crash after 2 leaves the checkpoint
ahead of the marks; at start the successor marks those rows without sending
them again. A checkpoint whose identity is not this outbox's (the schema was
created again, or restored from elsewhere) proves nothing about these rows:
unmarked claimed rows are published again (consumers' inboxes drop the
copies), never marked on its word. And batch numbers are moved past the
checkpoint, so a lagging restored copy can't reuse numbers Kafka already saw.
So every row is published, once, in id order per key, and each record's trace
continues from the span that wrote its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.producer.message_accumulator import BatchBuilder
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from contracts.registry import OUTBOX_CHECKPOINT_TOPIC, is_feed_topic, relay_transactional_id
from services.runtime import timers
from services.runtime.errors import TRANSIENT_ERRORS
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.notify import listening
from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import stored_span_context

log = logging.getLogger(__name__)

CHECKPOINT_TOPIC = OUTBOX_CHECKPOINT_TOPIC
# Above the largest record a consumer accepts (max_message_bytes) plus a dead
# letter's headers: a DLQ copy of any record the broker accepted must fit.
MAX_REQUEST_BYTES = 2_200_000
MAX_BATCH_BYTES = 1_048_576
# After EndTxn the coordinator still writes the markers (the offsets' marker waits on
# the group coordinator's 5 ms append linger); a transaction begun meanwhile is
# answered CONCURRENT_TRANSACTIONS. aiokafka retries its first AddPartitionsToTxn
# after a fixed 20 ms (``BACKOFF_OVERRIDE``, process-wide, for transactional
# producers only): at 2 ms a paced record waits for the markers, not 20 ms past them.
CONCURRENT_TXN_RETRY_S = 0.002
aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TXN_RETRY_S

if TYPE_CHECKING:
    from services.runtime.database import Pool


class LeadershipLost(RuntimeError):
    """Another relay was elected since this one: stop publishing."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, str]
    traceparent: str | None
    tracestate: str | None


@dataclass(frozen=True)
class Leadership:
    epoch: int
    identity: UUID


# One round trip per batch: mark the previous batch, claim the next, both only
# while this relay's epoch is the current one (FOR SHARE: an election waits for
# a claim in flight, and a claim after the election sees the new epoch).
_CLAIM = """
WITH leader AS (
    SELECT epoch FROM relay_leadership WHERE epoch = $1 FOR SHARE
), marked AS (
    UPDATE outbox SET published_at = now()
    WHERE batch = $2 AND published_at IS NULL AND EXISTS (SELECT 1 FROM leader)
    RETURNING 1
), next AS (
    SELECT nextval('outbox_batch_seq') AS batch
), claimed AS (
    UPDATE outbox SET batch = (SELECT batch FROM next)
    WHERE id IN (
        SELECT id FROM outbox
        WHERE published_at IS NULL AND batch IS NULL
        ORDER BY id LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AND EXISTS (SELECT 1 FROM leader)
    RETURNING id, topic, key, payload, headers, traceparent, tracestate, batch
)
SELECT (SELECT count(*) FROM marked) AS marked, (SELECT count(*) FROM leader) AS leading,
       c.id, c.topic, c.key, c.payload, c.headers, c.traceparent, c.tracestate, c.batch
FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true
"""

# Claimed rows for a topic that cannot be delivered leave the outbox in one statement.
_PARK = """
WITH moved AS (
    DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND published_at IS NULL
    RETURNING id, topic, key, event_id, event_type, payload, headers, traceparent,
              tracestate, created_at
), parked AS (
    INSERT INTO outbox_parked (id, topic, key, event_id, event_type, payload, headers,
                               traceparent, tracestate, created_at, reason)
    SELECT id, topic, key, event_id, event_type, payload, headers, traceparent, tracestate,
           created_at, $2
    FROM moved
    RETURNING 1
)
SELECT count(*) FROM parked
"""


class OutboxRelay:
    def __init__(
        self,
        settings: RuntimeSettings,
        pool: Pool,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = settings.db_schema
        # Transactional id and checkpoint group name the outbox (database and
        # schema), not the process: two outboxes must never share a checkpoint,
        # and every relay of one outbox must fence the others. Set at election.
        self.group = ""
        # The deployment's checkpoint partition (its topic carries the Kafka prefix).
        self.checkpoint = TopicPartition(settings.topic(CHECKPOINT_TOPIC), 0)
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.parked = 0
        self._deliverable: set[str] = set()  # feed topics the broker said exist for us
        self._partitioner = KeyPartitioner()
        self.leading = asyncio.Event()

    # lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay:{self.schema}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # e.g. aborting a transaction a successor fenced
                log.warning("outbox relay stopped with an error", exc_info=True)
            self._task = None

    async def run(self) -> None:
        """Wait to be elected, then publish until stopped. Restarts after errors."""
        while not self._stopping.is_set():
            try:
                await self._run_elected()
            except asyncio.CancelledError:
                raise
            except LeadershipLost as lost:
                log.warning("outbox relay: %s; standing for election again", lost)
            except TRANSIENT_ERRORS:
                # The database restarting, crashed or failing over (the pool's connections
                # died with it): the infrastructure's fault, not a defect. Stand for election
                # again once it answers; the traceback says where it struck.
                log.warning(
                    "outbox relay: a connection was lost (a database restart?); again in %s s",
                    self.settings.transient_retry_s,
                    exc_info=True,
                )
                await asyncio.sleep(self.settings.transient_retry_s)
            except Exception:
                log.exception("outbox relay failed; restarting in 1 s")
                await asyncio.sleep(1.0)
            finally:
                self.leading.clear()

    # election ----------------------------------------------------------------
    async def _run_elected(self) -> None:
        lock = await self.pool.acquire()
        lock_key = election_key(self.schema)
        try:
            # A replica waits its turn (stop() cancels the wait).
            while not await lock.fetchval(  # noqa: ASYNC110
                "SELECT pg_try_advisory_lock(hashtext($1))", lock_key
            ):
                await asyncio.sleep(self.settings.relay_poll_interval_s)
            leadership = await self._elect(lock)
            database = await lock.fetchval("SELECT current_database()")
            self.group = self.settings.topic(relay_transactional_id(database, self.schema))
            try:
                await self._publish_loop(leadership, lock)
            finally:
                with contextlib.suppress(Exception):
                    await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(lock)

    async def _elect(self, conn: Any) -> Leadership:
        row = await conn.fetchrow(
            """UPDATE relay_leadership SET epoch = epoch + 1, leader = $1, elected_at = now()
               RETURNING epoch, identity""",
            self.me,
        )
        log.info("outbox relay of %s elected (epoch %s)", self.schema, row["epoch"])
        return Leadership(row["epoch"], row["identity"])

    # publishing --------------------------------------------------------------
    async def _publish_loop(self, leadership: Leadership, lock: Any) -> None:
        producer = AIOKafkaProducer(
            **self.settings.kafka_options(),
            client_id=f"{self.settings.service_name}-relay",
            transactional_id=self.group,  # a new relay fences its predecessor
            enable_idempotence=True,
            acks="all",
            max_request_size=MAX_REQUEST_BYTES,
            linger_ms=0,
            # One produce request per partition per transaction (the default, 16 KiB,
            # split a 500-row batch into dozens).
            max_batch_size=MAX_BATCH_BYTES,
            # A transaction begun while the previous one completes is answered
            # CONCURRENT_TRANSACTIONS and retried after this backoff (aiokafka's default,
            # 100 ms, was most of an idle hop's latency: benchmarks/RESULTS.md); its
            # first AddPartitionsToTxn retries after CONCURRENT_TXN_RETRY_S instead.
            retry_backoff_ms=10,
            # The first produce to a feed created after this producer started (a tenant
            # registered meanwhile) can be answered NOT_LEADER until the request times
            # out; failing sooner aborts the transaction and the successor resends.
            request_timeout_ms=15_000,
        )
        try:
            # init_transactions: aborts what a killed relay left open. It can fail (the
            # broker restarting, the id refused) after the client connected: the finally
            # closes this producer either way, or each restart would leak one.
            await producer.start()
            async with listening(self.pool, f"{self.schema}_outbox") as wakeup:
                await self._reconcile(leadership)
                self.leading.set()
                await self._relay(producer, leadership, lock, wakeup)
        finally:
            await producer.stop()

    async def _relay(
        self, producer: AIOKafkaProducer, leadership: Leadership, lock: Any, wakeup: Any
    ) -> None:
        pending: tuple[int, int] | None = None  # (batch, rows) sent, not yet marked
        ahead: tuple[int, list[OutboxRow]] | None = None  # claimed while the last one sent
        loop = asyncio.get_running_loop()
        pruned_at = 0.0
        while not self._stopping.is_set():
            if lock.is_closed():
                raise LeadershipLost("the connection holding the election lock was lost")
            if ahead is not None and ahead[1]:
                batch, rows = ahead
            else:  # nothing claimed ahead: claim now, marking the batch just sent
                batch, rows = await self._claim(leadership, pending)
                pending = None
            ahead = None
            if rows:
                rows = await self._park_undeliverable(rows)
                if rows:  # (all parked: nothing of this batch to mark)
                    ahead = await self._send_claiming_ahead(
                        producer, batch, rows, leadership, pending
                    )
                    pending = (batch, len(rows))
                self.published += len(rows)
                continue
            if loop.time() - pruned_at > self.settings.prune_interval_s:
                await self.prune()
                pruned_at = loop.time()
            await wakeup.wait(self.settings.relay_poll_interval_s)

    async def _claim(
        self, leadership: Leadership, pending: tuple[int, int] | None
    ) -> tuple[int, list[OutboxRow]]:
        """Mark ``pending`` published and claim the next batch, fenced by the epoch."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(
                _CLAIM,
                leadership.epoch,
                pending[0] if pending else None,
                self.settings.relay_batch_size,
            )
        head = records[0]
        if not head["leading"]:
            raise LeadershipLost(f"epoch {leadership.epoch} is no longer the current one")
        if pending is not None and head["marked"] != pending[1]:
            raise LeadershipLost(
                f"batch {pending[0]}: marked {head['marked']} of {pending[1]} rows"
            )
        rows = sorted(
            (
                OutboxRow(
                    id=r["id"],
                    topic=r["topic"],
                    key=r["key"],
                    payload=r["payload"],
                    headers=json.loads(r["headers"]),
                    traceparent=r["traceparent"],
                    tracestate=r["tracestate"],
                )
                for r in records
                if r["id"] is not None
            ),
            key=lambda row: row.id,
        )
        return (records[0]["batch"] or 0), rows

    async def _park_undeliverable(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """``rows`` without those for a tenant feed the broker says it cannot take
        (unknown topic, or no ACL for it: a tenant never provisioned, or removed with its
        feeds), which move to ``outbox_parked``: one tenant's missing feed must not stop
        the outbox for everyone. Registry topics are never parked: a missing one stops
        the relay (and says so) until ops create it. Broker errors raise, parking nothing."""
        unchecked = {
            row.topic
            for row in rows
            if row.topic not in self._deliverable
            and is_feed_topic(row.topic.removeprefix(self.settings.topic_prefix))
        }
        if not unchecked:
            return rows
        async with KafkaAdmin(self.settings) as admin:
            access = await admin.topic_access(unchecked)
        refused: dict[str, str] = {}
        for topic in unchecked:
            answer = access.get(topic)
            if answer is None or answer.error is not None:
                refused[topic] = (
                    answer.error if answer is not None and answer.error else "no answer"
                )
        self._deliverable |= unchecked - refused.keys()
        parked = [row.id for row in rows if row.topic in refused]
        if not parked:
            return rows
        async with self.pool.acquire() as conn:
            for topic, error in sorted(refused.items()):
                moved = await conn.fetchval(_PARK, [r.id for r in rows if r.topic == topic], error)
                log.error(
                    "parked %d outbox rows for %s (%s): requeue them once the feed exists "
                    "(python -m services.runtime.outbox requeue --schema %s --topic %s)",
                    moved,
                    topic,
                    error,
                    self.schema,
                    topic,
                )
        self.parked += len(parked)
        return [row for row in rows if row.topic not in refused]

    async def _send_claiming_ahead(
        self,
        producer: AIOKafkaProducer,
        batch: int,
        rows: list[OutboxRow],
        leadership: Leadership,
        pending: tuple[int, int] | None,
    ) -> tuple[int, list[OutboxRow]]:
        """Publish ``batch`` while the next batch is claimed (the claim marks
        ``pending``, whose transaction committed before this one began), so the claim's
        round trip overlaps the Kafka transaction instead of following it.

        Transactions stay one at a time and in id order (the next begins once this one
        committed); the claim names this relay's epoch as every claim does; a crash
        leaves the claimed-ahead rows unmarked, which the successor's reconciliation
        publishes again, as it does a batch claimed and not sent."""
        claiming = asyncio.create_task(self._claim(leadership, pending))
        try:
            await self._send(producer, batch, rows, leadership)
        except BaseException:
            claiming.cancel()
            with contextlib.suppress(BaseException):
                await claiming
            raise
        return await claiming

    async def _send(
        self, producer: AIOKafkaProducer, batch: int, rows: list[OutboxRow], leadership: Leadership
    ) -> None:
        with self._publish_span(batch, rows):
            async with producer.transaction():
                records = await self._records(producer, rows)
                futures = [await self._send_batch(producer, tp, b) for tp, b in records]
                # Every batch must be acknowledged before the commit: aiokafka fails a
                # batch that expired on a retriable error (NotLeaderForPartition after a
                # request timeout) without failing the transaction, so a commit after it
                # would mark rows published that Kafka never took. A failure here aborts.
                await asyncio.gather(
                    producer.send_offsets_to_transaction(
                        {self.checkpoint: (batch + 1, str(leadership.identity))}, self.group
                    ),
                    *futures,
                )

    def _publish_span(self, batch: int, rows: list[OutboxRow]) -> AbstractContextManager[Span]:
        """One PRODUCER span for the Kafka transaction, linked to each record's creation
        context (the span that wrote its row), as OpenTelemetry's messaging conventions
        have a batch send. A span per record cost about a fifth of a traced hop's CPU.
        Each record carries its creation context, so the consumer's span is a child of
        the producing handler's and the submission's trace runs on unbroken; the
        transaction is a trace of its own, sampled when any record it links is
        (telemetry.FollowLinks)."""
        topics = sorted({row.topic for row in rows})
        links = [
            Link(
                context,
                {"messaging.destination.name": row.topic, "frontier_review.outbox.id": row.id},
            )
            for row in rows
            if (context := stored_span_context(row.traceparent, row.tracestate)) is not None
        ]
        return self.tracer.start_as_current_span(
            f"{topics[0] if len(topics) == 1 else 'outbox'} publish",
            context=otel_context.Context(),  # a root: the batch belongs to no one trace
            kind=SpanKind.PRODUCER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(rows),
                "frontier_review.outbox.batch": batch,
                # (a batch to several topics names them in its links only)
                **({"messaging.destination.name": topics[0]} if len(topics) == 1 else {}),
            },
        )

    async def _records(
        self, producer: AIOKafkaProducer, rows: list[OutboxRow]
    ) -> list[tuple[TopicPartition, BatchBuilder]]:
        """The rows as record batches, one per partition (more where a partition's rows
        pass ``MAX_BATCH_BYTES``), each in id order: the order per key is the outbox's.
        Built here rather than record by record through ``producer.send``, whose future,
        metadata wait and accumulator step per record were most of the relay's cost."""
        topics = {row.topic for row in rows}
        partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in topics}
        open_batches: dict[TopicPartition, BatchBuilder] = {}
        batches: list[tuple[TopicPartition, BatchBuilder]] = []
        for row in rows:
            tp = TopicPartition(row.topic, self._partitioner.of(row, partitions[row.topic]))
            record = {
                "timestamp": None,
                "key": row.key,
                "value": row.payload,
                "headers": [(k, v.encode()) for k, v in self._headers(row).items()],
            }
            builder = open_batches.get(tp)
            if builder is None or builder.append(**record) is None:
                # A fresh batch takes its first record whatever its size (the request
                # limit, MAX_REQUEST_BYTES, is above the largest record a topic accepts).
                builder = open_batches[tp] = producer.create_batch()
                builder.append(**record)
                batches.append((tp, builder))
        return batches

    async def _send_batch(
        self, producer: AIOKafkaProducer, tp: TopicPartition, builder: BatchBuilder
    ) -> asyncio.Future[Any]:
        """Queue one partition's batch in the open transaction; the future is its ack."""
        return await producer.send_batch(builder, tp.topic, partition=tp.partition)  # type: ignore[no-any-return]

    def _headers(self, row: OutboxRow) -> dict[str, str]:
        """The row's headers and the trace context of the span that wrote it."""
        carrier = dict(row.headers)
        if row.traceparent:
            carrier["traceparent"] = row.traceparent
            if row.tracestate:
                carrier["tracestate"] = row.tracestate
        return carrier

    # recovery ------------------------------------------------------------------
    async def _committed_checkpoint(self) -> tuple[int, str]:
        admin = AIOKafkaAdminClient(**self.settings.kafka_options())
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.group, partitions=[self.checkpoint]
            )
        finally:
            await admin.close()
        meta = offsets.get(self.checkpoint)
        if meta is None or meta.offset < 0:
            return 0, ""
        return meta.offset, meta.metadata or ""

    async def _reconcile(self, leadership: Leadership) -> None:
        """Settle what a previous relay left between publish and mark."""
        committed, identity = await self._committed_checkpoint()
        ours = identity == str(leadership.identity)
        if committed and not ours:
            log.warning(
                "outbox relay of %s: the checkpoint (batch %s) was left by another incarnation "
                "of this outbox (identity %r); claimed rows are published again",
                self.schema,
                committed,
                identity,
            )
        async with self.pool.acquire() as conn, conn.transaction():
            marked = "UPDATE 0"
            if ours:
                marked = await conn.execute(
                    """UPDATE outbox SET published_at = now()
                       WHERE published_at IS NULL AND batch < $1""",
                    committed,
                )
            await conn.execute(
                "UPDATE outbox SET batch = NULL WHERE published_at IS NULL AND batch IS NOT NULL"
            )
            # Batch numbers only grow past anything Kafka has seen from this group.
            await conn.execute(
                """SELECT setval('outbox_batch_seq', $1)
                   WHERE $1 > (SELECT last_value FROM outbox_batch_seq)""",
                committed,
            )
        if marked != "UPDATE 0":
            log.info(
                "outbox relay: %s rows were already published (checkpoint %s)", marked, committed
            )

    async def prune(self) -> None:
        """Forget what can no longer matter, so the runtime tables stay bounded.

        Published outbox rows are kept a while for inspection. Inbox rows (and
        ended timers, which a redelivery could otherwise schedule again) must
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
            await timers.prune(conn, self.settings.inbox_keep_days)


class KeyPartitioner:
    """The partition of a row's key: aiokafka's default partitioner (murmur2, the Java
    client's, so every producer of a topic agrees), remembered per topic, partition
    count and key (keys repeat: one per submission or model); a keyless row goes to a
    random partition."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._partition = DefaultPartitioner()
        self._known: dict[tuple[str, int, bytes], int] = {}

    def of(self, row: OutboxRow, ordered: list[int]) -> int:
        """``ordered``: the topic's partitions, sorted."""
        if row.key is None:
            return int(self._partition(None, ordered, ordered))
        known = (row.topic, len(ordered), row.key)
        partition = self._known.get(known)
        if partition is None:
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            partition = self._known[known] = int(self._partition(row.key, ordered, ordered))
        return partition


def election_key(schema: str) -> str:
    """The advisory lock whose holder is the relay of ``schema``'s outbox."""
    return f"outbox-relay:{schema}"


async def leader_elected(conn: Any, schema: str) -> bool:
    """Whether some session (any replica's relay) holds ``schema``'s election lock: a
    bigint advisory lock shows its high half as classid, its low half as objid."""
    held = await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
                 AND objid = (hashtext($1)::bigint & 4294967295)::oid)""",
        election_key(schema),
    )
    return bool(held)


def main() -> None:
    """``python -m services.runtime.relay``: only the relay of one service's outbox
    (FR_SERVICE_NAME, FR_DB_SCHEMA), with the same lifecycle as a service."""
    from services.runtime.service import Service

    Service(RuntimeSettings()).run()


if __name__ == "__main__":
    main()
