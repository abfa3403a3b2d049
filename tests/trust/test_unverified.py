"""Reading unverified records: what is refused, what may address an answer, digests."""

from __future__ import annotations

import json
import uuid

import pytest

from contracts import ContractViolation
from contracts.events.common import RejectionReason
from services.trust.digest import body_digest
from services.trust.refusal import Refusal
from services.trust.unverified import (
    NOWHERE,
    SignedInput,
    canonical_uuid,
    check_subject,
    model_id,
    parse_json,
    read_addressing,
    read_signed,
    storable_id,
)
from tests.trust.support import Signer, envelope, submission_body

SIGNER = Signer()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a": 1, "a": 2}', "a: duplicate member name"),
        (b'{"a": {"b": 1, "b": 1}}', "a.b: duplicate member name"),
        ('{"a": 1}'.encode("utf-16"), "must be UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b'{"a": 1', "Expecting"),
    ],
)
def test_json_that_is_ambiguous_or_not_json_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(ContractViolation) as refused:
        parse_json(raw)
    assert refused.value.reason == "malformed_json"
    assert why in refused.value.detail


def test_a_signed_record_is_read_from_its_bytes_as_received() -> None:
    data = SIGNER.sign(submission_body(notes="caf\u00e9"))
    raw = envelope(data).replace("café".encode(), b"caf\\u00e9")
    signed = read_signed(raw, principal_field="lab_id")
    assert isinstance(signed, SignedInput)
    assert signed.data == data
    assert signed.principal_id == "lab-a"
    assert signed.signature.key_id == SIGNER.key_id
    assert signed.digest == body_digest(data)


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda d: d.update(lab_id="Not A Slug"), RejectionReason.SCHEMA_VIOLATION, "data.lab_id"),
        (lambda d: d.pop("lab_id"), RejectionReason.SCHEMA_VIOLATION, "data.lab_id"),
        (lambda d: d.pop("signature"), RejectionReason.SCHEMA_VIOLATION, "data.signature"),
        (lambda d: d["signature"].update(nonce="short"), RejectionReason.SCHEMA_VIOLATION,
         "data.signature.nonce"),
        (lambda d: d.update(training_compute_flop=32 * 10**25), RejectionReason.SCHEMA_VIOLATION,
         "data.training_compute_flop"),
    ],
)  # fmt: skip
def test_a_signed_record_without_a_usable_claim_is_refused_naming_the_field(
    mutate: object, reason: RejectionReason, path: str
) -> None:
    data = SIGNER.sign(submission_body())
    mutate(data)  # type: ignore[operator]
    refused = read_signed(envelope(data), principal_field="lab_id")
    assert isinstance(refused, Refusal)
    assert refused.reason is reason
    assert refused.field_errors[0].path == path


def test_a_record_whose_data_is_not_an_object_is_a_schema_violation() -> None:
    refused = read_signed(b'{"id": "e", "data": [1]}', principal_field="lab_id")
    assert isinstance(refused, Refusal) and refused.reason is RejectionReason.SCHEMA_VIOLATION


def test_bytes_that_are_not_json_are_refused_as_malformed_json() -> None:
    refused = read_signed(b"\xff\xfe", principal_field="lab_id")
    assert isinstance(refused, Refusal) and refused.reason is RejectionReason.MALFORMED_JSON


def test_a_big_integer_deep_in_the_body_is_named_by_its_path() -> None:
    refusal = body_digest({"model": {"sizes": [1, 2**60]}})
    assert isinstance(refusal, Refusal)
    assert refusal.field_errors[0].path == "data.model.sizes.1"
    assert "3.2e+26" in refusal.detail


def test_a_lone_surrogate_member_name_is_refused_not_raised() -> None:
    refusal = body_digest(json.loads('{"\\ud800": 1}'))
    assert isinstance(refusal, Refusal)
    assert "\ud800" not in refusal.field_errors[0].path


def test_the_body_digest_ignores_the_signature_and_member_order() -> None:
    body = submission_body()
    first, second = SIGNER.sign(body), Signer().sign(dict(reversed(body.items())))
    assert body_digest(first) == body_digest(second)
    assert body_digest(first) != body_digest(SIGNER.sign(body | {"notes": "other"}))


def test_the_subject_must_equal_the_signed_id_exactly_as_sent() -> None:
    data = SIGNER.sign(submission_body())
    signed = read_signed(envelope(data), principal_field="lab_id")
    assert isinstance(signed, SignedInput)
    assert check_subject(data["submission_id"], signed, "submission_id") is None
    upper = check_subject(data["submission_id"].upper(), signed, "submission_id")
    assert upper is not None and upper.reason is RejectionReason.SUBJECT_MISMATCH


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01", True),
        ("any id a sender chose ✓", True),
        ("", False),
        ("x" * 201, False),
        ("a\x00b", False),
        ("a\nb", False),
        ("a\ud800", False),
        (17, False),
        (None, False),
    ],
)
def test_only_storable_strings_can_key_an_answer(value: object, kept: bool) -> None:
    assert (storable_id(value) is not None) is kept


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01", True),
        ("0B9F4A52-6C1E-4F0E-9D55-6F1D2C3B4A01", False),
        ("0b9f4a526c1e4f0e9d556f1d2c3b4a01", False),
        ("{0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01}", False),
        (12, False),
    ],
)
def test_a_subject_id_is_taken_only_in_its_canonical_form(value: object, kept: bool) -> None:
    assert (canonical_uuid(value) is not None) is kept


def test_addressing_takes_what_qualifies_and_nothing_else() -> None:
    submission_id = str(uuid.uuid4())
    raw = json.dumps(
        {"id": "evt-1", "type": "t", "data": {"lab_id": "lab-a", "submission_id": submission_id}}
    ).encode()
    found = read_addressing(raw, principal_field="lab_id", subject_field="submission_id")
    assert (found.event_id, found.principal_id, found.subject_id) == (
        "evt-1",
        "lab-a",
        submission_id,
    )
    hostile = json.dumps(
        {"id": "a\u0000b", "data": {"lab_id": "../x", "submission_id": submission_id.upper()}}
    ).encode()
    found = read_addressing(hostile, principal_field="lab_id", subject_field="submission_id")
    assert found == NOWHERE
    assert not found.addressable


def test_addressing_on_lab_compliance_takes_a_model_id_as_the_subject() -> None:
    raw = json.dumps({"id": "e", "data": {"lab_id": "a", "model_id": "a/m@1"}}).encode()
    found = read_addressing(
        raw, principal_field="lab_id", subject_field="model_id", subject_form=model_id
    )
    assert found.subject_id == "a/m@1"


@pytest.mark.parametrize("raw", [b"", b"[]", b'"id"', b"\xff", b'{"id": "e", "data": 3}'])
def test_addressing_of_anything_else_is_nowhere_or_the_event_id(raw: bytes) -> None:
    found = read_addressing(raw, principal_field="lab_id", subject_field="submission_id")
    assert found.principal_id is None and found.subject_id is None
