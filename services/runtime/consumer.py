"""Consuming with exactly-once effects: decode, inbox, handler, outbox, then offset.

A record is applied in one Postgres transaction (inbox claim + the handler's
state change + its outbox rows). The subscriber's ack policy commits the
Kafka offset only after the handler returns, i.e. after that transaction
committed. What can't be applied gets a clear answer instead of a retry loop:

* bytes that are too large, not JSON, not a CloudEvent, or not an event of
  this topic -> the service's ``on_invalid`` hook (e.g. a rejection event the
  sender can read), else ``<topic>.dlq``;
* a handler that keeps failing -> retried ``handler_max_attempts`` times with
  backoff, then ``<topic>.dlq``; the partition moves on;
* the database or broker being unreachable -> not the record's fault: the
  record is not acknowledged and comes back (nothing is lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from contracts import CloudEvent, ContractViolation, Event, decode
from services.runtime import inbox
from services.runtime.deadletter import send_to_dlq
from services.runtime.errors import PermanentError as PermanentError  # re-exported
from services.runtime.outbox import Outbox
from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import attach_trace, detach_trace

log = logging.getLogger(__name__)

# Failures of the infrastructure, not of the record: retry the record forever.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # Concurrency conflicts: the same record succeeds when tried again.
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

if TYPE_CHECKING:
    from services.runtime.database import Connection, Pool


class _RunFailed(Exception):
    """Rolls back a batch run whose handler failed on one record."""


@dataclass(frozen=True)
class RecordOrigin:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Mapping[str, bytes]


@dataclass(frozen=True)
class Delivery:
    """One decoded event, handed to a domain handler inside its transaction."""

    event: CloudEvent[Event]
    conn: Connection
    outbox: Outbox
    origin: RecordOrigin
    raw: bytes  # the record value as sent: signatures are verified over it, not a re-dump


@dataclass(frozen=True)
class InvalidRecord:
    """Bytes that are not a valid event of the topic, for the ``on_invalid`` hook."""

    raw: bytes
    violation: ContractViolation
    conn: Connection
    outbox: Outbox
    origin: RecordOrigin


Handler = Callable[[Delivery], Awaitable[None]]
InvalidHandler = Callable[[InvalidRecord], Awaitable[bool]]
PoolProvider = Callable[[], "Pool"]


class EventConsumer:
    """Applies the records of one topic with one handler, for one consumer group."""

    def __init__(
        self,
        *,
        name: str,
        topic: str,
        event_types: Mapping[str, type[Event]],
        handler: Handler,
        pool: PoolProvider,
        broker: KafkaBroker,
        settings: RuntimeSettings,
        source: str,
        on_invalid: InvalidHandler | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.event_types = dict(event_types)
        self.handler = handler
        self.pool = pool
        self.broker = broker
        self.settings = settings
        self.source = source
        self.on_invalid = on_invalid
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    def subscribe(self) -> None:
        """Register: batches, offsets committed after the handler, read_committed."""
        from faststream import AckPolicy

        consumer = self

        async def consume(msg: KafkaMessage) -> None:
            records = msg.raw_message
            await consumer.process_batch(records if isinstance(records, tuple) else (records,))

        async def undecoded(msg: Any) -> Any:
            # The runtime decodes, and answers or dead-letters what it can't;
            # FastStream must not json-parse the body first (a parse error there
            # would nack the record forever and stall its partition).
            return msg.body

        consume.__name__ = self.name.replace("-", "_").replace(".", "_")
        self.broker.subscriber(
            self.topic,
            group_id=self.name,
            batch=True,
            max_records=self.settings.consumer_batch_size,
            decoder=undecoded,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # never see an aborted relay batch
            max_partition_fetch_bytes=max(1_048_576, self.settings.max_message_bytes * 2),
            title=f"{self.name}:{self.topic}",
            description=f"Consumes {', '.join(sorted(self.event_types))}.",
        )(consume)

    async def process_batch(self, records: Sequence[Any]) -> None:
        """Apply a fetched batch as if one by one, in order, but with few commits.

        Records are applied in one transaction until the first one that is
        invalid or fails: what came before it commits, it takes the one-record
        path (retries, answer or DLQ), and the rest starts a new run. Order and
        effects are those of one-by-one processing; a Postgres commit (an fsync)
        is paid per run, not per record.
        """
        done = 0
        while done < len(records):
            applied, failure = await self._apply_run(records[done:])
            done += applied
            if done < len(records):
                await self.process(records[done], failure)
                done += 1

    async def _apply_run(self, records: Sequence[Any]) -> tuple[int, Exception | None]:
        """Apply records until the first that needs the one-record path.

        Returns how many were applied, and the handler's error on the next
        record if it ran (so that attempt counts, and a PermanentError stands).
        Optimistic: no savepoint per record (two round trips each); when a
        handler fails, the run rolls back and its good prefix is applied again.
        """
        stop, failure = len(records), None
        async with self.pool().acquire() as conn:
            try:
                async with conn.transaction():
                    for position, record in enumerate(records):
                        raw: bytes = record.value or b""
                        with self._span(record):
                            try:
                                event = self._decode(raw)
                            except ContractViolation:
                                stop = position
                                break  # commit what came before
                            try:
                                await self._claim_and_handle(conn, event, _origin(record), raw)
                            except TRANSIENT_ERRORS:
                                raise
                            except Exception as exc:
                                stop, failure = position, exc
                                raise _RunFailed from exc
            except _RunFailed:
                if stop == 0:
                    return 0, failure
                applied, again = await self._apply_run(records[:stop])
                return (applied, again) if applied < stop else (stop, failure)
        return stop, None

    async def process(self, record: Any, failure: Exception | None = None) -> None:
        """One record: apply with retries, or answer / dead-letter it."""
        origin = _origin(record)
        raw: bytes = record.value or b""
        with self._span(record):
            try:
                event = self._decode(raw)
            except ContractViolation as violation:
                await self._invalid(record, raw, violation, origin)
                return
            await self._apply(record, raw, event, origin, failure)

    def _decode(self, raw: bytes) -> CloudEvent[Event]:
        if len(raw) > self.settings.max_message_bytes:
            raise ContractViolation(
                "oversized", f"{len(raw)} bytes > limit {self.settings.max_message_bytes}"
            )
        return decode(raw, self.event_types)

    async def _claim_and_handle(
        self, conn: Connection, event: CloudEvent[Event], origin: RecordOrigin, raw: bytes
    ) -> None:
        fresh = await inbox.claim(
            conn,
            consumer=self.name,
            event_id=event.id,
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            value=raw,
        )
        if fresh:
            await self.handler(Delivery(event, conn, Outbox(conn, self.source), origin, raw))
        else:
            log.info("duplicate event ignored", extra={"event_id": event.id})

    @contextmanager
    def _span(self, record: Any) -> Iterator[None]:
        """A consume span per record, continuing the trace its producer sent along.

        The broker's telemetry middleware traces the fetched batch; each record
        belongs to its own submission's trace, which its outbox rows carry on.
        """
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        token = attach_trace(headers)
        try:
            with self.tracer.start_as_current_span(
                f"{record.topic} process",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self.name,
                    "messaging.kafka.destination.partition": record.partition,
                    "messaging.kafka.message.offset": record.offset,
                },
            ):
                yield
        finally:
            detach_trace(token)

    async def _apply(
        self,
        record: Any,
        raw: bytes,
        event: CloudEvent[Event],
        origin: RecordOrigin,
        failure: Exception | None = None,
    ) -> None:
        extra = {
            "topic": origin.topic,
            "offset": origin.offset,
            "event_id": event.id,
            "event_type": event.type,
        }
        error = failure  # from the batch attempt, if the handler ran there
        attempt = 0 if failure is None else 1
        while attempt < self.settings.handler_max_attempts and not isinstance(
            error, PermanentError
        ):
            attempt += 1
            try:
                async with self.pool().acquire() as conn, conn.transaction():
                    await self._claim_and_handle(conn, event, origin, raw)
                return
            except TRANSIENT_ERRORS:
                log.warning("infrastructure error; record will be redelivered", extra=extra)
                await asyncio.sleep(self.settings.handler_retry_backoff_s * 5)
                raise
            except Exception as exc:  # PermanentError included: the loop stops on it
                error = exc
                if isinstance(exc, PermanentError):
                    break
                log.warning("handler failed (attempt %d)", attempt, exc_info=True, extra=extra)
                await asyncio.sleep(self.settings.handler_retry_backoff_s * 2 ** (attempt - 1))
        reason = error.reason if isinstance(error, PermanentError) else "handler_failed"
        await send_to_dlq(
            self.broker,
            record,
            reason=reason,
            error=f"{type(error).__name__}: {error}",
            consumer=self.name,
            attempts=attempt,
        )
        log.error("event dead-lettered: %s", error, extra=extra)

    async def _invalid(
        self, record: Any, raw: bytes, violation: ContractViolation, origin: RecordOrigin
    ) -> None:
        if self.on_invalid is not None and await self._answer_invalid(raw, violation, origin):
            return
        await send_to_dlq(
            self.broker,
            record,
            reason=violation.reason,
            error=violation.detail,
            consumer=self.name,
        )
        log.warning(
            "invalid record dead-lettered: %s",
            violation,
            extra={"topic": origin.topic, "offset": origin.offset},
        )

    async def _answer_invalid(
        self, raw: bytes, violation: ContractViolation, origin: RecordOrigin
    ) -> bool:
        """Let the service answer the sender; True when it did (now or on an earlier delivery)."""
        assert self.on_invalid is not None
        # Keyed by position: an invalid record has no event id we can trust.
        position = f"{origin.topic}/{origin.partition}/{origin.offset}"
        async with self.pool().acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                fresh = await inbox.claim(
                    conn,
                    consumer=self.name,
                    event_id=position,
                    topic=origin.topic,
                    partition=origin.partition,
                    offset=origin.offset,
                    value=raw,
                )
                answered = not fresh or await self.on_invalid(
                    InvalidRecord(raw, violation, conn, Outbox(conn, self.source), origin)
                )
            except TRANSIENT_ERRORS:
                await transaction.rollback()
                raise
            except Exception:
                # The hook itself failed on this record: it can't be answered,
                # but it must not stall the partition either. To the DLQ.
                log.exception("on_invalid failed; the record goes to the DLQ")
                await transaction.rollback()
                return False
            except BaseException:
                await transaction.rollback()
                raise
            # Not answered: roll the claim back so a redelivery takes the DLQ path again.
            await (transaction.commit() if answered else transaction.rollback())
            return answered


def _origin(record: Any) -> RecordOrigin:
    return RecordOrigin(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers=dict(record.headers or ()),
    )
