"""Answers from the send position: the lab client reads its feed from where it stood when
it sent, and intake answers a duplicate filing with a copy of the original decision bound
to the duplicate's signature, on the lab's feed only, a bounded number of times per hour
(real Kafka + PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from contracts.events.common import RejectionReason
from contracts.events.intake import SubmissionAccepted, SubmissionRejected
from contracts.registry import LAB_FEED_BY_SUFFIX
from services.intake.app import build_service
from services.labclient import FROM_BEGINNING, LabClient
from services.labclient.client import ANSWER_TYPES, signature_sha256
from services.runtime import RuntimeSettings
from tests.intake.rig import Rig, resolve_test_hosts, running_rig
from tests.intake.support import Signer, envelope, raw
from tests.kit import MovableClock, TopicWatcher, lab_settings
from tests.kit.manifests import manifest

ANSWERS = LAB_FEED_BY_SUFFIX["answers"]
LIMIT = 2  # duplicates answered per submission and hour in the limited rig


def to_next_hour(clock: MovableClock) -> None:
    """Move ``clock`` just past the start of the next clock hour: the hourly counts a
    test makes then all fall into one hour."""
    now = clock.now()
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    clock.advance((start - now).total_seconds() + 5)


@pytest.fixture(scope="module")
async def limited(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, intake_duplicates_answered_per_hour=LIMIT) as started:
        to_next_hour(started.clock)
        yield started


def client_of(rig: Rig, signer: Signer) -> LabClient:
    return LabClient(
        lab_id=signer.lab_id,
        key_id=signer.key_id,
        key=signer.key,
        settings=lab_settings(rig.settings, signer.lab_id),
    )


def feed_of(rig: Rig, lab_id: str) -> TopicWatcher:
    """The lab's own answers feed, as the lab reads it."""
    return TopicWatcher(
        rig.settings, lab_settings(rig.settings, lab_id).feed("answers"), ANSWER_TYPES
    )


def copies(feed: TopicWatcher, submission_id: Any) -> list[Any]:
    """The re-sent decisions (answers to duplicates) about ``submission_id`` on a feed."""
    return [d for d in feed.of(submission_id) if getattr(d, "duplicate_event_id", None)]


async def conflict_after(rig: Rig, signer: Signer, document: dict[str, Any]) -> None:
    """A conflicting filing of the same id (same key, same partition) and its answer: once
    it is answered, everything sent before it on that submission was processed."""
    marker = await rig.publish(signer.filed(document | {"notes": "a different body"}))
    answer = (await rig.events.answer(marker.id)).data
    assert isinstance(answer, SubmissionRejected) and answer.reason is RejectionReason.CONFLICT


async def test_a_duplicate_filing_is_answered_with_the_original_acceptance_bound_to_it(
    rig: Rig,
) -> None:
    lab = rig.signers["a1"]
    document = manifest(lab.lab_id)
    async with client_of(rig, lab) as client:
        first = await client.submit(document)
        original = await client.outcome(first, within_s=20)
        again = await client.submit(document)  # same body, new signature and event id
        outcome = await client.outcome(again, within_s=20)

    assert original.status == "accepted" and original.bound
    assert outcome.status == "duplicate" and outcome.bound, outcome.summary
    copy, decided = outcome.event.data, original.event.data
    assert isinstance(copy, SubmissionAccepted) and isinstance(decided, SubmissionAccepted)
    assert copy.duplicate_event_id == again.id
    assert copy.signature_sha256 == signature_sha256(again) != decided.signature_sha256
    assert outcome.event.id != original.event.id
    # The original decision, unchanged but for what binds it to the duplicate.
    binding = {"duplicate_event_id", "signature_sha256"}
    assert copy.model_dump(exclude=binding) == decided.model_dump(exclude=binding)
    assert copy.filed_event_id == first.id


async def test_a_duplicate_of_a_refused_filing_gets_the_original_refusal_with_its_fields(
    rig: Rig,
) -> None:
    lab = rig.signers["a1"]
    document = manifest(lab.lab_id, evaluation_access={"credential_ref": "labs/lab-b/their-key"})
    async with client_of(rig, lab) as client:
        first = await client.submit(document)
        original = await client.outcome(first, within_s=20)
        again = await client.submit(document)
        outcome = await client.outcome(again, within_s=20)

    refused = original.event.data
    assert isinstance(refused, SubmissionRejected)
    assert refused.reason is RejectionReason.CREDENTIAL_NOT_OWNED and refused.field_errors
    assert outcome.status == "duplicate" and outcome.bound, outcome.summary
    copy = outcome.event.data
    assert isinstance(copy, SubmissionRejected)
    assert (copy.duplicate_event_id, copy.signature_sha256) == (again.id, signature_sha256(again))
    assert copy.rejected_event_id == first.id
    assert (copy.reason, copy.detail, copy.field_errors) == (
        refused.reason,
        refused.detail,
        refused.field_errors,
    )


