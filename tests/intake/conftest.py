"""A running intake (real Kafka + PostgreSQL) with its own topics, schema and labs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from contracts import CloudEvent, Event
from services.intake import repository
from services.intake.app import build_service
from services.intake.settings import IntakeSettings
from services.intake.trust import LabKey
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, ensure_topics
from tests.intake.support import (
    MovableClock,
    Producer,
    Signer,
    Watcher,
    envelope,
    free_port,
    public_bytes,
    raw,
)

MAX_MESSAGE_BYTES = 16_000


async def intake_topics(bootstrap: str) -> tuple[str, str]:
    """Fresh lab.submissions / intake.events stand-ins (and their DLQs) for one rig."""
    suffix = uuid.uuid4().hex[:10]
    submissions, events = f"test.intake-in.{suffix}", f"test.intake-out.{suffix}"
    await ensure_topics(
        bootstrap,
        [TopicPlan(name, parts) for name, parts in ((submissions, 3), (events, 3))]
        + [TopicPlan(f"{submissions}.dlq", 1), TopicPlan(f"{events}.dlq", 1)],
    )
    return submissions, events


def intake_settings(
    base: RuntimeSettings, submissions: str, events: str, **extra: Any
) -> IntakeSettings:
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = base.model_dump() | {
        "intake_name": f"intake-test-{suffix}",
        "intake_schema": f"test_intake_{suffix}",
        "intake_submissions_topic": submissions,
        "intake_events_topic": events,
        "intake_clock_poll_s": 0.1,
        "intake_status_enabled": False,
        "max_message_bytes": MAX_MESSAGE_BYTES,
        "log_json": False,
    }
    return IntakeSettings(**(values | extra))


async def drop_schema(database: str, schema: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def register(
    service: Service,
    signers: list[Signer],
    **windows: tuple[datetime, datetime | None, datetime | None],
) -> None:
    """Register each signer's lab and key; ``windows[key_id]`` = (from, until, revoked)."""
    now = datetime.now(UTC)
    async with service.pool.acquire() as conn:
        for signer in signers:
            await repository.register_lab(conn, signer.lab_id, signer.lab_id.title())
            valid_from, valid_until, revoked = windows.get(signer.key_id, (now, None, None))
            await repository.add_key(
                conn,
                LabKey(
                    signer.lab_id,
                    signer.key_id,
                    public_bytes(signer.key),
                    valid_from,
                    valid_until,
                    None,
                ),
            )
            if revoked is not None:
                await repository.revoke_key(conn, signer.lab_id, signer.key_id, revoked, "test")


@dataclass
class Rig:
    settings: IntakeSettings
    service: Service
    clock: MovableClock
    producer: Producer
    events: Watcher
    dlq: Watcher
    signers: dict[str, Signer]
    status_url: str

    async def send(self, value: bytes, key: str | None) -> tuple[int, int]:
        return await self.producer.send(self.settings.intake_submissions_topic, value, key)

    async def publish(self, data: Event, *, subject: str | None = None) -> CloudEvent[Event]:
        event = envelope(data, subject=subject)
        await self.send(raw(event), event.subject)
        return event

    async def answer(self, data: Event, **kwargs: Any) -> CloudEvent[Event]:
        """Publish ``data`` and wait for intake's one answer to it."""
        event = await self.publish(data, **kwargs)
        return await self.events.answer(event.id)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.service.pool.acquire() as conn:
            return await conn.fetch(query, *args)


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    submissions, events = await intake_topics(kafka)
    port = free_port()
    config = intake_settings(
        settings, submissions, events, intake_status_enabled=True, intake_status_port=port
    )
    clock = MovableClock()
    service = build_service(config, clock=clock)
    producer = Producer(kafka)
    watchers = Watcher(kafka, events), Watcher(kafka, f"{submissions}.dlq")
    now = datetime.now(UTC)
    day = timedelta(days=1)
    signers = {
        key_id: Signer(lab_id, key_id)
        for lab_id, key_id in (
            ("lab-a", "a1"),
            ("lab-a", "a-revoked"),
            ("lab-a", "a-expired"),
            ("lab-a", "a-future"),
            ("lab-b", "b1"),
        )
    }
    await service.start()
    try:
        await register(
            service,
            list(signers.values()),
            **{
                "a-revoked": (now - day, None, now - timedelta(seconds=1)),
                "a-expired": (now - 2 * day, now - day, None),
                "a-future": (now + day, None, None),
            },
        )
        await producer.start()
        for watcher in watchers:
            await watcher.start()
        yield Rig(config, service, clock, producer, *watchers, signers, f"http://127.0.0.1:{port}")
    finally:
        for watcher in watchers:
            await watcher.stop()
        await producer.stop()
        await service.stop()
        await drop_schema(database, config.intake_schema)
