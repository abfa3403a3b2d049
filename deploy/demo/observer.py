"""The scenario's view of the agency's topics: every event about one submission, as the
operator sees it.

Labs, reviewers and government subscribers may not read these topics; the scenario
reads them as the operator (the super user) to show and check what the system did,
and never acts on them for a party. It starts at the topics' ends, so it sees only
what happens from now on, and keeps what is keyed by the submission id or the model id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from contracts import CloudEvent, ContractViolation, Event, decode
from contracts.registry import TOPIC_BY_NAME
from services.runtime.kafka import KafkaSettings, aiokafka_options

# The lab's inputs, every service's events, and the government feed: the timeline of
# one submission from filing to conclusion.
TOPICS = (
    "lab.submissions",
    "intake.events",
    "evaluation.events",
    "risk.events",
    "gov.findings",
    "access.policies",
    "lab.compliance",
    "access.events",
)
E = TypeVar("E", bound=Event)
T = TypeVar("T")


class Missing(Exception):
    """What the scenario waited for did not happen in time (the message says what)."""


@dataclass(frozen=True)
class Seen:
    topic: str
    event: CloudEvent[Event]
    received: float  # time.monotonic() when the scenario read it


class AgencyObserver:
    def __init__(self, settings: KafkaSettings, keys: set[str]) -> None:
        self.settings = settings
        self.keys = {key.encode() for key in keys}
        self.seen: list[Seen] = []
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AgencyObserver:
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        self._consumer = consumer
        assigned = await partitions(self.settings, *TOPICS)
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for partition in assigned:  # resolved now: nothing published from here on is missed
            await consumer.position(partition)
        self._task = asyncio.create_task(self._read(consumer), name="agency-observer")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            # aiokafka's fetcher re-raises the cancellation of a fetch it was retrying
            # (a slow broker): the reader is gone either way, and the scenario's own
            # outcome, not this, must be what the caller sees.
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await self._consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            found = []
            for partition, records in batch.items():
                types = TOPIC_BY_NAME[partition.topic].event_types
                for record in records:
                    if record.key not in self.keys or record.value is None:
                        continue
                    try:
                        event = decode(record.value, types)
                    except ContractViolation:
                        continue
                    found.append(Seen(partition.topic, event, time.monotonic()))
            if found:
                async with self._changed:
                    self.seen.extend(found)
                    self._changed.notify_all()

    def watch(self, key: str) -> None:
        """Also keep what is keyed by ``key`` (the model id, once known)."""
        self.keys.add(key.encode())

    def all(self, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> list[E]:
        found: list[E] = []
        for seen in self.seen:
            data: Any = seen.event.data
            if isinstance(data, kind) and where(data):
                found.append(data)
        return found

    async def until(self, check: Callable[[], T | None], *, what: str, within_s: float) -> T:
        """What ``check`` returns once it returns something; it is asked again at every
        change. Missing (naming ``what``) after ``within_s``."""
        deadline = time.monotonic() + within_s
        async with self._changed:
            while (found := check()) is None:
                if self._task is not None and self._task.done():
                    raise Missing(f"{what}: the observer stopped: {self._task.exception()!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Missing(f"{what}: not seen within {within_s:.0f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            return found

    async def wait_for(
        self,
        kind: type[E],
        *,
        what: str,
        within_s: float,
        where: Callable[[E], bool] = lambda _: True,
    ) -> CloudEvent[E]:
        """The first event of ``kind`` matching ``where``."""

        def first() -> CloudEvent[E] | None:
            for seen in self.seen:
                data: Any = seen.event.data
                if isinstance(data, kind) and where(data):
                    return seen.event  # type: ignore[return-value]
            return None

        return await self.until(first, what=f"{what} ({kind.__name__})", within_s=within_s)


async def partitions(settings: KafkaSettings, *topics: str) -> list[TopicPartition]:
    """Every partition of ``topics``, from the cluster's metadata (a producer asks for it on
    demand; a consumer only for what it is assigned). Reading needs no write access."""
    producer = AIOKafkaProducer(**aiokafka_options(settings))
    await producer.start()
    try:
        found = []
        for topic in topics:
            try:
                numbers = await asyncio.wait_for(producer.partitions_for(topic), 30)
            except (TimeoutError, KafkaError) as exc:
                raise Missing(
                    f"topic {topic} cannot be seen with this principal: {exc!r}"
                ) from None
            found += [TopicPartition(topic, n) for n in sorted(numbers)]
        return found
    finally:
        await producer.stop()
