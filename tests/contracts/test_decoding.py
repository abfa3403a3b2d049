"""Decoding hostile bytes: every input ends as an event or a ContractViolation with a
stable reason and the failing field paths; external input is read strictly."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from contracts import ContractViolation, Event, decode, encode
from contracts.events import (
    ComplianceAcknowledged,
    RejectionReason,
    SubmissionAccepted,
    SubmissionFiled,
    field_errors,
)
from contracts.events.lab import LabInput
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.parsing import MAX_DEPTH, MAX_MEMBERS, parse_json, salvage_json
from contracts.registry import EVENTS, TOPIC_BY_NAME, TOPICS, topic_for
from contracts.schemas import SCHEMA_DIR
from contracts.violation import DECODE_REASONS, MAX_ERRORS, storable
from tests.contracts.examples import SUBMISSION_ID, example_event
from tests.contracts.hostile import (
    DIGITS_5000,
    POISONS,
    UPPER_UUID,
    changed,
    document,
    dumps,
    filed,
    filed_raw,
    nested,
    with_member,
)

LAB = TOPIC_BY_NAME["lab.submissions"]
INTAKE = TOPIC_BY_NAME["intake.events"]


def refusal(raw: bytes, topic: str = "lab.submissions", **kwargs: Any) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        decode(raw, TOPIC_BY_NAME[topic].event_types, **kwargs)
    return caught.value


def paths(violation: ContractViolation) -> set[str]:
    return {error.path for error in field_errors(violation)}


# --- the decision table: hostile input -> reason and field paths -----------------

MALFORMED, ENVELOPE, SCHEMA = "malformed_json", "invalid_envelope", "schema_violation"

# name -> (reason, failing paths; None where the JSON text has no field to name)
EXPECTED: dict[str, tuple[str, set[str] | None]] = {
    "NUL in the CloudEvent id": (ENVELOPE, {"id"}),
    "lone surrogate in the CloudEvent id": (ENVELOPE, {"id"}),
    "control characters in the CloudEvent id": (ENVELOPE, {"id"}),
    "NUL in the notes": (SCHEMA, {"data.notes"}),
    "NUL in a contact name": (SCHEMA, {"data.contacts.0.name"}),
    "NUL in an internal id": (ENVELOPE, {"id"}),
    "NUL in an ignored internal field": (SCHEMA, {"data.later"}),
    "a bare JSON string holding NUL": (ENVELOPE, {"<root>"}),
    "5000-digit training compute": (MALFORMED, None),
    "5000-digit integer in an ignored internal field": (MALFORMED, None),
    "100,000 nested arrays": (MALFORMED, None),
    "65 nested arrays in an extension attribute": (MALFORMED, None),
    "NaN": (MALFORMED, None),
    "NaN in an ignored internal field": (MALFORMED, None),
    "-Infinity": (MALFORMED, None),
    "UTF-16 with a byte order mark": (MALFORMED, None),
    "UTF-16 without a byte order mark": (MALFORMED, None),
    "UTF-32": (MALFORMED, None),
    "UTF-8 byte order mark": (MALFORMED, None),
    "duplicate review days": (MALFORMED, {"data.requested_review_days"}),
    '"30" as review days': (SCHEMA, {"data.requested_review_days"}),
    "true as review days": (SCHEMA, {"data.requested_review_days"}),
    '"3.2e26" as training compute': (SCHEMA, {"data.model.training_compute_flop"}),
    "upper-case submission id": (SCHEMA, {"data.submission_id"}),
    "hyphen-less submission id": (SCHEMA, {"data.submission_id"}),
    "upper-case order id": (SCHEMA, {"data.order_ids.0"}),
    "urn external finding id": (SCHEMA, {"data.external_finding_id"}),
}


def test_every_poison_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(POISONS)


@pytest.mark.parametrize("name", POISONS)
def test_poison_is_refused_with_its_reason_and_paths(name: str) -> None:
    topic, raw = POISONS[name]
    reason, expected_paths = EXPECTED[name]
    violation = refusal(raw, topic)
    assert violation.reason == reason, violation
    if expected_paths is not None:
        assert paths(violation) == expected_paths
    assert RejectionReason(violation.reason).value == reason


MORE: dict[str, tuple[str, bytes, str, set[str] | None]] = {
    "empty record": ("lab.submissions", b"", MALFORMED, None),
    "only whitespace": ("intake.events", b" \n", MALFORMED, None),
    "trailing bytes": ("lab.submissions", filed_raw() + b"x", MALFORMED, None),
    "not UTF-8": (
        "lab.submissions",
        filed("data.notes", "x").replace(b'"x"', b'"\xff"'),
        MALFORMED,
        None,
    ),
    "an encoded surrogate (CESU-8)": (
        "intake.events",
        dumps(changed(document(SubmissionAccepted), "id", "x")).replace(b'"x"', b'"\xed\xa0\x80"'),
        MALFORMED,
        None,
    ),
    "a raw control character in a string": (
        "lab.submissions",
        filed("data.notes", "x").replace(b'"x"', b'"\x01"'),
        MALFORMED,
        None,
    ),
    "Infinity in an ignored internal field": (
        "intake.events",
        with_member(encode(example_event(SubmissionAccepted)), '"x":Infinity'),
        MALFORMED,
        None,
    ),
    "a JSON array": ("lab.submissions", b"[]", ENVELOPE, None),
    "a JSON string": ("intake.events", b'"event"', ENVELOPE, None),
    "JSON null": ("lab.submissions", b"null", ENVELOPE, None),
    "a number": ("intake.events", b"1", ENVELOPE, None),
    "NUL in a member name of the data": (
        "lab.submissions",
        dumps(changed(document(SubmissionFiled), "data.no\x00tes", "x")),
        SCHEMA,
        {"data.no\\u0000tes"},
    ),
    "NUL in an extension attribute": (
        "lab.submissions",
        filed("comment", "\x00"),
        ENVELOPE,
        {"comment"},
    ),
    "NUL in the subject and the notes: the envelope's first": (
        "lab.submissions",
        dumps(changed(changed(document(SubmissionFiled), "subject", "\x00"), "data.notes", "\x00")),
        ENVELOPE,
        {"subject"},
    ),
    "duplicate CloudEvent id": (
        "lab.submissions",
        filed_raw().replace(b'{"specversion"', b'{"id":"other","specversion"', 1),
        MALFORMED,
        {"id"},
    ),
    "duplicate member of a nested model": (
        "lab.submissions",
        filed_raw().replace(b'"family":"Frontier"', b'"family":"Frontier","family":"Other"'),
        MALFORMED,
        {"data.model.family"},
    ),
    "400-digit training compute (a finite literal, an infinite float)": (
        "lab.submissions",
        filed_raw().replace(b"3.2e+26", b"9" * 400),
        SCHEMA,
        {"data.model.training_compute_flop"},
    ),
    "1e400 training compute": (
        "lab.submissions",
        filed_raw().replace(b"3.2e+26", b"1e400"),
        SCHEMA,
        {"data.model.training_compute_flop"},
    ),
    "14.0 as review days": (
        "lab.submissions",
        filed("data.requested_review_days", 14.0),
        SCHEMA,
        {"data.requested_review_days"},
    ),
    "a number as the release date": (
        "lab.submissions",
        filed("data.model.planned_release_date", 20000),
        SCHEMA,
        {"data.model.planned_release_date"},
    ),
    "a number as issued_at": (
        "lab.submissions",
        filed("data.signature.issued_at", 1767225600),
        SCHEMA,
        {"data.signature.issued_at"},
    ),
    "a number as the envelope time": (
        "lab.submissions",
        filed("time", 1767225600),
        ENVELOPE,
        {"time"},
    ),
    "a number as the CloudEvent id": ("lab.submissions", filed("id", 7), ENVELOPE, {"id"}),
    "missing type": (
        "lab.submissions",
        dumps({k: v for k, v in document(SubmissionFiled).items() if k != "type"}),
        ENVELOPE,
        {"type"},
    ),
    "a list as the type": ("lab.submissions", filed("type", ["x"]), ENVELOPE, {"type"}),
    "an unknown type": (
        "lab.submissions",
        filed("type", "frontier_review.lab.Other"),
        "unknown_event_type",
        None,
    ),
    "an unknown type and a broken envelope: the envelope's first": (
        "lab.submissions",
        dumps(changed(changed(document(SubmissionFiled), "type", "x.Other"), "time", "yesterday")),
        ENVELOPE,
        {"time"},
    ),
    "a broken envelope and data: only the envelope's paths": (
        "lab.submissions",
        dumps(changed(changed(document(SubmissionFiled), "time", "yesterday"), "data.notes", 5)),
        ENVELOPE,
        {"time"},
    ),
    "data not an object": ("lab.submissions", filed("data", [1]), SCHEMA, {"data"}),
    "an object of more members than external input may have": (
        "lab.submissions",
        filed("data.model", {f"m{i}": 0 for i in range(MAX_MEMBERS + 1)}),
        MALFORMED,
        None,
    ),
    "an object of as many members as external input may have": (
        "lab.submissions",
        filed("data.model", {f"m{i}": 0 for i in range(MAX_MEMBERS)}),
        SCHEMA,
        None,
    ),
}


@pytest.mark.parametrize("name", MORE)
def test_hostile_shape_is_refused_with_its_reason_and_paths(name: str) -> None:
    topic, raw, reason, expected_paths = MORE[name]
    violation = refusal(raw, topic)
    assert violation.reason == reason, violation
    if expected_paths is not None:
        assert paths(violation) == expected_paths


# --- what is still accepted ------------------------------------------------------


def test_nesting_up_to_the_depth_limit_is_accepted() -> None:
    # The root object is level 1, so an attribute may hold MAX_DEPTH - 1 arrays.
    raw = with_member(encode(example_event(SubmissionAccepted)), f'"x":{nested(MAX_DEPTH - 1)}')
    assert decode(raw, INTAKE.event_types).data == example_event(SubmissionAccepted).data


def test_an_integer_of_4300_digits_is_json_and_left_to_the_schema() -> None:
    violation = refusal(filed_raw().replace(b"3.2e+26", b"9" * 4300))
    assert violation.reason == "schema_violation"
    assert paths(violation) == {"data.model.training_compute_flop"}


def test_an_escaped_surrogate_pair_is_one_storable_character() -> None:
    raw = filed("data.notes", "\U0001f600 ok")
    assert b"\\ud83d\\ude00" in raw
    event = decode(raw, LAB.event_types)
    assert isinstance(event.data, SubmissionFiled)
    assert event.data.notes == "\U0001f600 ok"


def test_an_escaped_backslash_before_u0000_is_text_not_nul() -> None:
    raw = filed("data.notes", "\\u0000 is how JSON writes NUL")
    event = decode(raw, LAB.event_types)
    assert isinstance(event.data, SubmissionFiled)
    assert event.data.notes == "\\u0000 is how JSON writes NUL"


def test_internal_records_keep_the_last_duplicate_as_pydantic_core_does() -> None:
    raw = encode(example_event(SubmissionAccepted)).replace(
        b'"review_days":14', b'"review_days":3,"review_days":14'
    )
    assert b'"review_days":3' in raw
    event = decode(raw, INTAKE.event_types)
    assert isinstance(event.data, SubmissionAccepted)
    assert event.data.review_days == 14


def test_the_external_flag_makes_an_internal_topic_strict() -> None:
    raw = encode(example_event(SubmissionAccepted)).replace(
        b'"review_days":14', b'"review_days":3,"review_days":14'
    )
    assert refusal(raw, "intake.events", external=True).reason == "malformed_json"
    lax = changed(document(SubmissionAccepted), "data.review_days", "14")
    decode(dumps(lax), INTAKE.event_types)  # internal events stay tolerant readers
    strict = refusal(dumps(lax), "intake.events", external=True)
    assert paths(strict) == {"data.review_days"}


def test_lab_input_is_strict_without_the_flag() -> None:
    """Strictness is the model's: a caller that forgets ``external`` cannot make it lax."""
    raw = filed("data.requested_review_days", "30")
    assert refusal(raw, external=False).reason == "schema_violation"


