"""Consuming with exactly-once effects: decode, inbox, handler, outbox, then offset.

A fetched batch is applied in **runs**: one Postgres transaction holds the
inbox claims of the whole run (one statement), every handler's state change,
and the run's outbox rows (one statement). Only after it commits are the
run's offsets committed to Kafka — explicitly, per partition, in the
background, chained in order (never the consumer's position, which includes
records fetched but not applied), and awaited when partitions are revoked and
at shutdown. A crash anywhere loses nothing (the records come back) and
applies nothing twice (their claims are there).

What can't be applied gets a clear answer instead of a retry loop:

* bytes that are too large, not JSON, not a CloudEvent, not an event of this
  topic, or of a type this consumer does not handle -> the service's
  ``on_invalid`` hook (e.g. a rejection event the sender can read), else
  ``<topic>.dlq``; in the run's transaction, claimed by the record's position,
  so it is answered (or dead-lettered) exactly once;
* a handler that fails -> the run rolls back, its good prefix is applied again,
  the failing record is retried ``handler_max_attempts`` times on its own
  (a ``PermanentError`` is not retried) and then dead-lettered, and the rest of
  the batch goes on: the order and effects are those of one-by-one processing;
* the database being unreachable or restarting -> not the record's fault:
  nothing is acknowledged, the partitions are rewound to the first record not
  applied, and the batch is tried again after a pause. Other partitions' applied
  records keep their committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from contracts import CloudEvent, ContractViolation, Event, Topic, decode
from services.runtime import inbox, outbox
from services.runtime.context import Context, InvalidContext, Outgoing, Record, Writes
from services.runtime.deadletter import dead_letter
from services.runtime.errors import TRANSIENT_ERRORS, PermanentError
from services.runtime.metrics import INVALID_EVENT_TYPE, ConsumerMetrics, Outcome
from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from services.runtime.clock import Clock
    from services.runtime.database import Connection, Pool

log = logging.getLogger(__name__)

Handler = Callable[[Context, Any], Awaitable[None]]
InvalidHandler = Callable[[InvalidContext], Awaitable[bool]]

EXTERNAL_PRODUCERS = frozenset({"lab", "evaluators", "reviewers"})


class Idempotency(StrEnum):
    EVENT_ID = "event_id"  # the agency's own topics: the producer's event id
    POSITION = "position"  # topics written from outside: partition/offset/digest


@dataclass
class _Item:
    """One fetched record on its way through a run."""

    record: Record
    raw: bytes
    digest: bytes
    event: CloudEvent[Event] | None
    violation: ContractViolation | None
    handler: Handler | None
    key: str  # inbox claim key
    position_key: str
    # Set while applying, counted once the run committed (metrics.py).
    outcome: Outcome | None = None
    elapsed: float = 0.0
    dlq_reason: str | None = None

    @property
    def handled(self) -> bool:
        return self.handler is not None and self.event is not None


class _RunFailed(Exception):
    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


class _Rewind(Exception):
    """Infrastructure trouble: rewind the batch's partitions and try again later."""


