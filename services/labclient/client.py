"""Publish signed lab input to Kafka and follow what the agency answered on the lab's
own answers feed."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, TracerProvider

from contracts import CloudEvent, ContractViolation, Event, decode, encode, make_event
from contracts.events.access import ComplianceRejected
from contracts.events.common import RejectionReason, SignedEvent
from contracts.events.intake import (
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.events.lab import ComplianceAcknowledged, SubmissionFiled, WithdrawalRequested
from contracts.events.risk import ReviewConcluded
from contracts.registry import LAB_FEED_BY_SUFFIX, subject_for
from services.labclient.settings import LabSettings
from services.labclient.signing import (
    body_sha256,
    build_acknowledgement,
    build_submission,
    build_withdrawal,
)
from services.runtime.kafka import aiokafka_options

ANSWER_TYPES = {event.TYPE: event for event in LAB_FEED_BY_SUFFIX["answers"].events}
# Rejections on a submission's content bind its id to that body, like an acceptance:
# re-sending the same body is a duplicate of that decision.
BINDING_REJECTIONS = frozenset(
    {
        RejectionReason.NOT_COVERED_MODEL,
        RejectionReason.ENDPOINT_NOT_HTTPS,
        RejectionReason.ENDPOINT_NOT_ALLOWED,
        RejectionReason.CREDENTIAL_NOT_OWNED,
    }
)


@dataclass(frozen=True)
class Outcome:
    """Intake's answer to one published input."""

    status: str  # accepted | rejected | duplicate | withdrawn | withdrawal_rejected
    event: CloudEvent[Event]
    summary: str
    # Bound to what this client signed (the answer quotes its signature's digest). An
    # unbound answer under our event id is a refusal of input that did not authenticate:
    # ours (a wrong key, a stale signature) or someone else's record under a copied id.
    bound: bool = True


def signature_sha256(sent: CloudEvent[Any]) -> str:
    """The digest an answer bound to ``sent`` quotes (``signature_sha256``)."""
    return hashlib.sha256(sent.data.signature.value.encode()).hexdigest()


def describe(event: CloudEvent[Event]) -> str:
    """One line for a human, for any answer on the lab's feed."""
    data = event.data
    if isinstance(data, SubmissionAccepted):
        return (
            f"accepted ({data.reason}): review window of {data.review_days} days, "
            f"deadline {data.deadline.isoformat()}; model id {data.model_id}"
        )
    if isinstance(data, SubmissionRejected | WithdrawalRejected):
        what = "withdrawal rejected" if isinstance(data, WithdrawalRejected) else "rejected"
        fields = "".join(f"\n    {e.path}: {e.message}" for e in data.field_errors)
        return f"{what} ({data.reason}): {data.detail}{fields}"
    if isinstance(data, SubmissionWithdrawn):
        return f"withdrawn at {data.withdrawn_at.isoformat()}"
    if isinstance(data, ReviewWindowClosed):
        return f"review window closed at {data.closed_at.isoformat()}"
    if isinstance(data, ReviewConcluded):
        level = f", overall level {data.overall_level}" if data.overall_level else ""
        return f"review concluded: {data.outcome}{level}"
    if isinstance(data, ComplianceRejected):
        return f"compliance acknowledgement rejected ({data.reason}): {data.detail}"
    return event.type


