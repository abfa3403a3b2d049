"""docs/lab-guide.md: current with the code, and its examples valid records.

The examples are read back from the document's text (not from the generator), then
decoded and verified by the agency's own code paths (the contracts' strict decoding,
the trust library's signature and freshness checks, and ``authenticate`` against a
key registry on the real PostgreSQL), so what a lab copies from the guide is what the
agency accepts.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from contracts import decode
from contracts.events.common import RejectionReason
from contracts.events.intake import SubmissionAccepted
from contracts.events.lab import ComplianceAcknowledged, SubmissionFiled, WithdrawalRequested
from contracts.registry import LAB_FEEDS, TOPIC_BY_NAME, subject_for
from contracts.violation import DECODE_REASONS
from docs import lab_guide
from docs.lab_examples import (
    APPENDED_AFTER,
    EXAMPLE_KEY_ID,
    LAB_ID,
    SIGNED_AT,
    example_public_key,
)
from docs.lab_guide import GUIDE, ShownRecord, shown_records
from services.labclient.client import LabClient
from services.labclient.settings import LabSettings
from services.runtime.context import Record
from services.runtime.deadletter import dead_letter
from services.runtime.migrations import migrate
from services.trust import TRUST_SQL, registry
from services.trust.freshness import (
    IMPLAUSIBLE_APPEND_TIME,
    FreshnessPolicy,
    Receipt,
    check_freshness,
)
from services.trust.principals import LAB, PrincipalKey
from services.trust.refusal import SHAPE_REASONS
from services.trust.signatures import signature_valid
from services.trust.unverified import SignedInput, check_subject, read_signed
from services.trust.verifier import Authenticated, authenticate

DOCUMENT = GUIDE.read_text()
LAB_RECORDS = shown_records(DOCUMENT, "lab-examples")
ANSWER_RECORDS = shown_records(DOCUMENT, "answer-examples")


def section(name: str) -> str:
    pattern = rf"<!-- BEGIN GENERATED {name}: [^>]*-->\n(.*?)<!-- END GENERATED {name} -->"
    match = re.search(pattern, DOCUMENT, re.DOTALL)
    assert match is not None, f"no section {name}"
    return match.group(1)


def first_column(table: str) -> list[str]:
    """The code-quoted first cells of a markdown table's rows."""
    return re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)


def test_the_guide_is_what_the_code_generates_now() -> None:
    assert lab_guide.stale_sections(DOCUMENT) == []


def test_a_changed_generated_section_is_reported_stale() -> None:
    edited = DOCUMENT.replace("`cyber-offense`", "`cyber-defence`", 1)
    assert lab_guide.stale_sections(edited) == ["criteria"]


def test_the_guide_links_from_the_contracts_readme() -> None:
    readme = (GUIDE.parents[1] / "contracts" / "README.md").read_text()
    assert "../docs/lab-guide.md" in readme


def test_there_is_one_signed_example_per_lab_event() -> None:
    shown = [decode(r.value, TOPIC_BY_NAME[r.topic].event_types).data for r in LAB_RECORDS]
    assert [type(data) for data in shown] == [
        SubmissionFiled,
        WithdrawalRequested,
        ComplianceAcknowledged,
    ]


@pytest.mark.parametrize("record", LAB_RECORDS, ids=lambda r: r.topic + ":" + r.key)
def test_each_lab_example_decodes_strictly_and_verifies_with_the_example_key(
    record: ShownRecord,
) -> None:
    topic = TOPIC_BY_NAME[record.topic]
    event = decode(record.value, topic.event_types, external=True)
    assert event.subject == record.key == subject_for(event.data)
    assert record.headers["content-type"] == "application/cloudevents+json"
    signed = read_signed(record.value, principal_field="lab_id")
    assert isinstance(signed, SignedInput), signed
    assert check_subject(event.subject, signed, topic.key) is None
    assert signature_valid(example_public_key(), signed.data, signed.signature.value)
    issued_at = event.data.signature.issued_at  # type: ignore[attr-defined]
    appended = Receipt(event.id, now=issued_at + timedelta(seconds=5), appended_at=issued_at)
    assert check_freshness(issued_at, appended, FreshnessPolicy()) is None


@pytest.mark.parametrize("record", LAB_RECORDS, ids=lambda r: r.topic + ":" + r.key)
def test_each_lab_example_has_the_envelope_the_agencys_lab_client_builds(
    record: ShownRecord,
) -> None:
    shown = decode(record.value, TOPIC_BY_NAME[record.topic].event_types)
    client = LabClient(lab_id=LAB_ID, settings=LabSettings(lab_id=LAB_ID))
    built = client.envelope(shown.data)  # type: ignore[arg-type]
    attributes = ("specversion", "source", "type", "subject", "datacontenttype", "dataschema")
    assert {a: getattr(shown, a) for a in attributes} == {a: getattr(built, a) for a in attributes}
    assert client.topic_for(built) == record.topic