class _ApplyFailed(Exception):
    """Applying a record failed outside its handler (claim or outbox statement)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


class EventConsumer:
    """Applies the records of one topic with a table of handlers, for one consumer group."""

    def __init__(
        self,
        *,
        group: str,
        topic: str,
        registry_topic: Topic | None,
        event_types: Mapping[str, type[Event]],
        handlers: Mapping[type[Event], Handler],
        ignore: frozenset[type[Event]],
        pool: Callable[[], Pool],
        broker: KafkaBroker,
        settings: RuntimeSettings,
        clock: Clock,
        on_invalid: InvalidHandler | None = None,
        idempotency: Idempotency | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.group = group
        self.topic = topic
        self.event_types = dict(event_types)
        self.handlers = {event_type.TYPE: handler for event_type, handler in handlers.items()}
        self.ignored = frozenset(event_type.TYPE for event_type in ignore)
        external = registry_topic is not None and registry_topic.producer in EXTERNAL_PRODUCERS
        self.external = external
        self.idempotency = idempotency or (
            Idempotency.POSITION if external else Idempotency.EVENT_ID
        )
        self.pool = pool
        self.broker = broker
        self.settings = settings
        self.clock = clock
        self.on_invalid = on_invalid
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.subscriber: Any = None
        self.committer = OffsetCommitter(lambda: self.subscriber.consumer)
        self._owned: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.metrics = metrics or ConsumerMetrics.detached(topic)
        # For readiness and lag (metrics.py); set per batch and per run, never per record.
        self.assignment: frozenset[TopicPartition] | None = None  # None: never joined
        self.applied_offsets: dict[TopicPartition, int] = {}  # next offset after the applied
        self._in_hand: Mapping[TopicPartition, Sequence[Any]] = {}

    # wiring -------------------------------------------------------------------
    def subscribe(self) -> None:
        """Register with the broker: FastStream builds, starts and stops the Kafka
        consumer (and documents it); the runtime runs its loop, because it commits
        explicit offsets of applied runs, which FastStream's ack policies cannot."""
        self.subscriber = self.broker.subscriber(
            self.topic,
            group_id=self.group,
            batch=True,
            max_records=self.settings.consumer_batch_size,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # never see an aborted relay batch
            max_partition_fetch_bytes=max(1_048_576, self.settings.max_message_bytes * 2),
            fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            listener=_Rebalance(self),
            title=f"{self.group}:{self.topic}",
            description="Consumes " + ", ".join(sorted(self.handlers)) + ".",
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"consume:{self.group}")
        self.committer.start()

    async def stop(self) -> None:
        """Let the batch in hand finish (within the grace period), then flush offsets."""
        self._stopping.set()
        if self._task is not None:
            if not self._busy:
                self._task.cancel()
            try:
                async with asyncio.timeout(self.settings.graceful_timeout_s):
                    await asyncio.shield(self._task)
            except (TimeoutError, asyncio.CancelledError):
                # Cut off: its transaction rolls back, its offsets were not committed.
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
            except Exception:
                log.exception("%s: consume loop failed", self.group)
            self._task = None
        await self.committer.close()

    # the loop -----------------------------------------------------------------
    async def _loop(self) -> None:
        consumer = self.subscriber.consumer
        while not self._stopping.is_set():
            try:
                fetched = await consumer.getmany(
                    timeout_ms=1000, max_records=self.settings.consumer_batch_size
                )
            except ConsumerStoppedError:
                return
            except KafkaError:
                log.exception("%s: fetching failed; retrying", self.group)
                await self._pause(1.0)
                continue
            if not fetched:
                continue
            self._busy = True
            self._in_hand = fetched
            try:
                async with self._lock:
                    records = [
                        r for tp, batch in fetched.items() if tp in self._owned for r in batch
                    ]
                    if records:
                        await self.process(records)
            except Exception:
                # process() answers or dead-letters every record; this is the last guard
                # of the loop itself: nothing was acknowledged, fetch it all again.
                log.exception("%s: applying a batch failed; it is fetched again", self.group)
                self._rewind([self._item(*_record(r)) for b in fetched.values() for r in b])
                await self._pause(self.settings.transient_retry_s)
            finally:
                self._busy = False
                self._in_hand = {}

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    @property
    def kafka_consumer(self) -> Any:
        """The aiokafka consumer FastStream built (None before the broker started)."""
        return getattr(self.subscriber, "consumer", None)

    @property
    def owned(self) -> frozenset[TopicPartition]:
        return frozenset(self._owned)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stopping.is_set()

    def first_unapplied(self, tp: TopicPartition) -> int | None:
        """The offset of the first record of ``tp`` fetched and not applied yet, if any
        (the consumer's lag counts from it): a scrape walks the batch, records don't."""
        applied = self.applied_offsets.get(tp, -1)
        for record in self._in_hand.get(tp, ()):
            if record.offset >= applied:
                return int(record.offset)
        return None

    async def process(self, records: Sequence[Any]) -> None:
        """Apply fetched records (aiokafka ConsumerRecords) as if one by one, in order,
        with few commits."""
        items = [self._item(*_record(consumed)) for consumed in records]
        done = 0
        try:
            while done < len(items):
                applied, failure = await self._apply_run(items[done:])
                done += applied
                if done < len(items) and failure is not None:
                    await self._apply_alone(items[done], failure)
                    done += 1
        except _Rewind:
            self._rewind(items[done:])
            await self._pause(self.settings.transient_retry_s)

    def _rewind(self, unapplied: Sequence[_Item]) -> None:
        """Fetch again from the first unapplied record of each partition."""
        consumer = self.subscriber.consumer
        first: dict[TopicPartition, int] = {}
        for item in unapplied:
            tp = TopicPartition(item.record.topic, item.record.partition)
            first.setdefault(tp, item.record.offset)
        for tp, offset in first.items():
            if tp in self._owned:
                consumer.seek(tp, offset)

    # decoding -----------------------------------------------------------------
    def _item(self, record: Record, raw: bytes) -> _Item:
        value_digest = inbox.digest(raw)
        position_key = inbox.position_key(record.partition, record.offset, value_digest)
        event: CloudEvent[Event] | None = None
        violation: ContractViolation | None = None
        handler: Handler | None = None
        try:
            if len(raw) > self.settings.max_message_bytes:
                raise ContractViolation(
                    "oversized", f"{len(raw)} bytes > limit {self.settings.max_message_bytes}"
                )
            event = decode(raw, self.event_types)
            handler = self.handlers.get(event.type)
            if handler is None and event.type not in self.ignored:
                raise ContractViolation(
                    "unknown_event_type", f"{event.type!r} is not accepted by {self.group}"
                )
        except ContractViolation as exc:
            event, violation = None, exc
        except Exception as exc:  # decode must never stop a partition, whatever the bytes
            event, violation = None, ContractViolation("malformed", f"undecodable: {exc!r}"[:500])
        key = position_key
        if event is not None and self.idempotency is Idempotency.EVENT_ID:
            key = event.id
        return _Item(record, raw, value_digest, event, violation, handler, key, position_key)

    # runs -----------------------------------------------------------------------
    def _take_run(self, items: Sequence[_Item]) -> Sequence[_Item]:
        """The next run: at most ``consumer_run_max_bytes``, and no claim key twice, so
        the run's one claim statement means what one-by-one claims would (a key seen
        twice in a batch, a redelivery mixed in, starts the next run)."""
        size, keys = 0, set()
        for end, item in enumerate(items):
            size += len(item.raw)
            if end and (size > self.settings.consumer_run_max_bytes or item.key in keys):
                return items[:end]
            keys.add(item.key)
        return items

    async def _apply_run(self, items: Sequence[_Item]) -> tuple[int, Exception | None]:
        """Apply records in one transaction until the first whose handler fails.

        Returns how many were applied, and the handler's error on the next
        record (so that attempt counts, and a PermanentError stands). Optimistic:
        no savepoint per record; when a handler fails, the run rolls back and
        its good prefix is applied again.
        """
        run = self._take_run(items)
        try:
            async with self.pool().acquire() as conn, conn.transaction():
                await self._apply(conn, run)
        except _RunFailed as failed:
            if failed.position == 0:
                return 0, failed.error
            applied, again = await self._apply_run(run[: failed.position])
            return (applied, again) if applied < failed.position else (applied, failed.error)
        except TRANSIENT_ERRORS as exc:
            log.warning("%s: infrastructure error; batch will be retried: %r", self.group, exc)
            raise _Rewind from exc
        except Exception as exc:
            # The run's own statements failed (a record the database cannot store, a
            # deferred write): no handler to blame, so find the record by halving the run
            # (its first half as a run; process() takes the rest), down to one record.
            log.warning(
                "%s: a run of %d failed (%r); applying it in halves", self.group, len(run), exc
            )
            if len(run) == 1:
                return 0, _ApplyFailed(exc)
            return await self._apply_run(run[: len(run) // 2])
        self._applied(run)
        return len(run), None

    async def _apply(self, conn: Connection, run: Sequence[_Item]) -> None:
        with self.tracer.start_as_current_span(
            f"{self.topic} apply", attributes={"messaging.batch.message_count": len(run)}
        ):
            claims = await self._claim(conn, run)
            outgoing: list[Outgoing] = []
            writes = Writes()
            for position, item in enumerate(run):
                item.outcome, item.dlq_reason = None, None  # a run applied again starts over
                verdict = claims.get(id(item))
                if verdict is _SKIP:
                    continue
                if verdict is _REUSED:
                    item.outcome, item.dlq_reason = Outcome.DEAD_LETTERED, "event_id_reused"
                    outgoing.append(
                        self._dead_letter(
                            item,
                            "event_id_reused",
                            f"event id {item.key!r} was already applied with different content",
                        )
                    )
                elif item.violation is not None:
                    outgoing.extend(await self._answer_invalid(conn, item))
                elif item.handled:
                    try:
                        outgoing.extend(await self._handle(conn, item, writes))
                    except TRANSIENT_ERRORS:
                        raise
                    except Exception as exc:
                        raise _RunFailed(position, exc) from exc
            await writes.execute(conn)
            await outbox.write(conn, outgoing)

    async def _claim(self, conn: Connection, run: Sequence[_Item]) -> dict[int, object]:
        """Claim the run's records (distinct keys); returns the verdict of those not to
        apply now. A record reusing an id with other bytes is dead-lettered exactly once:
        its position is claimed too, and a redelivery finds that claim and skips it."""
        verdicts: dict[int, object] = {}
        claimed = []
        for item in run:
            if item.violation is None and not item.handled:
                verdicts[id(item)] = _SKIP  # a type this consumer ignores: no effect
            else:
                claimed.append(item)
        result = await inbox.claim(conn, self.group, [_claim_of(i, i.key) for i in claimed])
        suspects = [i for i in claimed if i.key in result.reused]
        for item in claimed:
            if item.key not in result.fresh:
                verdicts[id(item)] = _SKIP
        if suspects:
            positions = await inbox.claim(
                conn, self.group, [_claim_of(i, i.position_key) for i in suspects]
            )
            for item in suspects:
                if item.position_key in positions.fresh:
                    verdicts[id(item)] = _REUSED
        return verdicts

    async def _handle(self, conn: Connection, item: _Item, writes: Writes) -> list[Outgoing]:
        assert item.event is not None and item.handler is not None
        ctx = Context(
            conn,
            self.settings,
            self.clock,
            event=item.event,
            raw=item.raw,
            record=item.record,
            writes=writes,
        )
        parent = propagate.extract(
            {k: v.decode(errors="replace") for k, v in item.record.headers.items()}
        )
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"{item.record.topic} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": item.record.topic,
                "messaging.consumer.group.name": self.group,
                "messaging.kafka.destination.partition": item.record.partition,
                "messaging.kafka.message.offset": item.record.offset,
                "cloudevents.event_type": item.event.type,
            },
        ):
            try:
                await item.handler(ctx, item.event.data)
            finally:
                item.elapsed = time.perf_counter() - started
        item.outcome = Outcome.APPLIED
        return ctx.outgoing

    async def _answer_invalid(self, conn: Connection, item: _Item) -> list[Outgoing]:
        """The service's answer to the sender, or the record itself to the DLQ."""
        assert item.violation is not None
        started = time.perf_counter()
        if self.on_invalid is not None:
            ctx = InvalidContext(
                conn,
                self.settings,
                self.clock,
                raw=item.raw,
                record=item.record,
                violation=item.violation,
            )
            try:
                async with conn.transaction():  # a savepoint: a failing hook undoes only itself
                    if await self.on_invalid(ctx):
                        item.outcome = Outcome.ANSWERED_INVALID
                        item.elapsed = time.perf_counter() - started
                        return ctx.outgoing
            except TRANSIENT_ERRORS:
                raise
            except Exception:
                log.exception("%s: on_invalid failed; the record goes to the DLQ", self.group)
        log.warning(
            "%s: invalid record dead-lettered: %s",
            self.group,
            item.violation,
            extra={"topic": item.record.topic, "offset": item.record.offset},
        )
        item.outcome, item.dlq_reason = Outcome.DEAD_LETTERED, item.violation.reason
        item.elapsed = time.perf_counter() - started
        return [self._dead_letter(item, item.violation.reason, item.violation.detail)]

    def _dead_letter(self, item: _Item, reason: str, error: str, attempts: int = 1) -> Outgoing:
        return dead_letter(
            item.record,
            item.raw,
            reason=reason,
            error=error,
            consumer=self.group,
            attempts=attempts,
            at=self.clock.now(),
        )

    async def _apply_alone(self, item: _Item, failure: Exception) -> None:
        """One record whose handler failed in a run: retry it, then dead-letter it."""
        extra = {
            "topic": item.record.topic,
            "offset": item.record.offset,
            "event_id": item.event.id if item.event else None,
        }
        error, attempt = failure, 1
        while attempt < self.settings.handler_max_attempts and not isinstance(
            error, PermanentError
        ):
            log.warning("handler failed (attempt %d): %r", attempt, error, extra=extra)
            self.metrics.handled(_event_type(item), Outcome.RETRIED, item.elapsed)
            await self._pause(self.settings.handler_retry_backoff_s * 2 ** (attempt - 1))
            attempt += 1
            try:
                async with self.pool().acquire() as conn, conn.transaction():
                    await self._apply(conn, [item])
                self._applied([item])
                return
            except _RunFailed as failed:
                error = failed.error
            except TRANSIENT_ERRORS as exc:
                raise _Rewind from exc
            except Exception as exc:
                error = _ApplyFailed(exc)
        if isinstance(error, PermanentError):
            reason = error.reason
        elif isinstance(error, _ApplyFailed):
            reason = "apply_failed"
        else:
            reason = "handler_failed"
        try:
            async with self.pool().acquire() as conn, conn.transaction():
                claimed = await inbox.claim(conn, self.group, [_claim_of(item, item.position_key)])
                # Counted only where this claim is the first (a redelivery of one already
                # dead-lettered is no second dead letter).
                item.outcome, item.dlq_reason = None, None
                if claimed.fresh:
                    detail = f"{type(error).__name__}: {error}"
                    await outbox.write(conn, [self._dead_letter(item, reason, detail, attempt)])
                    item.outcome, item.dlq_reason = Outcome.DEAD_LETTERED, reason
        except TRANSIENT_ERRORS as exc:
            raise _Rewind from exc
        self._applied([item])
        log.error("event dead-lettered: %s", error, extra=extra)

    def _applied(self, items: Sequence[_Item]) -> None:
        """``items`` committed: count them and have their offsets committed."""
        offsets: dict[TopicPartition, int] = {}
        metrics = self.metrics
        for item in items:
            offsets[TopicPartition(item.record.topic, item.record.partition)] = (
                item.record.offset + 1
            )
            if item.outcome is not None:
                metrics.handled(_event_type(item), item.outcome, item.elapsed)
                if item.dlq_reason is not None:
                    metrics.dead_lettered(item.dlq_reason)
        self.applied += len(items)
        self.applied_offsets.update(offsets)
        self.committer.submit(offsets)