def answer_to(sent: CloudEvent[Any], event: CloudEvent[Event]) -> Outcome | None:
    """``event`` as the answer to ``sent``, or None when it answers something else.

    An answer naming ``sent``'s event id counts only if it is bound to ``sent``'s
    signature, or bound to none (a refusal of unauthenticated input, reported as
    unbound): an answer bound to another signature is the answer to another record.
    A filing whose body was filed before (a duplicate) is answered by a copy of the
    original decision bound to it (``duplicate_event_id``); the original decision, or
    a copy answering another duplicate, is its answer too, but unbound.
    """
    data = event.data
    quoted = getattr(data, "signature_sha256", None)
    ours = signature_sha256(sent)
    if quoted is not None and quoted != ours:
        answered = {
            getattr(data, name, None)
            for name in (
                "rejected_event_id",
                "filed_event_id",
                "requested_event_id",
                "duplicate_event_id",
            )
        }
        if sent.id in answered:
            return None  # bound to someone else's signature under our id
    bound = quoted is not None
    duplicate_bound = quoted == ours and getattr(data, "duplicate_event_id", None) == sent.id
    if isinstance(sent.data, WithdrawalRequested):
        if isinstance(data, SubmissionWithdrawn) and data.requested_event_id == sent.id:
            return Outcome("withdrawn", event, describe(event), bound)
        if isinstance(data, WithdrawalRejected) and data.rejected_event_id == sent.id:
            return Outcome("withdrawal_rejected", event, describe(event), bound)
        return None
    if not isinstance(sent.data, SubmissionFiled):
        return None
    duplicate = f"duplicate; the original stands: {describe(event)}"
    if isinstance(data, SubmissionAccepted):
        if data.filed_event_id == sent.id:
            return Outcome("accepted", event, describe(event), bound)
        if data.body_sha256 == body_sha256(sent.data):
            return Outcome("duplicate", event, duplicate, duplicate_bound)
    if isinstance(data, SubmissionRejected):
        if data.rejected_event_id == sent.id:
            return Outcome("rejected", event, describe(event), bound)
        if data.reason in BINDING_REJECTIONS and data.body_sha256 == body_sha256(sent.data):
            return Outcome("duplicate", event, duplicate, duplicate_bound)
    return None


UNBOUND_GRACE_S = 5.0
SENT_POSITIONS_KEPT = 10_000  # the send positions a client remembers, newest


@dataclass(frozen=True)
class FeedPosition:
    """Where the lab's answers feed stood: per partition, the offset of the next record
    (``read_committed``: the last stable offset, so nothing an open agency transaction
    may still commit is skipped). A partition it does not name is read from its
    beginning, so ``FROM_BEGINNING`` (no partitions) is the whole history."""

    offsets: Mapping[int, int] = field(default_factory=dict)


FROM_BEGINNING = FeedPosition()


def answer_keys(sent: CloudEvent[Any]) -> set[str]:
    """The record keys intake's answer to ``sent`` may carry: the submission id (its
    subject, unless the record was built otherwise), or the event id for input intake
    could not trust for the submission."""
    named = getattr(sent.data, "submission_id", None)
    return {sent.subject, sent.id} | ({str(named)} if named is not None else set())


class FeedMissing(RuntimeError):
    """The lab's answers feed does not exist (or this principal may not see it)."""


