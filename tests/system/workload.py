"""What the labs (and an attacker, and a broken producer) send in a system test.

A workload is a list of intended submissions, each of a ``Kind`` that fixes how its
review must end, and about 1 % poison records, each with the answer or dead letter it
must get. The labs file with the lab client (signed, published keyed by submission id);
the poison goes straight onto the topics as the test principal writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import encode
from contracts.events.common import make_model_id
from contracts.registry import consumer_group
from services.labclient import LabClient
from services.labclient.signing import build_submission
from tests.kit import Producer
from tests.system.rig import SystemRig

log = logging.getLogger(__name__)

PUBLISH_RETRY_S = 1.0


class Kind(StrEnum):
    """How a submission's review must end."""

    CLEARED = "cleared"  # an image-only model: no suite applies; concluded cleared
    CONFIRMED = "confirmed"  # Inspect finds critical cyber; two reviewers confirm an order
    DISMISSED = "dismissed"  # ... two reviewers dismiss it: the interim order is lifted
    PENDING = "pending"  # ... nobody decides: concluded with the review pending
    REJECTED = "rejected"  # not a covered model: rejected
    WITHDRAWN = "withdrawn"  # filed, then withdrawn while the window is open
    REFILED = "refiled"  # filed twice (same body, new signature): one review, cleared

    @property
    def evaluated(self) -> bool:
        """Whether an Inspect suite runs for it (a text model)."""
        return self in (Kind.CONFIRMED, Kind.DISMISSED, Kind.PENDING)


@dataclass(frozen=True)
class Intended:
    submission_id: UUID
    lab_id: str
    kind: Kind
    manifest: dict[str, Any]

    @property
    def model_id(self) -> str:
        model = self.manifest["model"]
        return make_model_id(self.lab_id, model["name"], model["version"])


