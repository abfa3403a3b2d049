"""The reviewer's side: build a decision, sign it, publish it, and wait for the answer.

What the reviewer's CLI (``python -m services.risk.cli decide``) runs, and tests too.
A decision is signed by the project's signing rule (services.trust.signatures: Ed25519
over the RFC 8785 form of the data as sent, without ``signature.value``) with the
reviewer's registered key, published on reviewers.decisions keyed by the submission,
and answered on the reviewer's own feed ``reviewer.<id>.answers`` (owner copies of
risk.events' EscalationDecided, accepted, or ReviewerDecisionRejected), which the
reviewer's Kafka principal alone may read.

The answer is matched to what *this* reviewer signed, not to an event id alone: anyone
who can write the topic can copy an event id onto a forged record, whose refusal would
then look like the answer. An EscalationDecided must carry the decision's event id
and the very signature made here (nonce and value); a ReviewerDecisionRejected the
event id and the SHA-256 of the data sent (``received_sha256``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import rfc8785
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from contracts import CloudEvent, ContractViolation, Event, decode, encode, make_event
from contracts.events.reviewers import ReviewerDecisionSubmitted, ReviewerOrder
from contracts.events.risk import EscalationDecided, EscalationDecision, ReviewerDecisionRejected
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME, feeds_of
from services.runtime.settings import RuntimeSettings
from services.trust.signatures import sign_event

DECISIONS = TOPIC_BY_NAME["reviewers.decisions"]
(ANSWERS,) = feeds_of(Role.REVIEWER)
ANSWER_TYPES = {event.TYPE: event for event in ANSWERS.events}
_PLACEHOLDER = "A" * 86 + "=="  # a well-formed value, replaced by the signature


class DecisionError(ValueError):
    """A decision that cannot be built (bad order file, missing times); says why."""


def load_order(
    path: Path,
    *,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    compliance_deadline: datetime | None = None,
) -> dict[str, Any]:
    """The order a reviewer signs, from a YAML file: either a whole order (``scope``,
    ``effective_at``, ``expires_at``, ``compliance_deadline``) or the scope alone, with
    the times given here (these win over the file's). Reviewers who are to sign *the
    same* order sign the same file: the order's hash covers its times too."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DecisionError(f"cannot read the order file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise DecisionError(f"{path}: an order file is a mapping (scope and times)")
    order = dict(document) if "scope" in document else {"scope": document}
    for name, value in (
        ("effective_at", effective_at),
        ("expires_at", expires_at),
        ("compliance_deadline", compliance_deadline),
    ):
        if value is not None:
            order[name] = value
    missing = [n for n in ("effective_at", "compliance_deadline") if order.get(n) is None]
    if missing:
        raise DecisionError(
            f"{path}: the order needs {' and '.join(missing)} (in the file, or "
            + ", ".join(f"--{n.replace('_', '-')}" for n in missing)
            + ")"
        )
    try:
        ReviewerOrder.model_validate(order)
    except ValidationError as exc:
        raise DecisionError(f"{path}: not a valid order:\n{_errors(exc)}") from None
    return order


def build_decision(
    *,
    escalation_id: UUID,
    submission_id: UUID,
    reviewer_id: str,
    key_id: str,
    key: Ed25519PrivateKey,
    decision: EscalationDecision,
    justification: str,
    order: Mapping[str, Any] | None = None,
    interim_order_id: UUID | None = None,
    now: datetime | None = None,
    decision_id: UUID | None = None,
) -> ReviewerDecisionSubmitted:
    """A signed ReviewerDecisionSubmitted (a fresh decision id and nonce each time)."""
    fields: dict[str, Any] = {
        "decision_id": str(decision_id or uuid4()),
        "escalation_id": str(escalation_id),
        "submission_id": str(submission_id),
        "reviewer_id": reviewer_id,
        "decision": decision.value,
        "justification": justification,
        "signature": {
            "key_id": key_id,
            "algorithm": "ed25519",
            "issued_at": (now or datetime.now(UTC)).isoformat(),
            "nonce": secrets.token_urlsafe(18),  # 144 bits
            "value": _PLACEHOLDER,
        },
    }
    if order is not None:
        fields["order"] = dict(order)
    if interim_order_id is not None:
        fields["interim_order_id"] = str(interim_order_id)
    try:
        unsigned = ReviewerDecisionSubmitted.model_validate(fields)
    except ValidationError as exc:
        raise DecisionError(f"not a valid decision:\n{_errors(exc)}") from None
    return sign_event(unsigned, key)


def _errors(exc: ValidationError) -> str:
    return "\n".join(
        "  " + ".".join(str(p) for p in error["loc"]) + f": {error['msg']}"
        for error in exc.errors()
    )


@dataclass(frozen=True)
class Answer:
    """The risk service's answer to one decision."""

    accepted: bool
    event: CloudEvent[Event]

    @property
    def summary(self) -> str:
        return describe(self.event.data)


def describe(data: Event) -> str:
    if isinstance(data, EscalationDecided):
        signed = len(data.signed_by)
        needed = data.reviewers_required or signed
        what = str(data.decision) + (
            f" (order {data.order_sha256[:12]})" if data.order_sha256 else ""
        )
        text = (
            f"accepted: {data.reviewer_id} signed {what} on escalation {data.escalation_id}; "
            f"{signed} of {needed} signature(s) on this decision"
        )
        if data.quorum_met:
            text += "; the quorum is met: the decision takes effect"
            if data.order_id:
                text += f" (order {data.order_id})"
            if data.lifted_order_id:
                text += f"; interim order {data.lifted_order_id} is lifted"
        else:
            text += f"; it takes effect once {needed} reviewers have signed the same decision"
        return text
    if isinstance(data, ReviewerDecisionRejected):
        fields = "".join(f"\n    {e.path}: {e.message}" for e in data.field_errors)
        return f"refused ({data.reason}): {data.detail}{fields}"
    return type(data).__name__


def answer_to(
    sent: CloudEvent[ReviewerDecisionSubmitted], sent_sha256: str, event: CloudEvent[Event]
) -> Answer | None:
    """``event`` as the answer to ``sent``, or None: it must name the sent event's id and
    what was signed (the signature itself, or the digest of the data as sent)."""
    data = event.data
    signature = sent.data.signature
    if isinstance(data, EscalationDecided):
        if (
            data.decision_event_id == sent.id
            and data.signature.nonce == signature.nonce
            and data.signature.value == signature.value
        ):
            return Answer(True, event)
    elif isinstance(data, ReviewerDecisionRejected) and (
        data.rejected_event_id == sent.id and data.received_sha256 == sent_sha256
    ):
        return Answer(False, event)
    return None


@dataclass(frozen=True)
class Outgoing:
    """A decision as it is sent: the CloudEvent, its bytes, the SHA-256 of its data."""

    event: CloudEvent[ReviewerDecisionSubmitted]
    raw: bytes
    data_sha256: str

    def answer(self, event: CloudEvent[Event]) -> Answer | None:
        return answer_to(self.event, self.data_sha256, event)


def prepare(decision: ReviewerDecisionSubmitted, *, event_id: str | None = None) -> Outgoing:
    """The CloudEvent of ``decision`` (a fresh id unless given), encoded."""
    event = make_event(
        decision,
        source=f"/reviewers/{decision.reviewer_id}",
        subject=str(decision.submission_id),
        event_id=event_id,
    )
    raw = encode(event)
    data = json.loads(raw)["data"]
    return Outgoing(event, raw, hashlib.sha256(rfc8785.dumps(data)).hexdigest())


async def submit(
    settings: RuntimeSettings, decision: ReviewerDecisionSubmitted, *, within_s: float = 30.0
) -> Answer:
    """Publish ``decision`` and wait for the risk service's answer to it."""
    return await send(settings, prepare(decision), within_s=within_s)


async def send(settings: RuntimeSettings, outgoing: Outgoing, *, within_s: float = 30.0) -> Answer:
    """Publish a prepared decision and wait for the answer to it.

    Reads the reviewer's answers feed from its end (taken before sending) on the
    partitions of the two keys an answer can have: the submission id (an authenticated
    decision) and the event id (one that did not authenticate). TimeoutError when none
    came in time.
    """
    event = outgoing.event
    decision = event.data
    topic = settings.topic(ANSWERS.topic(decision.reviewer_id))
    producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True, acks="all")
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await producer.start()
    await consumer.start()
    try:
        available = sorted(await producer.partitions_for(topic))
        keys = {str(decision.submission_id).encode(), event.id.encode()}
        partitions = sorted(
            {TopicPartition(topic, DefaultPartitioner()(k, available, available)) for k in keys}
        )
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # fix the starting point before the answer exists
        await producer.send_and_wait(
            settings.topic(DECISIONS.name),
            value=outgoing.raw,
            key=str(decision.submission_id).encode(),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            batch = await consumer.getmany(*partitions, timeout_ms=int(min(left, 0.5) * 1000))
            for records in batch.values():
                for record in records:
                    if record.key not in keys or record.value is None:
                        continue
                    try:
                        answered = decode(record.value, ANSWER_TYPES)
                    except ContractViolation:
                        continue
                    answer = outgoing.answer(answered)
                    if answer is not None:
                        return answer
        raise TimeoutError(
            f"no answer to decision {decision.decision_id} (event {event.id}) within "
            f"{within_s:g} s: is the risk service running?"
        )
    finally:
        await consumer.stop()
        await producer.stop()