class LabClient:
    """One lab's identity (lab id, key id, private key) and its Kafka connection.

    Use as ``async with LabClient(...) as client:``; building and signing work
    without a broker, following works without a key. The connection is the lab's
    own principal (``LabSettings``, from ``FR_*`` when not given): it writes the lab
    input topics and reads its answers on ``labs.<lab id>.answers``, nothing else.

    Each publish is a PRODUCER span (of ``tracer_provider``, else OpenTelemetry's global
    one: none recorded unless the lab configured tracing) whose W3C context travels in
    the record's headers, so the agency's trace of the submission continues the lab's.

    Before it sends a filing or a withdrawal, ``publish`` notes where the answers feed
    stands on the partitions its answer can land on (``sent_position``); ``outcome``
    reads from there, so a lab's long history of answers is never read again.
    """

    def __init__(
        self,
        *,
        lab_id: str,
        key_id: str | None = None,
        key: Ed25519PrivateKey | None = None,
        settings: LabSettings | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.lab_id = lab_id
        self.key_id = key_id
        self.key = key
        self.settings = settings or LabSettings()
        self.submissions_topic = self.settings.topic("lab.submissions")
        self.compliance_topic = self.settings.topic("lab.compliance")
        self.answers_topic = self.settings.feed("answers", lab_id)
        self.source = f"/labs/{lab_id}"
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None  # asks the feed's end offsets
        self._starting = asyncio.Lock()  # concurrent first publishes start one producer
        self._sent: OrderedDict[str, FeedPosition] = OrderedDict()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._offsets is not None:
            await self._offsets.stop()
            self._offsets = None

    # building (no broker needed) ------------------------------------------------------
    def _identity(self) -> tuple[Ed25519PrivateKey, str]:
        if self.key is None or self.key_id is None:
            raise ValueError("signing needs the lab's private key and its registered key id")
        return self.key, self.key_id

    def submission(self, manifest: dict[str, Any]) -> SubmissionFiled:
        return build_submission(manifest, *self._identity())

    def withdrawal(self, submission_id: UUID, reason: str | None = None) -> WithdrawalRequested:
        key, key_id = self._identity()
        return build_withdrawal(submission_id, self.lab_id, key, key_id, reason=reason)

    def acknowledgement(self, fields: dict[str, Any]) -> ComplianceAcknowledged:
        return build_acknowledgement(fields, *self._identity())

    def envelope(self, data: SignedEvent) -> CloudEvent[SignedEvent]:
        """The CloudEvent to publish: subject = the record key (submission or model id)."""
        return make_event(data, source=self.source, subject=subject_for(data))

    # publishing -----------------------------------------------------------------------
    def topic_for(self, event: CloudEvent[Any]) -> str:
        if isinstance(event.data, ComplianceAcknowledged):
            return self.compliance_topic
        return self.submissions_topic

    async def publish(self, event: CloudEvent[Any]) -> CloudEvent[Any]:
        """Send and wait for the broker's acknowledgement; the key is the subject.

        A filing or withdrawal is sent only after the answers feed's position was
        noted (``sent_position``): its answer is appended after it. Raises
        ``FeedMissing`` (nothing sent) when the lab has no answers feed."""
        producer = await self._started_producer()
        topic = self.topic_for(event)
        if topic == self.submissions_topic:
            self._remember(event.id, await self.position(answer_keys(event)))
        with self.tracer.start_as_current_span(
            f"{topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "cloudevents.event_type": event.type,
            },
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            await producer.send_and_wait(
                topic,
                value=encode(event),
                key=event.subject.encode(),
                headers=[("content-type", b"application/cloudevents+json")]
                + [(name, value.encode()) for name, value in carrier.items()],
            )
        return event

    async def submit(self, manifest: dict[str, Any]) -> CloudEvent[SubmissionFiled]:
        event = self.envelope(self.submission(manifest))
        await self.publish(event)
        return event  # type: ignore[return-value]

    async def withdraw(
        self, submission_id: UUID, reason: str | None = None
    ) -> CloudEvent[WithdrawalRequested]:
        event = self.envelope(self.withdrawal(submission_id, reason))
        await self.publish(event)
        return event  # type: ignore[return-value]

    def sent_position(self, event: CloudEvent[Any]) -> FeedPosition | None:
        """Where the answers feed stood when this client published ``event`` (None if it
        did not, or so long ago that it forgot: it keeps the latest 10,000)."""
        return self._sent.get(event.id)

    def _remember(self, event_id: str, position: FeedPosition) -> None:
        self._sent[event_id] = position
        self._sent.move_to_end(event_id)
        while len(self._sent) > SENT_POSITIONS_KEPT:
            self._sent.popitem(last=False)

    async def _started_producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **aiokafka_options(self.settings), enable_idempotence=True, acks="all"
                )
                await producer.start()
                self._producer = producer
            return self._producer

    # following ------------------------------------------------------------------------
    async def _answer_partitions(self, keys: Iterable[str]) -> list[TopicPartition]:
        """The partitions of the answers feed that ``keys`` hash to (the default
        partitioner, which the agency's relay uses too)."""
        producer = await self._started_producer()
        try:
            available = sorted(
                await asyncio.wait_for(producer.partitions_for(self.answers_topic), 30)
            )
        except (TimeoutError, KafkaError) as exc:
            raise FeedMissing(
                f"cannot read {self.answers_topic}: is lab {self.lab_id!r} registered with "
                "the agency, and are these its Kafka credentials?"
            ) from exc
        return sorted(
            {
                TopicPartition(
                    self.answers_topic, DefaultPartitioner()(key.encode(), available, available)
                )
                for key in keys
            }
        )

    async def position(self, keys: Iterable[str]) -> FeedPosition:
        """Where the answers feed stands now on the partitions ``keys`` hash to: what a
        follower that must miss nothing from now on starts from."""
        partitions = await self._answer_partitions(keys)
        async with self._starting:
            if self._offsets is None:
                consumer = AIOKafkaConsumer(
                    **aiokafka_options(self.settings),
                    group_id=None,
                    enable_auto_commit=False,
                    isolation_level="read_committed",  # end offsets = last stable offsets
                )
                await consumer.start()
                self._offsets = consumer
            offsets = self._offsets
        ends = await offsets.end_offsets(partitions)
        return FeedPosition({tp.partition: offset for tp, offset in ends.items()})

    async def follow(
        self,
        submission_id: UUID,
        *,
        seconds: float = 30.0,
        event_ids: tuple[str, ...] = (),
        deadline: Callable[[], float] | None = None,
        since: FeedPosition = FROM_BEGINNING,
    ) -> AsyncIterator[CloudEvent[Event]]:
        """The agency's answers about ``submission_id``, oldest first, for ``seconds``.

        Reads the lab's answers feed, only the partitions the keys hash to, from
        ``since`` (by default their beginning: the whole history), committed records
        only. Intake keys an answer by the input's event id instead of the submission
        id when the input may not speak for the submission (it failed authentication,
        or the submission is another lab's): pass those event ids to see them too.
        ``deadline`` (the loop time to stop at, asked again at every poll) may end it sooner.
        """
        keys = {str(key) for key in (submission_id, *event_ids)}
        partitions = await self._answer_partitions(keys)
        wanted = {key.encode() for key in keys}
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            for partition in partitions:
                if partition.partition in since.offsets:
                    consumer.seek(partition, since.offsets[partition.partition])
                else:
                    await consumer.seek_to_beginning(partition)
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while (left := min(end, deadline() if deadline else end) - loop.time()) > 0:
                batch = await consumer.getmany(*partitions, timeout_ms=int(min(left, 0.5) * 1000))
                for records in batch.values():
                    for record in records:
                        if record.key not in wanted or record.value is None:
                            continue
                        try:
                            yield decode(record.value, ANSWER_TYPES)
                        except ContractViolation:
                            continue  # a newer event type this client doesn't know
        finally:
            await consumer.stop()

    async def outcome(
        self,
        sent: CloudEvent[Any],
        *,
        within_s: float = 30.0,
        since: FeedPosition | None = None,
    ) -> Outcome:
        """Wait for intake's answer to ``sent`` (a filing or a withdrawal).

        Reads the answers feed from ``since``, by default from where it stood when
        this client published ``sent`` (``sent_position``); for input another process
        sent, pass ``since`` (``FROM_BEGINNING`` reads the history). The answer is
        keyed by the submission id, or by ``sent.id`` when intake could not trust the
        input for that submission: both are followed. A duplicate (the same body
        filed again) is answered with a copy of the original decision bound to it.
        """
        start = since or self.sent_position(sent)
        if start is None:
            raise ValueError(
                f"event {sent.id} was not published by this client: pass since= "
                "(FROM_BEGINNING reads the whole feed)"
            )
        submission_id: UUID = sent.data.submission_id
        unbound: Outcome | None = None
        loop = asyncio.get_running_loop()
        end = [loop.time() + within_s]  # moved sooner by an unbound answer
        async for event in self.follow(
            submission_id,
            seconds=within_s,
            event_ids=(sent.id,),
            deadline=lambda: end[0],
            since=start,
        ):
            answer = answer_to(sent, event)
            if answer is not None and answer.bound:
                return answer
            if answer is not None and unbound is None:
                # A bound answer (to our record, if the unbound one answered a copy of
                # it) comes within moments, from the same consumer: wait that long only.
                unbound = answer
                end[0] = min(end[0], loop.time() + UNBOUND_GRACE_S)
        if unbound is not None:
            return unbound  # nothing bound to our signature came: report what did
        raise TimeoutError(f"no answer to event {sent.id} within {within_s:g} s")