def plan_submissions(
    rig: SystemRig, total: int, *, evaluated: int, seed: int, days: tuple[int, int]
) -> list[Intended]:
    """``total`` submissions over the rig's labs: ``evaluated`` text models (a third each
    confirmed, dismissed, pending; filed first, with the longest window), 2 % each
    rejected, withdrawn and re-filed, the rest cleared (windows of ``days``, from..to)."""
    rng = random.Random(seed)
    labs = sorted(rig.labs)
    few = max(2, total // 50)
    kinds = [(Kind.CONFIRMED, Kind.DISMISSED, Kind.PENDING)[i % 3] for i in range(evaluated)]
    rest = [Kind.REJECTED] * few + [Kind.WITHDRAWN] * few + [Kind.REFILED] * few
    rest += [Kind.CLEARED] * (total - evaluated - len(rest))
    rng.shuffle(rest)
    planned = []
    for index, kind in enumerate(kinds + rest):
        lab_id = labs[index % len(labs)]
        manifest = rig.manifest(
            lab_id,
            profile="capable",
            modalities=["text"] if kind.evaluated else ["image"],
            review_days=30 if kind.evaluated else rng.randint(*days),
            compute=1e20 if kind is Kind.REJECTED else 3.2e26,
        )
        planned.append(Intended(UUID(manifest["submission_id"]), lab_id, kind, manifest))
    return planned


# --- poison -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poison:
    """A record that must not be applied, and what must come of it instead."""

    what: str
    topic: str  # the registry topic it is published on (unprefixed)
    key: bytes
    value: bytes
    dead_letters: tuple[tuple[str, str], ...] = ()  # (consumer group, reason) in <topic>.dlq
    answer: str | None = None  # reason of the SubmissionRejected answering its event id
    event_id: str | None = None


def _envelope(event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/frontier-review/harness",
        "type": event_type,
        "subject": subject,
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }


def plan_poison(
    rig: SystemRig, planned: Sequence[Intended], *, seed: int, per_kind: int
) -> list[Poison]:
    """About 1 % poison: on lab.submissions undecodable bytes, oversized records (JSON,
    then not) and forged signatures over real submissions' bodies; on each internal
    topic, records that are not JSON, of no type the topic carries, or out of schema,
    keyed by real submissions (they share those submissions' partitions)."""
    rng = random.Random(seed)
    prefix = rig.settings.intake.topic_prefix
    group = {
        name: tuple(prefix + consumer_group(service, name) for service in readers)
        for name, readers in {
            "lab.submissions": ("intake",),
            "intake.events": ("evaluation", "risk"),
            "evaluation.events": ("risk",),
            "risk.events": ("access",),
        }.items()
    }
    limit = rig.settings.intake.max_message_bytes
    victims = [p for p in planned if p.kind is Kind.CLEARED]
    attacker = Ed25519PrivateKey.generate()
    poison: list[Poison] = []

    def victim() -> Intended:
        return rng.choice(victims)

    for _ in range(per_kind):
        key = str(victim().submission_id).encode()
        poison.append(
            Poison(
                "undecodable bytes",
                "lab.submissions",
                key,
                b"\x00\xff" + rng.randbytes(200),
                tuple((g, "malformed_json") for g in group["lab.submissions"]),
            )
        )
        blob = rng.randbytes(limit + 1000)
        poison.append(
            Poison(
                "oversized bytes",
                "lab.submissions",
                key,
                blob,
                tuple((g, "oversized") for g in group["lab.submissions"]),
            )
        )
        target = victim()
        lab = rig.labs[target.lab_id]
        forged = build_submission(target.manifest, attacker, lab.key_id)  # the lab's key id
        event = LabClient(lab_id=target.lab_id).envelope(forged)
        poison.append(
            Poison(
                "forged signature",
                "lab.submissions",
                str(target.submission_id).encode(),
                encode(event),
                answer="authentication_failed",
                event_id=event.id,
            )
        )
        stranger = uuid.uuid4()
        document = _envelope(
            "frontier_review.lab.SubmissionFiled",
            str(stranger),
            {"submission_id": str(stranger), "lab_id": target.lab_id, "notes": "x" * limit},
        )
        poison.append(
            Poison(
                "oversized event",
                "lab.submissions",
                str(stranger).encode(),
                json.dumps(document).encode(),
                answer="oversized",
                event_id=document["id"],
            )
        )
        for topic, accepted_type in (
            ("intake.events", "frontier_review.intake.SubmissionAccepted"),
            ("evaluation.events", "frontier_review.evaluation.EvaluationCompleted"),
            ("risk.events", "frontier_review.risk.RestrictionOrdered"),
        ):
            subject = str(victim().submission_id)
            key = subject.encode()
            out_of_schema = _envelope(accepted_type, subject, {"submission_id": "not-a-uuid"})
            unknown = _envelope("frontier_review.harness.Bogus", subject, {})
            for what, value, reason in (
                ("not JSON", b"{" + rng.randbytes(64), "malformed_json"),
                ("unknown type", json.dumps(unknown).encode(), "unknown_event_type"),
                ("out of schema", json.dumps(out_of_schema).encode(), "schema_violation"),
            ):
                poison.append(
                    Poison(what, topic, key, value, tuple((g, reason) for g in group[topic]))
                )
    return poison


# --- filing -------------------------------------------------------------------------------


@dataclass
class Filing:
    """What the labs actually sent (a re-sent filing is re-signed: a duplicate)."""

    sent: dict[UUID, list[str]] = field(default_factory=dict)  # submission -> event ids
    withdrawals: dict[UUID, str] = field(default_factory=dict)
    retries: int = 0
    published: int = 0


async def _publish(client: LabClient, action: Any, filing: Filing) -> Any:
    """Publish until the broker takes it (a lab re-sends when its broker is away)."""
    while True:
        try:
            return await action()
        except KafkaError as exc:
            filing.retries += 1
            log.info("lab %s: publish failed (%r); sending again", client.lab_id, exc)
            await asyncio.sleep(PUBLISH_RETRY_S)


async def file_one(client: LabClient, intended: Intended, filing: Filing) -> None:
    manifest = intended.manifest
    sent = await _publish(client, lambda: client.submit(manifest), filing)
    filing.sent.setdefault(intended.submission_id, []).append(sent.id)
    if intended.kind is Kind.REFILED:
        again = await _publish(client, lambda: client.submit(manifest), filing)
        filing.sent[intended.submission_id].append(again.id)
    if intended.kind is Kind.WITHDRAWN:
        withdrawal = await _publish(
            client, lambda: client.withdraw(intended.submission_id, "release postponed"), filing
        )
        filing.withdrawals[intended.submission_id] = withdrawal.id
    filing.published += 1


async def send_poison(producer: Producer, rig: SystemRig, poison: Poison) -> None:
    while True:
        try:
            await producer.send(rig.topic(poison.topic), poison.value, poison.key)
            return
        except KafkaError:
            await asyncio.sleep(PUBLISH_RETRY_S)


async def file_all(
    rig: SystemRig,
    planned: Sequence[Intended],
    poison: Sequence[Poison],
    *,
    rate: float,
    filing: Filing,
    concurrency: int = 64,
) -> None:
    """Every planned submission at ``rate`` per second (the poison mixed in at random
    points), each lab through its own client; returns once the broker has all of it."""
    rng = random.Random(len(planned))
    schedule: list[Intended | Poison] = list(planned)
    for record in poison:
        schedule.insert(rng.randrange(len(planned) // 10, len(schedule) + 1), record)
    clients = {lab_id: rig.lab_client(lab_id) for lab_id in rig.labs}
    gate = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        producer = await stack.enter_async_context(Producer(rig.settings.intake))

        async def one(item: Intended | Poison) -> None:
            async with gate:
                if isinstance(item, Poison):
                    await send_poison(producer, rig, item)
                else:
                    await file_one(clients[item.lab_id], item, filing)

        for index, item in enumerate(schedule):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
            tasks.append(asyncio.create_task(one(item)))
        await asyncio.gather(*tasks)


def of_kind(planned: Iterable[Intended], *kinds: Kind) -> list[Intended]:
    return [p for p in planned if p.kind in kinds]
