"""A running access service (real Kafka + PostgreSQL) with its own topics and schema,
labs registered with intake (whose relay publishes their entries on intake.registry,
which access applies), and the labs' enforcement points following its policy feed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import CloudEvent, Event, encode, make_event
from contracts.events.access import AccessPolicyPublished
from contracts.events.lab import ComplianceAcknowledged
from contracts.principals import Role
from contracts.registry import LAB_FEED_BY_SUFFIX, subject_for, topic_for
from services.access.app import build_service
from services.access.settings import AccessSettings
from services.intake.settings import IntakeSettings
from services.labclient.enforcer import AppliedVersion, Enforcer
from services.labclient.feed import PolicyFeed
from services.labclient.settings import LabSettings
from services.labclient.signing import acknowledgement_fields, build_acknowledgement
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from tests.kit import (
    MovableClock,
    Producer,
    TopicWatcher,
    create_feeds,
    create_registry_topics,
    drop_schema,
    isolated,
    lab_settings,
    wait_for,
)
from tests.kit.lab_registry import intake_registry_settings, intake_relay, register_lab

TOPICS = ("risk.events", "lab.compliance", "intake.registry", "access.events", "access.policies")
SOURCES = {"risk": "/frontier-review/risk", "lab": "/labs"}


def access_settings(base: RuntimeSettings, **extra: Any) -> AccessSettings:
    """Settings for one rig: its own name, schema and topics; no HTTP unless asked."""
    values: dict[str, Any] = {"http_port": None, "access_overdue_grace_s": 0.0}
    return isolated(base, AccessSettings, "access", **(values | extra))


@dataclass
class Lab:
    """A lab as it holds its identity: id, key id, private key."""

    lab_id: str
    key_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def acknowledgement(
        self, applied: AppliedVersion, *, issued_at: datetime | None = None, **changes: Any
    ) -> ComplianceAcknowledged:
        """Signed, for what an enforcer applied (``changes`` alter fields before signing)."""
        fields = acknowledgement_fields(applied, self.lab_id, ["gateway-1"]) | changes
        return build_acknowledgement(fields, self.key, self.key_id, now=issued_at)


async def register_labs(intake: IntakeSettings, labs: list[Lab]) -> None:
    """The operator's `frontier-review labs register` / `labs key add`, in intake's
    registry (and the labs' feeds, which registering provisions). Access gets nothing
    from the rig: it learns the keys from intake.registry."""
    await create_feeds(intake, Role.LAB, *sorted({lab.lab_id for lab in labs}))
    since = datetime.now(UTC) - timedelta(days=1)
    for lab in labs:
        await register_lab(intake, lab.lab_id, [(lab.key_id, lab.public_key)], since)


async def access_knows(settings: AccessSettings, labs: list[Lab], timeout: float = 30.0) -> None:
    """Wait until access applied the labs' keys it received on intake.registry."""

    async def known() -> bool:
        async with connect(settings) as conn:
            rows = await conn.fetch("SELECT principal_id, key_id FROM trust_keys")
        return {(lab.lab_id, lab.key_id) for lab in labs} <= {tuple(r) for r in rows}

    await wait_for(known, timeout=timeout, what="access applied the labs' keys")


@dataclass
class Rig:
    settings: AccessSettings
    intake: IntakeSettings  # the lab registry's owner, beside the rig (tests.kit.lab_registry)
    service: Service | None
    clock: MovableClock
    producer: Producer
    events: TopicWatcher
    policies: TopicWatcher
    dlq: dict[str, TopicWatcher]
    labs: dict[str, Lab]

    # inputs other services and the labs publish: one helper for all of them -----------
    async def send(self, data: Event, *, source: str | None = None) -> CloudEvent[Event]:
        """``data`` as its producer would publish it, on the rig's prefixed topic."""
        topic = topic_for(type(data))
        event = make_event(
            data,
            source=source or SOURCES.get(topic.producer, "/test"),
            subject=subject_for(data),
        )
        await self.send_raw(topic.name, encode(event), event.subject)
        return event

    async def send_raw(self, registry_topic: str, value: bytes, key: str | None) -> None:
        await self.producer.send(self.settings.topic(registry_topic), value, key)

    # what the service published ----------------------------------------------------------
    def versions(self, model_id: str) -> list[AccessPolicyPublished]:
        found: list[AccessPolicyPublished] = self.policies.of(model_id, AccessPolicyPublished)
        return found

    async def version(self, model_id: str, version: int, timeout: float = 30.0) -> Any:
        await self.policies.wait(
            lambda: any(p.policy_version == version for p in self.versions(model_id)),
            timeout=timeout,
            what=f"{model_id} version {version}",
        )
        return next(p for p in self.versions(model_id) if p.policy_version == version)

    def answers(self, kind: type[Event], **fields: Any) -> list[Any]:
        return [
            e.data
            for e in self.events.events()
            if isinstance(e.data, kind) and all(getattr(e.data, k) == v for k, v in fields.items())
        ]

    async def answer(self, kind: type[Event], timeout: float = 30.0, **fields: Any) -> Any:
        await self.events.wait(
            lambda: bool(self.answers(kind, **fields)), timeout=timeout, what=kind.__name__
        )
        found = self.answers(kind, **fields)
        assert len(found) == 1, found
        return found[0]

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with connect(self.settings) as conn:
            return await conn.fetch(query, *args)

    async def fetch_intake(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """A query on intake's schema beside the rig (its registry and outbox)."""
        async with connect(self.intake) as conn:
            return await conn.fetch(query, *args)

    # the labs' enforcement points ---------------------------------------------------------
    @contextlib.asynccontextmanager
    async def enforcer(
        self, lab_id: str, *, clock: Callable[[], datetime] | None = None
    ) -> AsyncIterator[Enforcer]:
        """An enforcer following its lab's policy feed, as the lab's gateway runs it."""
        enforcer = Enforcer(lab_id=lab_id, clock=clock or self.clock.now)
        async with PolicyFeed(enforcer, self.lab_settings(lab_id)):
            yield enforcer

    def lab_settings(self, lab_id: str) -> LabSettings:
        return lab_settings(self.settings, lab_id)

    def answers_feed(self, lab_id: str) -> TopicWatcher:
        """A watcher of the lab's own answers feed (``labs.<lab>.answers``), the only
        place a lab reads what access answered it."""
        types = {event.TYPE: event for event in LAB_FEED_BY_SUFFIX["answers"].events}
        return TopicWatcher(self.settings, self.lab_settings(lab_id).feed("answers"), types)

    async def destinations(self, event_id: str) -> list[str]:
        """Every topic (registry name, without the rig's prefix) the service queued a
        record mentioning ``event_id`` for: published, pending or parked."""
        rows = await self.fetch(
            """SELECT topic FROM outbox WHERE position(convert_to($1, 'UTF8') in payload) > 0
               UNION ALL
               SELECT topic FROM outbox_parked
               WHERE position(convert_to($1, 'UTF8') in payload) > 0""",
            event_id,
        )
        return sorted(r["topic"].removeprefix(self.settings.topic_prefix) for r in rows)

    def policy_feed(self, lab_id: str) -> str:
        """The lab's own policy feed (``labs.<lab>.policies`` under the rig's prefix)."""
        return self.lab_settings(lab_id).feed("policies")


async def applied(enforcer: Enforcer, model_id: str, version: int, timeout: float = 30.0) -> None:
    """Wait until ``enforcer`` applied ``version`` (or later) of ``model_id``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        current = enforcer.applied(model_id)
        if enforcer.ready and current is not None and current.version >= version:
            return
        if loop.time() > deadline:
            raise AssertionError(f"enforcer did not apply {model_id} v{version}: {current}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_rig(
    base: RuntimeSettings,
    *,
    clock: MovableClock | None = None,
    labs: list[Lab] | None = None,
    start: bool = True,
    **extra: Any,
) -> AsyncIterator[Rig]:
    """A rig; ``start=False`` leaves the service to the test (a subprocess, say)."""
    settings = access_settings(base, **extra)
    await create_registry_topics(settings, *TOPICS)
    clock = clock or MovableClock()
    labs = labs or [Lab("example-lab", "k1"), Lab("other-lab", "o1")]
    intake = intake_registry_settings(settings)
    service = build_service(settings, clock=clock) if start else None
    try:
        async with (
            intake_relay(intake),
            Producer(settings) as producer,
            TopicWatcher(settings, settings.topic("access.events")) as events,
            TopicWatcher(settings, settings.topic("access.policies")) as policies,
            TopicWatcher(settings, settings.topic("risk.events.dlq")) as risk_dlq,
            TopicWatcher(settings, settings.topic("lab.compliance.dlq")) as compliance_dlq,
        ):
            await register_labs(intake, labs)
            if service is not None:
                await service.start()
                await access_knows(settings, labs)
            yield Rig(
                settings,
                intake,
                service,
                clock,
                producer,
                events,
                policies,
                {"risk.events": risk_dlq, "lab.compliance": compliance_dlq},
                {lab.lab_id: lab for lab in labs},
            )
    finally:
        if service is not None:
            await service.stop()
        await drop_schema(settings)


def service_env(settings: AccessSettings, **overrides: str) -> Mapping[str, str]:
    """Environment for ``python -m services.access`` with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FR_")}
    defaults = AccessSettings.model_fields
    for name, value in settings.model_dump().items():
        if value == defaults[name].default:
            continue  # e.g. otel_exporter "none", which the variable would read as None
        env[f"FR_{name.upper()}"] = "none" if value is None else str(value)
    env["FR_LOG_JSON"] = "false"
    return env | overrides


def start_process(settings: AccessSettings) -> subprocess.Popen[bytes]:
    """The access service as its own process (SIGKILL tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.access"],
        env=service_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no shutdown, no flush; what the process had not committed is lost."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def model_id(lab: str = "example-lab", name: str | None = None) -> str:
    return f"{lab}/{name or 'm-' + uuid.uuid4().hex[:8]}@1"