def test_canonical_ids_are_kept_exactly_as_sent() -> None:
    event = decode(filed_raw(), LAB.event_types)
    assert isinstance(event.data, SubmissionFiled)
    assert str(event.data.submission_id) == str(SUBMISSION_ID)
    assert json.loads(encode(event))["data"]["submission_id"] == str(SUBMISSION_ID)


def test_python_callers_may_still_pass_uuid_objects_and_any_uuid_text() -> None:
    filed_event = example_event(SubmissionFiled).data
    assert isinstance(filed_event, SubmissionFiled)
    copy = SubmissionFiled.model_validate(filed_event.model_dump() | {"submission_id": UPPER_UUID})
    assert str(copy.submission_id) == UPPER_UUID.lower()


# --- what a violation carries ---------------------------------------------------


def test_a_violation_reports_at_most_100_bounded_storable_errors() -> None:
    doc = document(SubmissionFiled)
    for i in range(200):
        doc["data"][f"unknown-{i}-" + "x" * 2000] = i
    violation = refusal(dumps(doc))
    assert violation.reason == "schema_violation"
    assert len(violation.errors) == MAX_ERRORS
    assert all(len(error.path) <= 500 for error in field_errors(violation))
    assert len(violation.detail) <= 2000


def test_a_violation_names_an_unstorable_member_name_storably() -> None:
    violation = refusal(dumps(changed(document(SubmissionFiled), "data.\ud800", 1)))
    assert violation.reason == "schema_violation"
    assert all(storable(text) for text in [violation.detail, *violation.errors])
    assert paths(violation) == {"data.\\ud800"}


