"""Every hostile record found so far, on the real intake: answered or dead-lettered once.

tests.contracts.hostile.POISONS holds the shapes that broke intake once (issue 8:
NUL in a CloudEvent id or in the notes, a 5000-digit integer, ``"30"`` as review
days, duplicate JSON keys, UTF-16, non-canonical submission ids, ...). The decoding
tests replay them in-process; here each goes onto a running intake's
lab.submissions, at the production message limit, ahead of a genuine filing on the
same partition. Each must end as its answer (reason and failing field) or as one
dead-letter record with its reason, none may stop the partition (the genuine filing
behind them is accepted), and none may leave a submission, history or a spent nonce.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from contracts.events.common import RejectionReason
from contracts.events.intake import SubmissionAccepted, SubmissionRejected
from services.runtime import RuntimeSettings
from tests.contracts.examples import SUBMISSION_ID
from tests.contracts.hostile import POISONS
from tests.intake.rig import Rig, running_rig
from tests.intake.support import envelope, raw

R = RejectionReason
PRODUCTION_MAX_MESSAGE_BYTES = RuntimeSettings.model_fields["max_message_bytes"].default


@dataclass(frozen=True)
class Answered:
    """Intake answers the sender: this reason, these failing fields, this text in them."""

    reason: RejectionReason
    fields: tuple[str, ...] = ()
    says: str = ""


@dataclass(frozen=True)
class DeadLettered:
    """Nobody could read an answer (nothing addresses one): one DLQ record, this reason."""

    reason: str


NUL = "U+0000 (NUL), which PostgreSQL cannot store"
SURROGATE = "a lone surrogate, which PostgreSQL cannot store"
NOT_AN_INTEGER = "Input should be a valid integer"
NOT_CANONICAL = "UUID in canonical form"

EXPECTED: dict[str, Answered | DeadLettered] = {
    # Items 2 and 19: unstorable strings are refused at decode, with an answer.
    "NUL in the CloudEvent id": Answered(R.INVALID_ENVELOPE, ("id",), NUL),
    "lone surrogate in the CloudEvent id": Answered(R.INVALID_ENVELOPE, ("id",), SURROGATE),
    # Control characters (an ESC, a newline) would forge log lines and terminal output.
    "control characters in the CloudEvent id": Answered(
        R.INVALID_ENVELOPE, ("id",), "should match pattern"
    ),
    "NUL in the notes": Answered(R.SCHEMA_VIOLATION, ("data.notes",), NUL),
    "NUL in a contact name": Answered(R.SCHEMA_VIOLATION, ("data.contacts.0.name",), NUL),
    # Item 16: no number stops a partition.
    "5000-digit training compute": Answered(R.MALFORMED_JSON),
    "NaN": Answered(R.MALFORMED_JSON),
    "-Infinity": Answered(R.MALFORMED_JSON),
    "100,000 nested arrays": DeadLettered("malformed_json"),
    # Item 18: lab input is strict, nothing is coerced.
    '"30" as review days': Answered(
        R.SCHEMA_VIOLATION, ("data.requested_review_days",), NOT_AN_INTEGER
    ),
    "true as review days": Answered(
        R.SCHEMA_VIOLATION, ("data.requested_review_days",), NOT_AN_INTEGER
    ),
    '"3.2e26" as training compute': Answered(
        R.SCHEMA_VIOLATION, ("data.model.training_compute_flop",), "valid number"
    ),
    # Item 20: what was signed can't depend on the parser; UTF-8 only; ids as signed.
    "duplicate review days": Answered(
        R.MALFORMED_JSON, ("data.requested_review_days",), "duplicate member name"
    ),
    "UTF-16 with a byte order mark": DeadLettered("malformed_json"),
    "UTF-16 without a byte order mark": DeadLettered("malformed_json"),
    "UTF-32": DeadLettered("malformed_json"),
    "UTF-8 byte order mark": DeadLettered("malformed_json"),
    "upper-case submission id": Answered(
        R.SCHEMA_VIOLATION, ("data.submission_id",), NOT_CANONICAL
    ),
    "hyphen-less submission id": Answered(
        R.SCHEMA_VIOLATION, ("data.submission_id",), NOT_CANONICAL
    ),
}
LAB_POISONS = {n: value for n, (topic, value) in POISONS.items() if topic == "lab.submissions"}
EVENT_ID = re.compile(rb'"id":\s*"([0-9a-f-]{36})"')


def event_id_of(value: bytes) -> str | None:
    """The poison's CloudEvent id when it is a storable one (make_event's UUIDs)."""
    found = EVENT_ID.search(value)
    return found.group(1).decode() if found else None


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, max_message_bytes=PRODUCTION_MAX_MESSAGE_BYTES) as started:
        yield started


def test_every_poison_on_lab_submissions_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(LAB_POISONS)


async def test_each_poison_is_answered_or_dead_lettered_once_and_the_partition_moves_on(
    rig: Rig,
) -> None:
    filed = rig.signers["a1"].filed()
    genuine = envelope(filed)
    positions: dict[str, tuple[int, int]] = {}
    for name, value in LAB_POISONS.items():  # on the genuine filing's key: its partition
        positions[name] = await rig.send(value, genuine.subject)
    await rig.send(raw(genuine), genuine.subject)

    # Behind every poison on its partition: had one stalled it, no answer would come.
    assert isinstance((await rig.events.answer(genuine.id)).data, SubmissionAccepted)

    answered = {n: e for n, e in EXPECTED.items() if isinstance(e, Answered)}
    with_id = {n: i for n in answered if (i := event_id_of(LAB_POISONS[n])) is not None}
    without_id = sorted(set(answered) - set(with_id))
    dead = {n: e for n, e in EXPECTED.items() if isinstance(e, DeadLettered)}

    def idless_answers() -> list[SubmissionRejected]:
        """Answers to records whose id could not be stored: they name the submission id."""
        return [
            e.data
            for e in rig.events.events()
            if isinstance(e.data, SubmissionRejected)
            and e.data.rejected_event_id is None
            and e.data.submission_id == SUBMISSION_ID
        ]

    def dead_letters(position: tuple[int, int]) -> list[dict[str, str]]:
        found = []
        for record in rig.dlq.records:
            headers = {k: v.decode() for k, v in record.headers}
            origin = (int(headers["dlq.origin.partition"]), int(headers["dlq.origin.offset"]))
            if origin == position:
                found.append(headers)
        return found

    await rig.events.wait(
        lambda: (
            all(rig.events.answers(i) for i in with_id.values())
            and len(idless_answers()) >= len(without_id)
        ),
        what="an answer to every addressable poison",
    )
    await rig.dlq.wait(
        lambda: all(dead_letters(positions[n]) for n in dead), what="every unaddressable poison"
    )
    await rig.events.linger(1.0)  # a second answer or dead letter would come now

    for name, event_id in with_id.items():
        expected = answered[name]
        [event] = rig.events.answers(event_id)
        assert isinstance(event.data, SubmissionRejected), (name, event.data)
        assert event.data.reason is expected.reason, (name, event.data.detail)
        assert tuple(e.path for e in event.data.field_errors) == expected.fields, name
        assert all(expected.says in e.message for e in event.data.field_errors), name
        assert event.data.submission_id is None and event.subject == event_id, name
        assert not dead_letters(positions[name]), f"{name}: answered, not dead-lettered"
    idless = idless_answers()
    assert len(idless) == len(without_id), "one answer to each record with an unstorable id"
    for name in without_id:
        expected = answered[name]
        [answer] = [a for a in idless if any(expected.says in e.message for e in a.field_errors)]
        assert answer.reason is expected.reason, (name, answer.detail)
        assert tuple(e.path for e in answer.field_errors) == expected.fields, name
        assert not dead_letters(positions[name]), f"{name}: answered, not dead-lettered"
    for name, expected_dead in dead.items():
        [headers] = dead_letters(positions[name])
        assert headers["dlq.reason"] == expected_dead.reason, (name, headers["dlq.error"])

    # Only the genuine filing left a trace: no submission, history or nonce for a poison.
    submissions = await rig.fetch("SELECT submission_id FROM submissions")
    assert [r["submission_id"] for r in submissions] == [filed.submission_id]
    history = await rig.fetch("SELECT event_id FROM submission_history")
    assert [r["event_id"] for r in history] == [genuine.id]
    nonces = await rig.fetch("SELECT principal_id FROM trust_nonces")
    assert [r["principal_id"] for r in nonces] == ["lab-a"]
