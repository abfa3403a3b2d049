"""Every event type: round trip through the wire format, decode errors, registry invariants."""

from __future__ import annotations

import base64
import json
import types
import typing
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from pydantic import BaseModel

from contracts import ContractViolation, Event, decode, encode
from contracts.events import (
    FindingRecorded,
    RejectionReason,
    SignedEvent,
    SubmissionAccepted,
    SubmissionFiled,
    SubmissionRejected,
    signing_input,
)
from contracts.events.lab import LabInput
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.registry import EVENT_BY_TYPE, EVENTS, TOPIC_BY_NAME, TOPICS, subject_for, topic_for
from tests.contracts.examples import EXAMPLE_KEY, EXAMPLE_TYPES, example, example_event

ALL_EVENTS = pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.__name__)


def test_every_event_has_an_example() -> None:
    assert set(EXAMPLE_TYPES) == set(EVENTS)


@ALL_EVENTS
def test_round_trip(model: type[Event]) -> None:
    event = example_event(model)
    topic = topic_for(model)
    decoded = decode(encode(event), topic.event_types)
    assert type(decoded.data) is model
    assert decoded.data == event.data
    assert decoded.type == model.TYPE
    assert decoded.subject == subject_for(event.data)
    assert decoded.dataschema == model.dataschema()
    assert encode(decoded) == encode(event)


@ALL_EVENTS
def test_decode_refuses_an_event_on_the_wrong_topic(model: type[Event]) -> None:
    raw = encode(example_event(model))
    for topic in TOPICS:
        if model in topic.events:
            continue
        with pytest.raises(ContractViolation) as caught:
            decode(raw, topic.event_types)
        assert caught.value.reason == "unknown_event_type"


def test_schema_violation_names_the_failing_fields() -> None:
    document = json.loads(encode(example_event(SubmissionFiled)))
    document["data"]["requested_review_days"] = 45
    document["data"]["model"]["training_compute_flop"] = -1
    del document["data"]["model"]["name"]
    document["data"]["surprise"] = "unknown fields are refused on lab input"
    with pytest.raises(ContractViolation) as caught:
        decode(json.dumps(document).encode(), TOPIC_BY_NAME["lab.submissions"].event_types)
    assert caught.value.reason == "schema_violation"
    paths = {error.split(":")[0] for error in caught.value.errors}
    assert paths == {
        "data.requested_review_days",
        "data.model.training_compute_flop",
        "data.model.name",
        "data.surprise",
    }
    assert RejectionReason(caught.value.reason) is RejectionReason.SCHEMA_VIOLATION


def test_internal_events_ignore_unknown_fields() -> None:
    document = json.loads(encode(example_event(SubmissionAccepted)))
    document["data"]["added_in_a_later_version"] = 1
    document["data"]["model"]["also_new"] = True
    decoded = decode(json.dumps(document).encode(), TOPIC_BY_NAME["intake.events"].event_types)
    assert decoded.data == example(SubmissionAccepted)


def test_rejection_without_submission_id_is_keyed_by_the_refused_event() -> None:
    rejection = example(SubmissionRejected, submission_id=None)
    assert subject_for(rejection) == rejection.rejected_event_id
    with pytest.raises(ValueError, match="submission_id or rejected_event_id"):
        example(SubmissionRejected, submission_id=None, rejected_event_id=None)


def test_review_window_is_at_most_30_days() -> None:
    assert example(SubmissionFiled, requested_review_days=30).requested_review_days == 30
    for days in (0, 31):
        with pytest.raises(ValueError, match="requested_review_days"):
            example(SubmissionFiled, requested_review_days=days)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        example(FindingRecorded, recorded_at="2026-01-15T12:00:00")


# --- signatures -------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", [m for m in EVENTS if issubclass(m, SignedEvent)], ids=lambda m: m.__name__
)
def test_signature_verifies_over_the_data_as_sent(model: type[Event]) -> None:
    data = json.loads(encode(example_event(model)))["data"]
    value = base64.b64decode(data["signature"]["value"])
    EXAMPLE_KEY.public_key().verify(value, signing_input(data))  # raises if invalid


def test_signature_covers_nonce_and_issued_at_and_body() -> None:
    data = json.loads(encode(example_event(SubmissionFiled)))["data"]
    value = base64.b64decode(data["signature"]["value"])
    for where, field, changed in (
        ("signature", "nonce", "a-fresh-nonce-for-replay"),
        ("signature", "issued_at", "2030-01-01T00:00:00Z"),
        ("", "requested_review_days", 30),
    ):
        tampered = json.loads(json.dumps(data))
        (tampered[where] if where else tampered)[field] = changed
        with pytest.raises(InvalidSignature):
            EXAMPLE_KEY.public_key().verify(value, signing_input(tampered))


def test_signing_input_is_canonical() -> None:
    body = {"b": 1, "a": {"d": 1e26, "c": "é"}, "signature": {"value": "x", "key_id": "k"}}
    assert (
        signing_input(body) == '{"a":{"c":"é","d":1e+26},"b":1,"signature":{"key_id":"k"}}'.encode()
    )


# --- registry and model invariants --------------------------------------------------


def test_each_event_type_is_on_exactly_one_topic() -> None:
    assert len(EVENTS) == len(set(EVENTS)) == len(EVENT_BY_TYPE)


@ALL_EVENTS
def test_type_names_the_topic_context(model: type[Event]) -> None:
    context = topic_for(model).name.split(".")[0]
    type_name = model.TYPE
    assert type_name == f"frontier_review.{context}.{model.__name__}"


def test_topics() -> None:
    assert len(TOPIC_BY_NAME) == len(TOPICS)
    partitions = {"access.policies": 3, "intake.registry": 3, "gov.audit": 1}
    for topic in TOPICS:
        assert topic.partitions == partitions.get(topic.name, 6)
        assert topic.compacted == (topic.name in {"access.policies", "intake.registry"})
        assert topic.key == (
            "model_id"
            if topic.name.startswith(("access.", "lab.compliance"))
            else "log_id"
            if topic.name == "gov.audit"
            else "lab_id"
            if topic.name == "intake.registry"
            else "submission_id"
        )
        for event in topic.events:
            assert topic.key in event.model_fields, f"{event.__name__} lacks {topic.key}"


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """model and every model nested in its fields."""
    found = {model}
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found |= _models(arg)
    return found


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


@ALL_EVENTS
def test_every_field_is_documented(model: type[Event]) -> None:
    for nested in _models(model):
        for name, field in nested.model_fields.items():
            assert field.description, f"{nested.__name__}.{name} has no description"


@ALL_EVENTS
def test_nullable_fields_default_to_none(model: type[Event]) -> None:
    """encode() omits None values, so a nullable field must be optional with default None."""
    for nested in _models(model):
        for name, field in nested.model_fields.items():
            if types.NoneType in _flatten(field.annotation):
                assert field.default is None, f"{nested.__name__}.{name} must default to None"


@ALL_EVENTS
def test_lab_input_forbids_unknown_fields_at_every_level(model: type[Event]) -> None:
    expected = "forbid" if issubclass(model, LabInput | ReviewerDecisionSubmitted) else "ignore"
    for nested in _models(model):
        assert nested.model_config.get("extra") == expected, nested.__name__
