"""Connect to the secured broker as a given principal, and ask what it may do.

The stack (deploy/stack.sh) exports where everything is: FR_KAFKA_BOOTSTRAP,
FR_KAFKA_CA_FILE, FR_KAFKA_PRINCIPALS_DIR (one credentials file per principal)
and FR_KAFKA_OPERATOR_CREDENTIALS_FILE. ``Stack.from_env()`` reads them;
``stack.settings_for("intake")`` is the KafkaSettings of that principal.

The probes return the broker's own answer (an error class name or None), so a
test says exactly which refusal it expects:

- ``connect_error``: one raw connection (TLS handshake + SASL);
- ``produce_error``: a produce of one record;
- ``fetch_error``: a Fetch of a partition (what any consumer sends);
- ``group_error``: joining a consumer group on a topic.

``Rig`` is a test's own copy of the deployment: the registry's topics under a
unique prefix, the agency's principals under a unique user prefix, and the
registry's ACL set applied to them (``contracts.acl.AclScope``), so tests can
exercise the real least-privilege set without touching the deployment's topics
or principals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.protocol.fetch import FetchRequest

from contracts.acl import AclScope
from contracts.principals import Principal
from services.runtime.acls import apply_acls
from services.runtime.kafka import KafkaCredentials, KafkaSettings, aiokafka_options
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.principals import LabCredentials, new_password
from services.runtime.topics import TopicPlan, ensure_topics, planned_topics

HINT = 'start the secured stack first: eval "$(bash deploy/stack.sh up)"'

NewLab = Callable[..., Awaitable[LabCredentials]]
"""The ``new_lab`` fixture: ``await new_lab()`` registers a lab, removed after the test."""


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    ca_file: Path
    principals_dir: Path
    operator_file: Path

    @classmethod
    def from_env(cls) -> Stack:
        names = (
            "FR_KAFKA_BOOTSTRAP",
            "FR_KAFKA_CA_FILE",
            "FR_KAFKA_PRINCIPALS_DIR",
            "FR_KAFKA_OPERATOR_CREDENTIALS_FILE",
        )
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            pytest.fail(f"{', '.join(missing)} not set; {HINT}")
        return cls(
            os.environ["FR_KAFKA_BOOTSTRAP"],
            Path(os.environ["FR_KAFKA_CA_FILE"]),
            Path(os.environ["FR_KAFKA_PRINCIPALS_DIR"]),
            Path(os.environ["FR_KAFKA_OPERATOR_CREDENTIALS_FILE"]),
        )

    def settings(self, credentials: Path | KafkaCredentials | None = None) -> KafkaSettings:
        """A SASL_SSL connection as the principal of ``credentials`` (a file or a pair)."""
        base: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_ca_file": self.ca_file,
            "kafka_credentials_file": None,
            "kafka_username": None,
            "kafka_password": None,
        }
        if isinstance(credentials, Path):
            base["kafka_credentials_file"] = credentials
        elif credentials is not None:
            base["kafka_username"] = credentials.username
            base["kafka_password"] = credentials.password
        return KafkaSettings(**base)

    def settings_for(self, principal: str) -> KafkaSettings:
        return self.settings(self.principals_dir / f"{principal}.json")

    @property
    def operator(self) -> KafkaSettings:
        return self.settings(self.operator_file)


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


async def connect_error(settings: KafkaSettings) -> str | None:
    """Open one connection (TLS + SASL) as ``settings``; the refusal's class name."""
    options = aiokafka_options(settings)
    host, port = options.pop("bootstrap_servers").split(",")[0].rsplit(":", 1)
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=10_000, **options)
    except Exception as exc:
        return _error_name(exc)
    conn.close()
    return None