@pytest.fixture
async def conn(database: str, schema: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A fresh schema with the trust tables, the example lab and its example key registered."""
    connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        database, server_settings={"search_path": schema}
    )
    try:
        await migrate(connection, schema, TRUST_SQL)
        since = SIGNED_AT - timedelta(days=1)
        assert await registry.register(connection, LAB, LAB_ID, "Example", since) is None
        key = PrincipalKey(
            "lab",
            LAB_ID,
            EXAMPLE_KEY_ID,
            example_public_key(),
            since,
            None,
            None,
        )
        assert await registry.add_key(connection, LAB, key, since) is None
        yield connection
    finally:
        await connection.close()


async def test_each_lab_example_authenticates_once_as_the_example_lab_at_its_append_time(
    conn: asyncpg.Connection[asyncpg.Record],
) -> None:
    for record in LAB_RECORDS:
        signed = read_signed(record.value, principal_field="lab_id")
        assert isinstance(signed, SignedInput), signed
        appended = signed.signature.issued_at + APPENDED_AFTER
        received = Receipt(record.key, now=appended + timedelta(seconds=1), appended_at=appended)
        policy = FreshnessPolicy()
        sender = await authenticate(conn, signed, kind=LAB, received=received, policy=policy)
        assert isinstance(sender, Authenticated), sender
        assert (sender.principal_id, sender.key_id) == (LAB_ID, EXAMPLE_KEY_ID)
        again = await authenticate(conn, signed, kind=LAB, received=received, policy=policy)
        assert not isinstance(again, Authenticated)
        assert again.reason is RejectionReason.REPLAYED_NONCE


@pytest.mark.parametrize("record", LAB_RECORDS, ids=lambda r: r.topic + ":" + r.key)
def test_each_lab_example_fails_verification_once_its_data_changes(record: ShownRecord) -> None:
    tampered = record.value.replace(b'"lab_id": "example-lab"', b'"lab_id": "example-lab2"', 1)
    assert tampered != record.value
    signed = read_signed(tampered, principal_field="lab_id")
    assert isinstance(signed, SignedInput), signed
    assert not signature_valid(example_public_key(), signed.data, signed.signature.value)


def test_there_is_an_example_of_every_answer_a_lab_feed_carries() -> None:
    shown = {decode(r.value, ANSWER_TYPES).data.TYPE for r in ANSWER_RECORDS}
    assert shown == set(ANSWER_TYPES)


ANSWER_TYPES = {event.TYPE: event for feed in LAB_FEEDS for event in feed.events}


@pytest.mark.parametrize("record", ANSWER_RECORDS, ids=lambda r: r.topic + ":" + r.key)
def test_each_answer_example_decodes_on_its_feed_keyed_as_the_agency_keys_it(
    record: ShownRecord,
) -> None:
    feed = next(f for f in LAB_FEEDS if f.topic(LAB_ID) == record.topic)
    event = decode(record.value, {e.TYPE: e for e in feed.events})
    assert event.subject == record.key
    assert record.headers["ce_type"] == event.type
    assert record.key == subject_for(event.data)


def test_the_bound_answers_quote_the_signature_of_the_example_they_answer() -> None:
    sent = [decode(r.value, TOPIC_BY_NAME[r.topic].event_types) for r in LAB_RECORDS]
    filing = next(e.data for e in sent if isinstance(e.data, SubmissionFiled))
    filing_id = next(e.id for e in sent if isinstance(e.data, SubmissionFiled))
    answers = [decode(r.value, ANSWER_TYPES).data for r in ANSWER_RECORDS]
    accepted = next(a for a in answers if isinstance(a, SubmissionAccepted))
    assert accepted.filed_event_id == filing_id
    assert accepted.signature_sha256 == hashlib.sha256(filing.signature.value.encode()).hexdigest()


def test_the_reason_table_lists_every_reason_code_in_the_codes_order() -> None:
    table = section("reasons").split("\n\n")[0]
    assert first_column(table) == [reason.value for reason in RejectionReason]


def test_the_reasons_told_without_authentication_are_the_trust_librarys() -> None:
    told = re.findall(r"^\| `([^`]+)` \| as is \|", section("reasons"), re.MULTILINE)
    assert set(told) == {r.value for r in SHAPE_REASONS} | {"authentication_failed"}


def test_the_dlq_headers_are_the_ones_a_dead_letter_carries() -> None:
    record = Record(
        topic="lab.submissions",
        partition=0,
        offset=0,
        key=None,
        headers={"content-type": b"application/cloudevents+json", "traceparent": b"00-x"},
        timestamp_ms=0,
        log_append_time=True,
    )
    letter = dead_letter(record, b"", reason="r", error="e", consumer="c", attempts=1, at=SIGNED_AT)
    table = section("dlq").split("Reasons (`dlq.reason`):")[0]
    assert first_column(table) == list(letter.headers)


def test_every_reason_the_runtime_and_the_lab_services_dead_letter_with_is_listed() -> None:
    listed = set(first_column(section("dlq").split("Reasons (`dlq.reason`):")[1]))
    assert {"handler_failed", "apply_failed", "event_id_reused"} <= dead_letter_reasons()
    assert dead_letter_reasons() | set(DECODE_REASONS) | {"oversized"} <= listed


def dead_letter_reasons() -> set[str]:
    """String reasons the runtime, intake, access and trust dead-letter with: constants
    assigned to ``reason``, passed to ``_dead_letter`` or given to ``PermanentError``."""
    root = Path(__file__).resolve().parents[2] / "services"
    reasons: set[str] = set()
    for package in ("runtime", "intake", "access", "trust"):
        for path in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "reason" for t in node.targets
                ):
                    reasons |= _strings([node.value])
                elif isinstance(node, ast.Call):
                    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                    if name == "_dead_letter":
                        reasons |= _strings(node.args[1:2])
                    elif name == "PermanentError":
                        reasons |= _strings(node.args[:1])
    reasons.add(IMPLAUSIBLE_APPEND_TIME)  # trust raises it by its constant
    return reasons


def _strings(nodes: list[ast.expr]) -> set[str]:
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
