"""Compliance through the running service: signed acknowledgements verified with the
trust library against lab keys in access's own schema, refusals answered with a reason,
and ComplianceOverdue raised once per unacknowledged version (real Kafka + PostgreSQL)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from contracts import encode, make_event
from contracts.events.access import ComplianceOverdue, ComplianceRejected
from contracts.events.common import RejectionReason
from contracts.events.lab import ComplianceAcknowledged
from services.labclient.enforcer import AppliedVersion
from services.runtime import RuntimeSettings
from services.trust.refusal import AUTHENTICATION_FAILED_DETAIL
from tests.access.rig import Lab, Rig, applied, model_id, running_rig
from tests.access.support import order
from tests.kit import wait_for

HOUR = 3600.0


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, access_acknowledge_within_s=HOUR) as started:
        yield started


async def restricted(rig: Rig, lab: str = "example-lab") -> AppliedVersion:
    """A model restricted by one order, as a running enforcer of ``lab`` applied it."""
    model = model_id(lab)
    await rig.send(order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC)))
    await rig.version(model, 1)
    async with rig.enforcer(lab) as enforcer:
        await applied(enforcer, model, 1)
        found = enforcer.applied(model)
    assert found is not None
    return found


async def acked(rig: Rig, ack: ComplianceAcknowledged, *, subject: str | None = None) -> str:
    """Publish ``ack`` as the lab's client does (the envelope's subject: the model id)."""
    event = make_event(ack, source=f"/labs/{ack.lab_id}", subject=subject or ack.model_id)
    await rig.send_raw("lab.compliance", encode(event), event.subject)
    return event.id


async def stored(rig: Rig, event_id: str) -> None:
    async def found() -> bool:
        return bool(await rig.fetch("SELECT 1 FROM acknowledgements WHERE event_id = $1", event_id))

    await wait_for(found, what="the acknowledgement stored")


async def rejected(rig: Rig, event_id: str) -> ComplianceRejected:
    answer: ComplianceRejected = await rig.answer(ComplianceRejected, rejected_event_id=event_id)
    return answer


async def test_an_acknowledgement_of_the_applied_version_is_accepted_silently(rig: Rig) -> None:
    version = await restricted(rig)
    lab = rig.labs["example-lab"]
    event_id = await acked(rig, lab.acknowledgement(version))
    await stored(rig, event_id)
    rows = await rig.fetch("SELECT * FROM acknowledgements WHERE event_id = $1", event_id)
    assert rows[0]["version"] == 1 and rows[0]["key_id"] == "k1"
    assert rig.answers(ComplianceRejected, rejected_event_id=event_id) == []


async def test_a_mismatching_content_hash_is_answered_precisely_to_the_lab(rig: Rig) -> None:
    version = await restricted(rig)
    lab = rig.labs["example-lab"]
    event_id = await acked(rig, lab.acknowledgement(version, content_hash="0" * 64))
    answer = await rejected(rig, event_id)
    assert answer.reason is RejectionReason.POLICY_MISMATCH
    assert answer.model_id == version.model_id and answer.policy_version == 1


async def test_an_unknown_version_is_answered_as_unknown_policy(rig: Rig) -> None:
    version = await restricted(rig)
    event_id = await acked(rig, rig.labs["example-lab"].acknowledgement(version, policy_version=9))
    assert (await rejected(rig, event_id)).reason is RejectionReason.UNKNOWN_POLICY


async def test_another_labs_model_is_answered_not_owner_and_not_among_its_records(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    other = rig.labs["other-lab"]
    event_id = await acked(rig, other.acknowledgement(version, lab_id="other-lab"))
    answer = await rejected(rig, event_id)
    assert answer.reason is RejectionReason.NOT_OWNER
    assert answer.model_id is None  # keyed by the event id, not the owner's model


async def test_an_unsigned_acknowledgement_is_refused_as_authentication_failed(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    ack = rig.labs["example-lab"].acknowledgement(version)
    blank = ack.signature.model_copy(update={"value": base64.b64encode(bytes(64)).decode()})
    event_id = await acked(rig, ack.model_copy(update={"signature": blank}))
    answer = await rejected(rig, event_id)
    assert answer.reason is RejectionReason.AUTHENTICATION_FAILED
    assert answer.model_id is None and answer.field_errors == []


async def test_an_acknowledgement_forged_with_another_key_is_refused_as_authentication_failed(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    forger = Lab("example-lab", "k1")  # the right key id, another private key
    event_id = await acked(rig, forger.acknowledgement(version))
    assert (await rejected(rig, event_id)).reason is RejectionReason.AUTHENTICATION_FAILED


async def test_an_unregistered_lab_learns_only_authentication_failed(rig: Rig) -> None:
    version = await restricted(rig)
    stranger = Lab("stranger-lab", "s1")
    ack = stranger.acknowledgement(version, lab_id="stranger-lab")
    answer = await rejected(rig, await acked(rig, ack))
    assert answer.reason is RejectionReason.AUTHENTICATION_FAILED


async def test_a_replayed_acknowledgement_is_refused(rig: Rig) -> None:
    version = await restricted(rig)
    ack = rig.labs["example-lab"].acknowledgement(version)
    await acked(rig, ack)
    again = await acked(rig, ack)  # the same signed data (nonce) under a new event id
    assert (await rejected(rig, again)).reason is RejectionReason.AUTHENTICATION_FAILED


async def test_an_envelope_naming_another_model_is_a_subject_mismatch(rig: Rig) -> None:
    version = await restricted(rig)
    ack = rig.labs["example-lab"].acknowledgement(version)
    event_id = await acked(rig, ack, subject="example-lab/else@1")
    assert (await rejected(rig, event_id)).reason is RejectionReason.SUBJECT_MISMATCH


async def test_a_malformed_acknowledgement_is_answered_with_the_failing_field(rig: Rig) -> None:
    version = await restricted(rig)
    ack = rig.labs["example-lab"].acknowledgement(version)
    document = json.loads(encode(make_event(ack, source="/labs/x", subject=ack.model_id)))
    document["data"]["policy_version"] = "one"
    await rig.send_raw("lab.compliance", json.dumps(document).encode(), ack.model_id)
    answer = await rejected(rig, document["id"])
    assert answer.reason is RejectionReason.SCHEMA_VIOLATION
    assert any("policy_version" in e.path for e in answer.field_errors)


async def test_bytes_that_are_not_json_go_to_the_dead_letter_topic(rig: Rig) -> None:
    await rig.send_raw("lab.compliance", b"\xff not json", "example-lab/x@1")
    dlq = rig.dlq["lab.compliance"]
    await dlq.wait(lambda: any(r.value == b"\xff not json" for r in dlq.records))


# The lab's own feed: access.events is the agency's record, which no lab may read.


async def told(rig: Rig, lab: str, event_id: str) -> ComplianceRejected:
    """The one answer to ``event_id`` on ``lab``'s own answers feed."""
    async with rig.answers_feed(lab) as feed:

        def found() -> list[ComplianceRejected]:
            return [
                e.data
                for e in feed.events()
                if isinstance(e.data, ComplianceRejected) and e.data.rejected_event_id == event_id
            ]

        await feed.wait(lambda: bool(found()), what=f"the answer to {event_id} on {lab}'s feed")
        answers = found()
    assert len(answers) == 1, answers
    return answers[0]


