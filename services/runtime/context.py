"""What a handler gets: one transaction, the event, the clock, and a way to publish.

A handler is ``async def handle(ctx: Context, event: SomeEvent) -> None``. It
changes state with ``ctx.conn`` (the transaction the runtime opened, which also
holds the inbox claim) and says what happened with ``ctx.publish(event)``: the
topic and the record key come from the contract registry, and the events are
written to the outbox in the same transaction, after the handler returned (one
statement for a whole run of records). Nothing reaches Kafka unless the
transaction commits; nothing that committed is lost. A write the run does not
read back can go through ``ctx.defer(statement, *args)``: the run's writes of one
statement are then one pipelined ``executemany`` before the outbox rows.

The same shape serves every transaction that publishes: a durable timer firing
(``TimerContext``), a record that could not be decoded (``InvalidContext``, for
the service's answer to its sender), and a worker's or CLI's own transaction
(``TxContext`` from ``Service.transaction()``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from contracts import CONTENT_TYPE, CloudEvent, ContractViolation, Event, encode, make_event
from contracts.registry import feed_for, subject_for, topic_for
from contracts.sensitivity import owner_copy
from services.runtime import timers
from services.runtime.errors import PermanentError
from services.runtime.telemetry import current_trace_headers

if TYPE_CHECKING:
    from services.runtime.clock import Clock
    from services.runtime.database import Connection
    from services.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class Record:
    """Where a consumed record came from, as the broker delivered it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Mapping[str, bytes]
    timestamp_ms: int
    log_append_time: bool  # the broker set the timestamp (LogAppendTime), not the sender

    @property
    def timestamp(self) -> datetime:
        """The record's timestamp: when the broker appended it, on LogAppendTime topics."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Outgoing:
    """One outbox row: a record the relay will publish once the transaction commits."""

    topic: str
    key: bytes | None
    event_id: str
    event_type: str
    payload: bytes
    headers: dict[str, str]
    traceparent: str | None
    tracestate: str | None


class TxContext:
    """A transaction that may publish events; the base of every context."""

    def __init__(self, conn: Connection, settings: RuntimeSettings, clock: Clock) -> None:
        self.conn = conn
        self.settings = settings
        self.clock = clock
        self.outgoing: list[Outgoing] = []

    def now(self) -> datetime:
        return self.clock.now()

    def publish(
        self, data: Event, *, event_id: str | None = None, subject: str | None = None
    ) -> CloudEvent[Event]:
        """Queue ``data`` on its registry topic, keyed by its registry key field."""
        topic = self.settings.topic(topic_for(type(data)).name)
        return self.publish_to(topic, data, subject=subject or subject_for(data), event_id=event_id)

    def publish_to_owner(
        self, lab_id: str, data: Event, *, subject: str | None = None
    ) -> CloudEvent[Event]:
        """Queue the owner's copy of ``data`` (its internal fields dropped) on the
        feed of lab ``lab_id`` that carries its type: what that lab alone may read."""
        topic = self.settings.topic(feed_for(type(data)).topic(lab_id))
        return self.publish_to(topic, owner_copy(data), subject=subject or subject_for(data))

    def publish_to(
        self,
        topic: str,
        data: Event,
        *,
        subject: str,
        event_id: str | None = None,
    ) -> CloudEvent[Event]:
        """Queue ``data`` on ``topic`` (an actual name, e.g. a lab's own feed)."""
        trace = current_trace_headers()
        event: CloudEvent[Event] = make_event(
            data,
            source=self.settings.source,
            subject=subject,
            event_id=event_id,
            time=self.now(),
            traceparent=trace.get("traceparent"),
        )
        payload = encode(event)
        if len(payload) > self.settings.max_message_bytes:
            # It could never be published (and would stop the relay): refuse it here,
            # where the record that caused it can still be dead-lettered with a reason.
            raise PermanentError(
                "event_too_large",
                f"{event.type} would be {len(payload)} bytes > {self.settings.max_message_bytes}",
            )
        self.outgoing.append(
            Outgoing(
                topic=topic,
                key=subject.encode(),
                event_id=event.id,
                event_type=event.type,
                payload=payload,
                headers={"content-type": CONTENT_TYPE, "ce_type": event.type},
                traceparent=trace.get("traceparent"),
                tracestate=trace.get("tracestate"),
            )
        )
        return event

    async def schedule(
        self, kind: str, key: str, due_at: datetime, payload: Mapping[str, Any] | None = None
    ) -> bool:
        """A durable timer that fires once at ``due_at``; False if (kind, key) exists."""
        trace = current_trace_headers()
        return await timers.schedule(
            self.conn,
            kind,
            key,
            due_at,
            json.dumps(dict(payload or {}), separators=(",", ":"), default=str),
            trace.get("traceparent"),
            trace.get("tracestate"),
        )

    async def reschedule(self, kind: str, key: str, due_at: datetime) -> bool:
        """Move a pending timer; False if it is not pending."""
        return await timers.reschedule(self.conn, kind, key, due_at)

    async def lock_timer(self, kind: str, key: str) -> str | None:
        """Lock a timer row before the state it guards, in the order the scheduler
        takes them (timer, then state): its state (pending/fired/...) or None."""
        return await timers.lock(self.conn, kind, key)

    async def cancel_timer(self, kind: str, key: str) -> bool:
        """Cancel a pending timer; False if it already fired or does not exist."""
        return await timers.cancel(self.conn, kind, key)


class Writes:
    """The deferred writes of one run of records (``Context.defer``), in order."""

    def __init__(self) -> None:
        self._queued: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, statement: str, args: tuple[Any, ...]) -> None:
        self._queued.append((statement, args))

    async def execute(self, conn: Connection) -> None:
        """Each stretch of one statement is one ``executemany`` (asyncpg pipelines it:
        one round trip for the stretch), in the order the handlers queued them."""
        start = 0
        queued = self._queued
        while start < len(queued):
            statement = queued[start][0]
            end = start + 1
            while end < len(queued) and queued[end][0] == statement:
                end += 1
            await conn.executemany(statement, [args for _, args in queued[start:end]])
            start = end
        self._queued = []