# --- parse_json and salvage_json -------------------------------------------------


@pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.__name__)
def test_parse_json_reads_every_decodable_event_as_sent(model: type[Event]) -> None:
    raw = encode(example_event(model))
    topic = topic_for(model)
    decode(raw, topic.event_types, external=topic.external)
    assert parse_json(raw, external=topic.external) == json.loads(raw)


def test_parse_json_refuses_duplicates_only_for_external_input() -> None:
    raw = b'{"a":1,"b":{"c":2,"c":3}}'
    assert parse_json(raw, external=False) == {"a": 1, "b": {"c": 3}}
    with pytest.raises(ContractViolation) as caught:
        parse_json(raw, external=True)
    assert caught.value.reason == "malformed_json"
    assert caught.value.errors == ["b.c: duplicate member name"]


@pytest.mark.parametrize("external", [False, True])
def test_parse_json_has_the_refusals_of_decode(external: bool) -> None:
    for raw, reason in (
        (b'{"id":"a\\u0000"}', "invalid_envelope"),
        (b'{"data":{"x":["\\udfff"]}}', "schema_violation"),
        (b'{"x":' + DIGITS_5000.encode() + b"}", "malformed_json"),
        (b'{"x":NaN}', "malformed_json"),
        (nested(MAX_DEPTH + 1).encode(), "malformed_json"),
        ('{"x":1}'.encode("utf-16"), "malformed_json"),
        (b"\xef\xbb\xbf{}", "malformed_json"),
    ):
        with pytest.raises(ContractViolation) as caught:
            parse_json(raw, external=external)
        assert caught.value.reason == reason, raw