async def test_a_refusal_of_an_authenticated_lab_reaches_its_feed_with_the_precise_reason(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    lab = rig.labs["example-lab"]
    event_id = await acked(rig, lab.acknowledgement(version, content_hash="0" * 64))
    answer = await told(rig, "example-lab", event_id)
    assert answer.reason is RejectionReason.POLICY_MISMATCH
    assert answer.model_id == version.model_id and answer.policy_version == 1
    assert await rig.destinations(event_id) == ["access.events", "labs.example-lab.answers"]


async def test_a_not_owner_refusal_reaches_the_senders_feed_not_the_model_owners(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    other = rig.labs["other-lab"]
    event_id = await acked(rig, other.acknowledgement(version, lab_id="other-lab"))
    assert (await told(rig, "other-lab", event_id)).reason is RejectionReason.NOT_OWNER
    assert await rig.destinations(event_id) == ["access.events", "labs.other-lab.answers"]


def unsigned(rig: Rig, version: AppliedVersion) -> ComplianceAcknowledged:
    ack = rig.labs["example-lab"].acknowledgement(version)
    blank = ack.signature.model_copy(update={"value": base64.b64encode(bytes(64)).decode()})
    return ack.model_copy(update={"signature": blank})


def forged(rig: Rig, version: AppliedVersion) -> ComplianceAcknowledged:
    return Lab("example-lab", "k1").acknowledgement(version)  # right key id, another key


@pytest.mark.parametrize("make", [unsigned, forged], ids=["unsigned", "forged"])
async def test_an_unauthenticated_acknowledgement_reaches_the_claimed_labs_feed_concealed(
    rig: Rig, make: Callable[[Rig, AppliedVersion], ComplianceAcknowledged]
) -> None:
    version = await restricted(rig)
    event_id = await acked(rig, make(rig, version))
    answer = await told(rig, "example-lab", event_id)
    assert answer.reason is RejectionReason.AUTHENTICATION_FAILED
    assert answer.detail == AUTHENTICATION_FAILED_DETAIL and answer.field_errors == []
    assert answer.model_id is None and answer.policy_version is None
    assert await rig.destinations(event_id) == ["access.events", "labs.example-lab.answers"]


async def test_a_malformed_acknowledgement_reaches_the_claimed_labs_feed_with_the_field(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    ack = rig.labs["example-lab"].acknowledgement(version)
    document = json.loads(encode(make_event(ack, source="/labs/x", subject=ack.model_id)))
    document["data"]["policy_version"] = "one"
    await rig.send_raw("lab.compliance", json.dumps(document).encode(), ack.model_id)
    answer = await told(rig, "example-lab", document["id"])
    assert answer.reason is RejectionReason.SCHEMA_VIOLATION
    assert any("policy_version" in e.path for e in answer.field_errors)
    assert await rig.destinations(document["id"]) == [
        "access.events",
        "labs.example-lab.answers",
    ]


async def test_an_acknowledgement_claiming_an_unregistered_lab_is_answered_on_no_feed(
    rig: Rig,
) -> None:
    version = await restricted(rig)
    stranger = Lab("stranger-lab", "s1")
    event_id = await acked(rig, stranger.acknowledgement(version, lab_id="stranger-lab"))
    assert (await rejected(rig, event_id)).reason is RejectionReason.AUTHENTICATION_FAILED
    assert await rig.destinations(event_id) == ["access.events"]  # nothing parked either


# Deadlines: each test with its own rig, because they move its clock.


@pytest.fixture
async def fresh(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, access_acknowledge_within_s=HOUR) as started:
        yield started


async def test_a_version_not_acknowledged_in_time_is_overdue_exactly_once(fresh: Rig) -> None:
    version = await restricted(fresh)
    fresh.clock.advance(HOUR - 60)
    await fresh.events.linger(1.5)
    assert fresh.answers(ComplianceOverdue, model_id=version.model_id) == []
    fresh.clock.advance(61)
    overdue = await fresh.answer(ComplianceOverdue, model_id=version.model_id)
    assert overdue.policy_version == 1 and overdue.content_hash == version.content_hash
    fresh.clock.advance(HOUR)
    await fresh.events.linger(2.0)
    assert len(fresh.answers(ComplianceOverdue, model_id=version.model_id)) == 1


async def test_an_acknowledged_version_is_never_overdue(fresh: Rig) -> None:
    version = await restricted(fresh)
    event_id = await acked(fresh, fresh.labs["example-lab"].acknowledgement(version))
    await stored(fresh, event_id)
    fresh.clock.advance(2 * HOUR)
    await fresh.events.linger(2.0)
    assert fresh.answers(ComplianceOverdue, model_id=version.model_id) == []
    rows = await fresh.fetch(
        "SELECT state FROM timers WHERE kind = 'compliance-overdue' AND key = $1",
        f"{version.model_id}#1",
    )
    assert [r["state"] for r in rows] == ["fired"]
