"""Helpers for intake's tests: a lab that signs, a topic watcher, a movable clock."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import CloudEvent, ContractViolation, Event, decode, encode, make_event
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from contracts.registry import TOPIC_BY_NAME, subject_for
from services.labclient import build_submission, build_withdrawal
from services.labclient.signing import sign

EXAMPLE_MANIFEST = Path(__file__).parents[2] / "services/labclient/examples/submission.yaml"
INTAKE_TYPES = TOPIC_BY_NAME["intake.events"].event_types


class MovableClock:
    """Real time plus an offset that tests move forward (an injectable intake Clock)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def manifest(lab_id: str, **overrides: Any) -> dict[str, Any]:
    """The example manifest of ``lab_id`` (its own credential) with a fresh submission id;
    ``model`` and ``evaluation_access`` overrides merge."""
    document: dict[str, Any] = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    document = copy.deepcopy(document)
    document["submission_id"] = str(uuid.uuid4())
    document["lab_id"] = lab_id
    document["evaluation_access"]["credential_ref"] = f"labs/{lab_id}/eval-api-key"
    model = overrides.pop("model", {})
    access = overrides.pop("evaluation_access", {})
    document["model"] |= model
    document["evaluation_access"] |= access
    return document | overrides


@dataclass
class Signer:
    """A lab identity as the lab holds it: lab id, key id, private key."""

    lab_id: str
    key_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def filed(
        self, document: dict[str, Any] | None = None, *, issued_at: datetime | None = None
    ) -> SubmissionFiled:
        return build_submission(
            document or manifest(self.lab_id), self.key, self.key_id, now=issued_at
        )

    def withdrawal(
        self,
        submission_id: uuid.UUID,
        *,
        lab_id: str | None = None,
        issued_at: datetime | None = None,
    ) -> WithdrawalRequested:
        return build_withdrawal(
            submission_id, lab_id or self.lab_id, self.key, self.key_id, now=issued_at
        )

    def resigned(self, event: SubmissionFiled, **signature: Any) -> SubmissionFiled:
        """``event`` with signature fields replaced, signed again by this key."""
        updated = event.signature.model_copy(update=signature)
        return sign(event.model_copy(update={"signature": updated}), self.key)


def envelope(data: Event, *, subject: str | None = None) -> CloudEvent[Event]:
    key = subject or subject_for(data)
    return make_event(data, source="/labs/tests", subject=key)


def raw(event: CloudEvent[Event]) -> bytes:
    return encode(event)


def mutated(event: CloudEvent[Event], change: Callable[[dict[str, Any]], None]) -> bytes:
    """The event's JSON after ``change`` edited the parsed document."""
    document = json.loads(encode(event))
    change(document)
    return json.dumps(document).encode()


class Producer:
    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, topic: str, value: bytes, key: str | None = None) -> tuple[int, int]:
        """Send and wait; returns (partition, offset)."""
        meta = await self.producer.send_and_wait(
            topic, value=value, key=key.encode() if key is not None else None
        )
        return meta.partition, meta.offset


class Watcher:
    """Collects every committed record of a topic from its beginning, in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    def events(self) -> list[CloudEvent[Event]]:
        decoded = []
        for record in self.records:
            try:
                decoded.append(decode(record.value or b"", INTAKE_TYPES))
            except ContractViolation:
                continue
        return decoded

    def about(self, submission_id: uuid.UUID | str) -> list[CloudEvent[Event]]:
        wanted = str(submission_id)
        return [e for e in self.events() if str(getattr(e.data, "submission_id", "")) == wanted]

    def answers(self, event_id: str) -> list[CloudEvent[Event]]:
        """Intake events that answer the input with CloudEvent id ``event_id``."""
        keys = ("filed_event_id", "rejected_event_id", "requested_event_id")
        return [e for e in self.events() if any(getattr(e.data, k, None) == event_id for k in keys)]

    async def wait(
        self, condition: Callable[[], bool], *, timeout: float = 20.0, what: str = "records"
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what} on {self.topic}"
                )
            await asyncio.sleep(0.05)

    async def answer(self, event_id: str, *, timeout: float = 20.0) -> CloudEvent[Event]:
        await self.wait(
            lambda: bool(self.answers(event_id)), timeout=timeout, what=f"answer to {event_id}"
        )
        found = self.answers(event_id)
        assert len(found) == 1, f"{len(found)} answers to {event_id}"
        return found[0]