def test_parse_json_keeps_the_digit_limit_when_the_process_changed_cpythons() -> None:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # unlimited: int() alone would convert it
    try:
        with pytest.raises(ContractViolation) as caught:
            parse_json(b"[" + DIGITS_5000.encode() + b"]", external=True)
        assert caught.value.reason == "malformed_json"
        assert parse_json(b"[" + b"9" * 4300 + b"]", external=True) == [int("9" * 4300)]
    finally:
        sys.set_int_max_str_digits(previous)


def test_salvage_json_reads_what_addresses_an_answer_to_a_poisoned_record() -> None:
    doc = changed(document(SubmissionFiled), "id", "a\x00b")
    doc["data"]["notes"] = "\ud800"
    doc["data"]["bad\x00name"] = 1
    raw = dumps(doc).replace(b"3.2e+26", DIGITS_5000.encode())
    raw = with_member(raw, '"n":NaN,"n":1')
    salvaged = salvage_json(raw)
    assert salvaged["id"] is None  # unstorable: unreadable, not rewritten
    assert salvaged["data"]["submission_id"] == str(SUBMISSION_ID)
    assert salvaged["data"]["notes"] is None
    assert "bad\x00name" not in salvaged["data"]
    assert salvaged["data"]["model"]["training_compute_flop"] is None
    assert salvaged["n"] == 1  # duplicates: the last, as pydantic-core reads them


def test_salvage_json_still_refuses_what_is_not_json_text() -> None:
    for raw in (b"\xff{}", nested(100_000).encode(), b"{", '{"x":1}'.encode("utf-16")):
        with pytest.raises(ContractViolation) as caught:
            salvage_json(raw)
        assert caught.value.reason == "malformed_json"


# --- external is a property of the topic and the model ---------------------------


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_a_topic_is_external_exactly_when_its_events_are(topic: Any) -> None:
    assert topic.external == (topic.producer in {"lab", "evaluators", "reviewers"})
    assert all(topic.external == event.EXTERNAL for event in topic.events)


@pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.__name__)
def test_signed_input_from_outside_is_exactly_the_external_models(model: type[Event]) -> None:
    assert issubclass(model, LabInput | ReviewerDecisionSubmitted) == model.EXTERNAL


def _uuid_properties(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("format") == "uuid":
            yield where, schema
        for key, value in schema.items():
            yield from _uuid_properties(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _uuid_properties(value, f"{where}[{index}]")


@pytest.mark.parametrize("model", [m for m in EVENTS if m.EXTERNAL], ids=lambda m: m.__name__)
def test_the_committed_schema_says_external_ids_are_canonical(model: type[Event]) -> None:
    schema = json.loads((SCHEMA_DIR / f"{model.TYPE}.json").read_text())
    found = list(_uuid_properties(schema["$defs"]))
    assert found, "no UUID field found"
    for where, prop in found:
        assert prop.get("pattern") == (
            "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
        ), where


def test_every_decode_reason_is_a_rejection_reason() -> None:
    assert {RejectionReason(reason).value for reason in DECODE_REASONS} == set(DECODE_REASONS)


def test_compliance_order_ids_must_each_be_canonical() -> None:
    doc = document(ComplianceAcknowledged)
    doc["data"]["order_ids"] = [str(SUBMISSION_ID), UPPER_UUID.lower().replace("-", "")]
    violation = refusal(dumps(doc), "lab.compliance")
    assert paths(violation) == {"data.order_ids.1"}
