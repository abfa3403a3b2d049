"""Kafka for tests: topics, producing, reading (read_committed, from the start)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from contracts import CloudEvent, ContractViolation, Event, Topic, decode
from contracts.acl import AclScope
from contracts.principals import Principal, Role
from contracts.registry import OUTBOX_CHECKPOINT_TOPIC as CHECKPOINT_TOPIC
from contracts.registry import TOPIC_BY_NAME
from services.labclient.settings import LabSettings
from services.runtime.kafka import KafkaSettings
from services.runtime.principals import feed_plans
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, dlq_plan, ensure_topics, planned_topics

Records = list[ConsumerRecord[bytes, bytes]]


def test_topic(name: str, events: Iterable[type[Event]], *, producer: str = "test") -> Topic:
    """A topic outside the registry (a runtime test's own), keyed by ``key``."""
    return Topic(name=name, producer=producer, key="key", events=tuple(events))


async def create_topics(settings: RuntimeSettings, *plans: TopicPlan) -> None:
    await ensure_topics(settings, plans)


async def new_topic_name(settings: RuntimeSettings, prefix: str = "t", partitions: int = 3) -> str:
    """A uniquely named topic (and its DLQ) for one test."""
    name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
    await ensure_topics(settings, [TopicPlan(name, partitions), dlq_plan(f"{name}.dlq")])
    return name


async def create_registry_topics(
    settings: RuntimeSettings, *names: str, partitions: int | None = None
) -> None:
    """The registry's topics ``names`` (all when empty), their DLQs and the relays'
    checkpoint topic, under ``settings.topic_prefix``. ``partitions``: every topic the
    registry partitions (more than one partition) gets that many instead; DLQs, the
    checkpoint topic and the single-partition topics keep theirs."""
    wanted = set(names) or set(TOPIC_BY_NAME)
    wanted |= {f"{n}.dlq" for n in wanted} | {CHECKPOINT_TOPIC}  # the rig's relays need it
    prefix = settings.topic_prefix
    plans = [p for p in planned_topics(prefix) if p.name.removeprefix(prefix) in wanted]
    if partitions is not None:
        plans = [TopicPlan(p.name, partitions, p.config) if p.partitions > 1 else p for p in plans]
    await ensure_topics(settings, plans)


async def create_feeds(settings: RuntimeSettings, role: Role, *tenant_ids: str) -> None:
    """The feed topics of tenants ``tenant_ids`` of ``role`` (``labs.<id>.answers`` ...),
    under ``settings.topic_prefix``: what provisioning a tenant creates."""
    scope = AclScope(prefix=settings.topic_prefix)
    plans = [plan for t in tenant_ids for plan in feed_plans(Principal(role, t), scope)]
    await ensure_topics(settings, plans)


def lab_settings(settings: RuntimeSettings, lab_id: str) -> LabSettings:
    """A lab client's connection on the rig's broker and under its topic prefix (as the
    test principal: a test of what a lab's own principal may do provisions one)."""
    connection = {name: getattr(settings, name) for name in KafkaSettings.model_fields}
    return LabSettings(**connection, lab_id=lab_id, topic_prefix=settings.topic_prefix)


class Producer:
    """An idempotent producer for a test; ``send`` waits and returns (partition, offset)."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True)

    async def __aenter__(self) -> Producer:
        await self.producer.start()
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        encoded = key.encode() if isinstance(key, str) else key
        meta = await self.producer.send_and_wait(topic, value=value, key=encoded, headers=headers)
        return meta.partition, meta.offset


async def produce(
    settings: RuntimeSettings,
    topic: str,
    records: Iterable[tuple[str | bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``(key, value)`` records in order and wait until all are acknowledged."""
    async with Producer(settings) as producer:
        for key, value in records:
            await producer.send(topic, value, key, headers)


def _consumer(settings: RuntimeSettings, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        **settings.kafka_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def read_topic(
    settings: RuntimeSettings, topic: str, *, expected: int, timeout: float = 30.0
) -> Records:
    """Read ``topic`` from the start until ``expected`` records or timeout, then linger
    a second: a duplicate would arrive right after the expected count."""
    consumer = _consumer(settings, topic)
    await consumer.start()
    records: Records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


class TopicWatcher:
    """Collects every committed record of a topic from its beginning, in the background,
    and decodes what it can with ``event_types`` (default: the registry topic's)."""

    def __init__(
        self,
        settings: RuntimeSettings,
        topic: str,
        event_types: Mapping[str, type[Event]] | None = None,
    ) -> None:
        self.topic = topic
        base = topic.removeprefix(settings.topic_prefix)
        registered = TOPIC_BY_NAME.get(base)
        self.event_types = dict(
            event_types or (registered.event_types if registered is not None else {})
        )
        self.records: Records = []
        self._consumer = _consumer(settings, topic)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *_: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _collect(self) -> None:
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=100)).values():
                self.records.extend(batch)

    def events(self) -> list[CloudEvent[Event]]:
        decoded = []
        for record in self.records:
            try:
                decoded.append(decode(record.value or b"", self.event_types))
            except ContractViolation:
                continue
        return decoded

    def of(self, subject: object, kind: type[Event] | None = None) -> list[Any]:
        """Payloads about one subject (submission or model id), optionally of one type."""
        return [
            e.data
            for e in self.events()
            if e.subject == str(subject) and (kind is None or isinstance(e.data, kind))
        ]

    async def wait(
        self, condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "records"
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                kinds = [e.type.rsplit(".", 1)[-1] for e in self.events()]
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what} on {self.topic}: {kinds}"
                )
            await asyncio.sleep(0.05)

    async def linger(self, seconds: float = 1.0) -> None:
        """Let a little more arrive: a duplicate would come right after what was awaited."""
        await asyncio.sleep(seconds)