async def test_the_copy_goes_to_the_labs_feed_only_never_to_intake_events(rig: Rig) -> None:
    """Evaluation and risk read intake.events: a second SubmissionAccepted there would be a
    second review. The lab's feed has the original and the copy."""
    lab = rig.signers["a1"]
    document = manifest(lab.lab_id)
    submission_id = uuid.UUID(document["submission_id"])
    async with feed_of(rig, lab.lab_id) as feed:
        first = await rig.publish(lab.filed(document))
        await rig.events.answer(first.id)
        again = await rig.publish(lab.filed(document))
        await feed.wait(lambda: bool(copies(feed, submission_id)), what="the copy")
        await conflict_after(rig, lab, document)
        await feed.linger(1.0)
        on_feed = [type(d).__name__ for d in feed.of(submission_id)]

    internal = rig.events.about(submission_id)
    assert [type(e.data).__name__ for e in internal] == ["SubmissionAccepted", "SubmissionRejected"]
    assert not any(getattr(e.data, "duplicate_event_id", None) for e in rig.events.events())
    assert on_feed == ["SubmissionAccepted", "SubmissionAccepted", "SubmissionRejected"]
    (copy,) = copies(feed, submission_id)
    assert copy.duplicate_event_id == again.id


async def test_the_outcome_starts_where_the_feed_stood_when_the_input_was_sent(
    rig: Rig,
) -> None:
    """The feed already holds answers (this module's and three more filings'); the
    position noted at sending is the feed's end (last stable offsets) as an independent
    reader sees it just before, and the outcome is read from there."""
    lab = rig.signers["a1"]
    for _ in range(3):
        await rig.answer(lab.filed())
    topic = lab_settings(rig.settings, lab.lab_id).feed("answers")
    reader = AIOKafkaConsumer(
        **rig.settings.kafka_options(), group_id=None, isolation_level="read_committed"
    )
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(ANSWERS.partitions)]
        ends = {tp.partition: n for tp, n in (await reader.end_offsets(partitions)).items()}
    finally:
        await reader.stop()
    assert sum(ends.values()) >= 3, ends

    async with client_of(rig, lab) as client:
        sent = await client.submit(manifest(lab.lab_id))
        position = client.sent_position(sent)
        outcome = await client.outcome(sent, within_s=20)

    assert position is not None and position.offsets
    assert position.offsets == {p: ends[p] for p in position.offsets}
    assert outcome.status == "accepted" and outcome.bound


async def test_an_answer_older_than_the_send_is_not_its_outcome(limited: Rig) -> None:
    """Past the hourly limit a duplicate gets no copy: its outcome then finds nothing from
    its send position (the original acceptance is older), where reading the feed from the
    beginning finds the original, unbound to this duplicate."""
    lab = limited.signers["a1"]
    document = manifest(lab.lab_id)
    async with client_of(limited, lab) as client:
        first = await client.submit(document)
        accepted = await client.outcome(first, within_s=20)
        for _ in range(LIMIT):
            answered = await client.submit(document)
            assert (await client.outcome(answered, within_s=20)).bound
        beyond = await client.submit(document)
        with pytest.raises(TimeoutError):
            await client.outcome(beyond, within_s=3)
        history = await client.outcome(beyond, within_s=20, since=FROM_BEGINNING)

    assert history.status == "duplicate" and not history.bound
    assert history.event.id == accepted.event.id


async def test_a_flood_of_one_duplicate_is_answered_at_most_the_hourly_limit(
    limited: Rig,
) -> None:
    lab = limited.signers["a1"]
    document = manifest(lab.lab_id)
    submission_id = uuid.UUID(document["submission_id"])
    async with feed_of(limited, lab.lab_id) as feed:
        first = await limited.publish(lab.filed(document))
        await limited.events.answer(first.id)
        flood = [await limited.publish(lab.filed(document)) for _ in range(8)]
        await conflict_after(limited, lab, document)
        await feed.linger(1.0)
        answered = copies(feed, submission_id)

    assert [c.duplicate_event_id for c in answered] == [e.id for e in flood[:LIMIT]]
    (row,) = await limited.fetch(
        "SELECT duplicates, duplicates_in_hour FROM submissions WHERE submission_id = $1",
        submission_id,
    )
    assert (row["duplicates"], row["duplicates_in_hour"]) == (8, 8), "every one is counted"
    history = await limited.fetch(
        "SELECT count(*) AS n FROM submission_history WHERE submission_id = $1 "
        "AND kind = 'duplicate'",
        submission_id,
    )
    assert history[0]["n"] == LIMIT, "a history row per answered duplicate only"


async def test_a_redelivered_duplicate_is_answered_once(limited: Rig) -> None:
    """The duplicate's record delivered again (intake stopped, its consumer group moved
    back to that record, intake started): the inbox skips it, so there is one copy."""
    lab = limited.signers["a1"]
    document = manifest(lab.lab_id)
    submission_id = uuid.UUID(document["submission_id"])
    async with feed_of(limited, lab.lab_id) as feed:
        first = await limited.publish(lab.filed(document))
        await limited.events.answer(first.id)
        again = envelope(lab.filed(document))
        partition, offset = await limited.send(raw(again), again.subject)
        await feed.wait(lambda: bool(copies(feed, submission_id)), what="the copy")

        (consumer,) = limited.service.consumers
        await limited.service.stop()
        await rewind(limited.settings, consumer.group, limited.submissions_topic, partition, offset)
        limited.service = build_service(
            limited.settings, clock=limited.clock, resolver=resolve_test_hosts
        )
        await limited.service.start()
        await conflict_after(limited, lab, document)
        await feed.linger(1.0)
        answered = copies(feed, submission_id)

    assert [c.duplicate_event_id for c in answered] == [again.id]
    (row,) = await limited.fetch(
        "SELECT duplicates FROM submissions WHERE submission_id = $1", submission_id
    )
    assert row["duplicates"] == 1


async def rewind(
    settings: RuntimeSettings, group: str, topic: str, partition: int, offset: int
) -> None:
    """Commit ``offset`` for ``group`` (not running): its next consumer starts there."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()
