"""A running intake (real Kafka + PostgreSQL) with its own topics, schema and labs."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from contracts import CloudEvent, Event
from contracts.principals import Role
from services.intake.app import SCHEMA, build_service
from services.intake.settings import IntakeSettings
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from services.trust import registry
from services.trust.principals import LAB, PrincipalKey
from tests.intake.support import Signer, envelope, public_bytes, raw
from tests.kit import (
    MovableClock,
    Producer,
    TopicWatcher,
    create_feeds,
    create_registry_topics,
    drop_schema,
    free_port,
    isolated,
)

MAX_MESSAGE_BYTES = 16_000
ANSWER_FIELDS = ("filed_event_id", "rejected_event_id", "requested_event_id")

# The names the tests' endpoints use, as a name server would answer them: the endpoint
# policy resolves every host it checks (services/trust/endpoints.py).
TEST_DNS = {
    "eval.example-lab.test": ["93.184.215.14"],  # a public address
    "eval.lab-a.test": ["93.184.215.15"],
    "private.lab-a.test": ["10.1.2.3"],
    "rebinding.lab-a.test": ["93.184.215.16", "169.254.169.254"],
}


async def resolve_test_hosts(host: str, port: int) -> list[str]:
    if host in TEST_DNS:
        return TEST_DNS[host]
    if host.startswith("eval.") and host.endswith(".test"):  # the manifests' lab endpoints
        return ["93.184.215.20"]
    raise socket.gaierror(socket.EAI_NONAME, f"{host} is not known")


def intake_settings(base: RuntimeSettings, **extra: Any) -> IntakeSettings:
    """Settings for one rig: its own name, schema and topics; no status port unless asked."""
    values: dict[str, Any] = {
        "http_port": None,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    }
    return isolated(base, IntakeSettings, "intake", **(values | extra))


async def create_intake_topics(settings: RuntimeSettings) -> None:
    await create_registry_topics(settings, "lab.submissions", "intake.events", "intake.registry")


class IntakeWatcher(TopicWatcher):
    """intake.events, with the answers to inputs found by their CloudEvent id."""

    def about(self, submission_id: uuid.UUID | str) -> list[CloudEvent[Event]]:
        wanted = str(submission_id)
        return [e for e in self.events() if str(getattr(e.data, "submission_id", "")) == wanted]

    def answers(self, event_id: str) -> list[CloudEvent[Event]]:
        """Intake events that answer the input with CloudEvent id ``event_id``."""
        return [
            e
            for e in self.events()
            if any(getattr(e.data, k, None) == event_id for k in ANSWER_FIELDS)
        ]

    async def answer(self, event_id: str, *, timeout: float = 20.0) -> CloudEvent[Event]:
        await self.wait(
            lambda: bool(self.answers(event_id)), timeout=timeout, what=f"answer to {event_id}"
        )
        found = self.answers(event_id)
        assert len(found) == 1, f"{len(found)} answers to {event_id}"
        return found[0]


async def register(
    conn: asyncpg.Connection[asyncpg.Record] | Any,
    signers: list[Signer],
    **windows: tuple[datetime, datetime | None, datetime | None],
) -> None:
    """Register each signer's lab and key; ``windows[key_id]`` = (from, until, revoked)."""
    now = datetime.now(UTC)
    for signer in signers:
        await registry.register(conn, LAB, signer.lab_id, signer.lab_id.title(), now)
        valid_from, valid_until, revoked = windows.get(signer.key_id, (now, None, None))
        key = PrincipalKey(
            LAB.name,
            signer.lab_id,
            signer.key_id,
            public_bytes(signer.key),
            valid_from,
            valid_until,
            None,
        )
        refusal = await registry.add_key(conn, LAB, key, now)
        assert refusal is None, refusal
        if revoked is not None:
            assert (
                await registry.revoke_key(conn, LAB, signer.lab_id, signer.key_id, revoked, "test")
                is None
            )


async def register_labs(settings: IntakeSettings, signers: list[Signer], **windows: Any) -> None:
    """What onboarding does for each lab: its feeds, then its registry entry and keys."""
    await create_feeds(settings, Role.LAB, *sorted({s.lab_id for s in signers}))
    async with connect(settings, SCHEMA) as conn:
        await register(conn, signers, **windows)


@dataclass
class Rig:
    settings: IntakeSettings
    service: Service
    clock: MovableClock
    producer: Producer
    events: IntakeWatcher
    dlq: TopicWatcher
    signers: dict[str, Signer]
    status_url: str

    @property
    def submissions_topic(self) -> str:
        return self.settings.topic("lab.submissions")

    async def send(self, value: bytes, key: str | None) -> tuple[int, int]:
        return await self.producer.send(self.submissions_topic, value, key)

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

    async def refused(self, claimed_lab: str) -> dict[str, int]:
        """The operator's view of refused input claiming ``claimed_lab``: reason -> count."""
        rows = await self.fetch(
            "SELECT reason, sum(refused)::int AS n FROM trust_refusal_counts WHERE source = $1 "
            "GROUP BY reason",
            claimed_lab,
        )
        return {r["reason"]: r["n"] for r in rows}


@contextlib.asynccontextmanager
async def running_rig(base: RuntimeSettings, **overrides: Any) -> AsyncIterator[Rig]:
    port = free_port()
    config = intake_settings(base, http_port=port, **overrides)
    await create_intake_topics(config)
    clock = MovableClock()
    service = build_service(config, clock=clock, resolver=resolve_test_hosts)
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
    await register_labs(
        config,
        list(signers.values()),
        **{
            "a-revoked": (now - day, None, now - timedelta(seconds=1)),
            "a-expired": (now - 2 * day, now - day, None),
            "a-future": (now + day, None, None),
        },
    )
    await service.start()
    rig: Rig | None = None
    try:
        async with (
            Producer(config) as producer,
            IntakeWatcher(config, config.topic("intake.events")) as events,
            TopicWatcher(config, config.topic("lab.submissions.dlq")) as dlq,
        ):
            rig = Rig(
                config, service, clock, producer, events, dlq, signers, f"http://127.0.0.1:{port}"
            )
            yield rig
    finally:
        # The service running now: a test may have replaced the one started here (a
        # restart). Left running on the session's loop with its schema dropped, it would
        # fail on every tick for the rest of the run.
        await (rig.service if rig is not None else service).stop()
        await drop_schema(config)