async def produce_error(
    settings: KafkaSettings, topic: str, value: bytes = b"{}", *, key: bytes = b"k"
) -> str | None:
    """Send one record (a plain producer: the least an attacker needs)."""
    producer = AIOKafkaProducer(**aiokafka_options(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 15)
    except Exception as exc:
        return _error_name(exc)
    finally:
        await producer.stop()
    return None


async def fetch_error(settings: KafkaSettings, topic: str, partition: int = 0) -> str | None:
    """The broker's answer to a Fetch of ``topic``/``partition`` from offset 0."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        request = FetchRequest(0, 1, 1 << 20, 1, [(topic, [(partition, 0, 1 << 20)])])
        response = await admin._send_request(request)
    finally:
        await admin.close()
    ((_, partitions),) = response.topics
    code = partitions[0][1]
    return kafka_errors.for_code(code).__name__ if code else None


async def group_error(settings: KafkaSettings, topic: str, group: str) -> str | None:
    """Join ``group`` subscribed to ``topic`` and poll once."""
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=500)
    except Exception as exc:
        return _error_name(exc)
    finally:
        await consumer.stop()
    return None


async def produce(settings: KafkaSettings, topic: str, *records: tuple[bytes, bytes]) -> None:
    producer = AIOKafkaProducer(**aiokafka_options(settings), enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


Records = list[ConsumerRecord[bytes, bytes]]


async def read(
    settings: KafkaSettings,
    topic: str,
    *,
    expected: int = 1,
    until: Callable[[Records], bool] | None = None,
    group: str | None = None,
    timeout: float = 20.0,
) -> Records:
    """Read ``topic`` from the start until ``expected`` records (or ``until`` holds)
    or the deadline."""
    done = until or (lambda records: len(records) >= expected)
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: Records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done(records) and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic`` (how many records it holds)."""
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes the metadata
        partitions = [TopicPartition(topic, n) for n in consumer.partitions_for_topic(topic) or ()]
        offsets = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in offsets.items()}


async def wait_for_topic(settings: KafkaSettings, topic: str, *, exists: bool) -> None:
    """Poll the broker's metadata until ``topic`` exists (or is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with KafkaAdmin(settings) as admin:
        while True:
            answer = (await admin.topic_access([topic]))[topic]
            if (answer.error is None) == exists:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{topic} still {'missing' if exists else 'present'}")
            await asyncio.sleep(0.1)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Rig:
    """The registry's topics and agency principals, prefixed, with the registry's ACLs."""

    stack: Stack
    prefix: str = field(default_factory=lambda: unique("test.sec.") + ".")
    principal_prefix: str = field(default_factory=lambda: unique("rig-") + ".")
    credentials: dict[Principal, KafkaCredentials] = field(default_factory=dict)

    @property
    def scope(self) -> AclScope:
        return AclScope(prefix=self.prefix, principal_prefix=self.principal_prefix)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def settings(self, principal: Principal) -> KafkaSettings:
        return self.stack.settings(self.credentials[principal])

    def topic_plans(self) -> list[TopicPlan]:
        return [TopicPlan(self.topic(p.name), p.partitions, p.config) for p in planned_topics()]

    async def add_principals(self, principals: Iterable[Principal]) -> None:
        """SCRAM users for ``principals`` (random passwords), then the ACL set for all."""
        async with KafkaAdmin(self.stack.operator) as admin:
            for principal in principals:
                credentials = KafkaCredentials(
                    self.principal_prefix + principal.name, new_password()
                )
                await admin.upsert_scram_user(
                    credentials.username, credentials.password.get_secret_value()
                )
                self.credentials[principal] = credentials
            await self.wait_for_users(admin)
            await apply_acls(admin, self.credentials, self.scope)

    async def wait_for_users(self, admin: KafkaAdmin) -> None:
        wanted = {c.username for c in self.credentials.values()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not wanted <= await admin.scram_users():
            if loop.time() > deadline:
                raise TimeoutError("rig users not visible")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        async with KafkaAdmin(self.stack.operator) as admin:
            for credentials in self.credentials.values():
                await admin.delete_scram_user(credentials.username)
            held = {
                g
                for g in await admin.describe_acls()
                if g.principal.startswith(f"User:{self.principal_prefix}")
            }
            await admin.delete_acls(held)
        client = AIOKafkaAdminClient(**aiokafka_options(self.stack.operator))
        await client.start()
        try:
            mine = [t for t in await client.list_topics() if t.startswith(self.prefix)]
            if mine:
                await client.delete_topics(mine)
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def rig(stack: Stack, principals: Iterable[Principal]) -> AsyncIterator[Rig]:
    built = Rig(stack)
    await ensure_topics(stack.operator, built.topic_plans())
    try:
        await built.add_principals(principals)
        yield built
    finally:
        await built.close()