_SKIP = object()
_REUSED = object()


def _event_type(item: _Item) -> str:
    """The registry's type of a decoded record; never a type an invalid record claims."""
    return item.event.type if item.event is not None else INVALID_EVENT_TYPE


def _claim_of(item: _Item, key: str) -> inbox.Claim:
    return inbox.Claim(
        key,
        item.position_key,
        item.record.topic,
        item.record.partition,
        item.record.offset,
        item.digest,
    )


def _record(consumed: Any) -> tuple[Record, bytes]:
    """An aiokafka ConsumerRecord as the runtime keeps it: where from, and the bytes."""
    record = Record(
        topic=consumed.topic,
        partition=consumed.partition,
        offset=consumed.offset,
        key=consumed.key,
        headers=dict(consumed.headers or ()),
        timestamp_ms=consumed.timestamp,
        log_append_time=consumed.timestamp_type == 1,
    )
    return record, consumed.value or b""


class OffsetCommitter:
    """Commits applied offsets in the background, one commit at a time, in order.

    Offsets only ever name records whose transaction committed. Commits are
    chained (a later one never races an earlier one) and merged (the latest
    offset per partition wins); ``flush`` waits for what is pending, which the
    rebalance listener and shutdown do. A failed commit (a rebalance under way)
    is logged and dropped: the records come back, and their claims make the
    redelivery harmless.
    """

    def __init__(self, consumer: Callable[[], Any]) -> None:
        self._consumer = consumer
        self._pending: dict[TopicPartition, int] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="offset-committer")

    def submit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if offset > self._pending.get(tp, -1):
                self._pending[tp] = offset
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                offsets, self._pending = self._pending, {}
                try:
                    await self._consumer().commit({tp: (o, "") for tp, o in offsets.items()})
                    self.commits += 1
                except (KafkaError, AssertionError) as exc:
                    log.warning("offset commit failed (%r); records will be redelivered", exc)
            self._idle.set()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands partitions over only between batches, with their offsets committed."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.consumer._lock:  # the batch in hand finishes first
            self.consumer._owned -= set(revoked)
            await self.consumer.committer.flush()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer._owned |= set(assigned)
        # Joined the group (even with no partition: the group's others hold them).
        self.consumer.assignment = frozenset(self.consumer._owned)
