"""The policy feed reader: follows the lab's compacted policy feed
(``labs.<lab id>.policies``) into an ``Enforcer``.

It reads every partition of the feed from the beginning (``read_committed``:
never a record of an aborted agency transaction), captures the end offsets when
it starts, and calls ``Enforcer.mark_caught_up()`` only once its position has
reached them on every partition: until then the enforcer is not ready and denies
everything. On a compacted topic the beginning holds at least the latest version
of every model, so a new enforcement point gets the current policy of every model
of its lab. Afterwards it keeps following, and marks the enforcer caught up again
whenever it has read to the feed's current end (at most every ``refresh_s``),
which is what ``status().view_age_s`` measures.

A record that is not an AccessPolicyPublished the enforcer can read (a tombstone,
bytes that do not decode) makes its model fail closed (``Enforcer.unreadable``):
the agency meant to say something about that model, and an older version may
allow what the new one forbids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts import ContractViolation, decode
from contracts.events.access import AccessPolicyPublished
from services.labclient.enforcer import ApplyResult, Enforcer
from services.labclient.metrics import UNREADABLE
from services.labclient.settings import LabSettings
from services.runtime.kafka import aiokafka_options

log = logging.getLogger(__name__)

POLICY_TYPES = {AccessPolicyPublished.TYPE: AccessPolicyPublished}


@dataclass
class FeedCounts:
    records: int = 0
    results: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0


class PolicyFeed:
    """``await feed.start()`` then ``await feed.run()`` (or ``async with feed:``)."""

    def __init__(
        self,
        enforcer: Enforcer,
        settings: LabSettings,
        *,
        topic: str | None = None,
        poll_ms: int = 200,
        refresh_s: float = 0.5,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        """Follows ``topic``, by default the policy feed of the enforcer's lab
        (``labs.<lab id>.policies``), as the lab's principal in ``settings``."""
        self.enforcer = enforcer
        self.topic = topic or settings.feed("policies", enforcer.lab_id)
        self.poll_ms = poll_ms
        self.refresh_s = refresh_s
        self.counts = FeedCounts()
        self.consumer = AIOKafkaConsumer(
            **aiokafka_options(settings),
            group_id=None,  # every enforcement point reads the whole feed itself
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **(consumer_options or {}),
        )
        self.partitions: list[TopicPartition] = []
        self.start_offsets: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_check = 0.0
        self._lag: dict[int, int] = {}
        enforcer.metrics.follow(self)

    @property
    def lag(self) -> dict[int, int]:
        """Records not yet read per partition, as of the last look at the end offsets
        (every ``refresh_s``; the metrics report it)."""
        return dict(self._lag)

    async def __aenter__(self) -> PolicyFeed:
        await self.start()
        self._task = asyncio.create_task(self.run(), name=f"policy-feed:{self.topic}")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self, *, within_s: float = 30.0) -> None:
        await self.consumer.start()
        # Without a group, a subscription is assigned every partition of the topic.
        self.consumer.subscribe([self.topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not self.consumer.assignment():
            if loop.time() > deadline:
                await self.consumer.stop()
                raise RuntimeError(f"the policy feed {self.topic} does not exist")
            await asyncio.sleep(0.02)
        self.partitions = sorted(self.consumer.assignment())
        await self.consumer.seek_to_beginning(*self.partitions)
        # read_committed: the last stable offsets, what a reader can actually reach.
        self.start_offsets = dict(await self.consumer.end_offsets(self.partitions))
        await self._check_caught_up(force=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.consumer.stop()

    async def run(self) -> None:
        """Follow the feed until cancelled. A broker that is away (restarting, out of
        reach) does not end it: the consumer reconnects by itself, and meanwhile the
        enforcer keeps what it applied while ``status().view_age_s`` grows."""
        while True:
            batch = await self.consumer.getmany(timeout_ms=self.poll_ms)
            for records in batch.values():
                for record in records:
                    self.apply(record.key, record.value)
            try:
                await self._check_caught_up()
            except KafkaError as exc:
                log.warning("%s: cannot read the feed's end (%r); retrying", self.topic, exc)

    def apply(self, key: bytes | None, value: bytes | None) -> ApplyResult | None:
        """One record of the feed (the key is the model id)."""
        self.counts.records += 1
        model_id = key.decode(errors="replace") if key is not None else None
        try:
            if value is None:
                raise ContractViolation("tombstone", "a tombstone on the policy feed")
            event = decode(value, POLICY_TYPES)
        except ContractViolation as exc:
            self.counts.unreadable += 1
            self.enforcer.metrics.took(UNREADABLE)
            log.error("unreadable record for model %r on %s: %s", model_id, self.topic, exc)
            if model_id is not None:
                self.enforcer.unreadable(model_id, f"unreadable policy record: {exc}"[:500])
            return None
        data = event.data
        assert isinstance(data, AccessPolicyPublished)
        result = self.enforcer.apply(data)
        self.counts.results[result.value] = self.counts.results.get(result.value, 0) + 1
        self.enforcer.metrics.took(result.value)
        if result in (ApplyResult.UNUSABLE, ApplyResult.CONFLICT):
            log.error("%s version %d: %s", data.model_id, data.policy_version, result.value)
        return result

    async def _check_caught_up(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if not force and self.enforcer.ready and loop.time() - self._last_check < self.refresh_s:
            return
        self._last_check = loop.time()
        targets = (
            self.start_offsets
            if not self.enforcer.ready
            else dict(await self.consumer.end_offsets(self.partitions))
        )
        positions = {tp: await self.consumer.position(tp) for tp in self.partitions}
        self._lag = {tp.partition: max(0, targets.get(tp, 0) - positions[tp]) for tp in positions}
        if all(positions[tp] >= targets.get(tp, 0) for tp in self.partitions):
            self.enforcer.mark_caught_up()