class Context(TxContext):
    """A consumed event being applied: the envelope, the bytes, where it came from."""

    def __init__(
        self,
        conn: Connection,
        settings: RuntimeSettings,
        clock: Clock,
        *,
        event: CloudEvent[Event],
        raw: bytes,
        record: Record,
        writes: Writes | None = None,
    ) -> None:
        super().__init__(conn, settings, clock)
        self.event = event
        self.raw = raw  # the value as sent: signatures are verified over it, never a re-dump
        self.record = record
        self._writes = writes

    async def defer(self, statement: str, *args: Any) -> None:
        """A write this run does not read back (recording a fact, say): executed after
        the run's last handler and before its outbox rows, in the same transaction, with
        the run's other writes of the same statement in one round trip.

        Handlers that follow in the run do not see it; if it fails, the run is applied
        again in halves until the record whose write fails stands alone, and that record
        is dead-lettered (``apply_failed``) like one whose own statement failed. Outside a run (no
        collector) the statement runs at once.
        """
        if self._writes is None:
            await self.conn.execute(statement, *args)
        else:
            self._writes.add(statement, args)


class InvalidContext(TxContext):
    """A record that is not a valid event of its topic, for the service's answer."""

    def __init__(
        self,
        conn: Connection,
        settings: RuntimeSettings,
        clock: Clock,
        *,
        raw: bytes,
        record: Record,
        violation: ContractViolation,
    ) -> None:
        super().__init__(conn, settings, clock)
        self.raw = raw
        self.record = record
        self.violation = violation


@dataclass(frozen=True)
class Timer:
    """A due timer, as it was scheduled."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    def event_id(self, name: str, *, namespace: str) -> str:
        """A deterministic event id for what this timer publishes: a second firing
        (which the timer's state rules out) could not even be queued twice."""
        return timers.event_id(namespace, self.kind, self.key, name)


class TimerContext(TxContext):
    """A durable timer firing: its transaction marks the timer fired."""

    def __init__(
        self, conn: Connection, settings: RuntimeSettings, clock: Clock, *, timer: Timer
    ) -> None:
        super().__init__(conn, settings, clock)
        self.timer = timer

    def event_id(self, name: str) -> str:
        return self.timer.event_id(name, namespace=self.settings.db_schema)
