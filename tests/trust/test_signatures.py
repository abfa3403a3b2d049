"""Signatures verify over the data as received: any encoding of the same JSON, no changed value."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events.common import signing_input
from services.trust.signatures import STAND_IN_KEY, signature_valid
from services.trust.unverified import SignedInput, read_signed
from tests.trust.support import Signer, envelope, submission_body

SIGNER = Signer()

# Signed input is stored: no lone surrogates (not UTF-8) and no NUL (PostgreSQL refuses it);
# the parser refuses both (tests/contracts), so they are not "the same JSON" here.
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

# I-JSON values: what RFC 8785 canonicalises (integers within 2**53, finite floats).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text(TEXT, max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(
    st.text("abcdefgh_", min_size=1, max_size=8).filter(lambda k: k != "signature"),
    json_values,
    min_size=1,
    max_size=6,
)


def reencode(value: Any, rng: random.Random) -> str:
    """The same JSON value written differently: member order, spacing, escapes, numbers."""
    space = rng.choice(["", " ", "\n  ", "\t"])
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        members = [f"{json.dumps(k, ensure_ascii=rng.random() < 0.5)}{space}:{space}"
                   f"{reencode(v, rng)}" for k, v in items]  # fmt: skip
        return "{" + space + f",{space}".join(members) + space + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(reencode(v, rng) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int) and rng.random() < 0.5 and value != 0:
        return f"{value}.0" if abs(value) < 2**52 else str(value)  # 7 and 7.0 are one number
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return rng.choice([repr(value), f"{int(value)}", f"{value:.17e}"])  # all exact
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def received(data: dict[str, Any], rng: random.Random) -> SignedInput:
    raw = '{"id": "e", "data": ' + reencode(data, rng) + "}"
    signed = read_signed(raw.encode(), principal_field="lab_id")
    assert isinstance(signed, SignedInput), signed
    return signed


@settings(max_examples=200, deadline=None)
@given(body=bodies, seed=st.integers())
def test_any_encoding_of_the_signed_json_verifies(body: dict[str, Any], seed: int) -> None:
    data = SIGNER.sign(body | {"lab_id": "lab-a"})
    signed = received(data, random.Random(seed))
    assert signature_valid(SIGNER.public, signed.data, signed.signature.value)


def changed(value: Any, rng: random.Random) -> Any:
    """``value`` with one leaf (or member name) changed to something unequal."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        if rng.random() < 0.2:
            return {(k + "x" if k == key else k): v for k, v in value.items()}
        return value | {key: changed(value[key], rng)}
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        return [changed(v, rng) if i == index else v for i, v in enumerate(value)]
    if value is None:
        return False
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1 if abs(value) < 2**52 else value / 2
    if isinstance(value, str):
        return value + "x"
    return [value]  # an empty list or object becomes a non-empty one


@settings(max_examples=200, deadline=None)
@given(body=bodies, seed=st.integers())
def test_any_changed_value_does_not_verify(body: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    data = SIGNER.sign(body | {"lab_id": "lab-a"})
    tampered = changed(body, rng) | {"lab_id": "lab-a", "signature": data["signature"]}
    assert signing_input(tampered) != signing_input(data)
    signed = received(tampered, rng)
    assert not signature_valid(SIGNER.public, signed.data, signed.signature.value)


def test_the_signed_key_id_issued_at_and_nonce_cannot_be_swapped() -> None:
    data = SIGNER.sign(submission_body())
    for member, value in (
        ("key_id", "key-2"),
        ("nonce", "B" * 24),
        ("issued_at", "2030-01-01T00:00:00+00:00"),
    ):
        swapped = data | {"signature": data["signature"] | {member: value}}
        assert not signature_valid(SIGNER.public, swapped, swapped["signature"]["value"])


def test_a_reencoded_base64_signature_with_other_trailing_bits_is_refused() -> None:
    data = SIGNER.sign(submission_body())
    value = data["signature"]["value"]
    assert signature_valid(SIGNER.public, data, value)
    last = value[-3]  # 64 bytes = 85.33 chars: the last char before == has 4 unused bits
    twin = value[:-3] + ("B" if last == "A" else "A") + "=="
    assert base64.b64decode(twin)[:-1] == base64.b64decode(value)[:-1]
    assert not signature_valid(SIGNER.public, data, twin)


def test_another_key_or_the_stand_in_key_does_not_verify() -> None:
    data = SIGNER.sign(submission_body())
    assert not signature_valid(Signer().public, data, data["signature"]["value"])
    assert not signature_valid(STAND_IN_KEY, data, data["signature"]["value"])


def test_data_rfc8785_cannot_canonicalise_does_not_verify_and_does_not_raise() -> None:
    data = SIGNER.sign(submission_body())
    data["size"] = 2**60
    assert not signature_valid(SIGNER.public, data, data["signature"]["value"])


def test_a_re_dumped_record_verifies_only_because_it_is_the_same_json() -> None:
    data = SIGNER.sign(submission_body(score=0.1 + 0.2))
    signed = read_signed(envelope(data), principal_field="lab_id")
    assert isinstance(signed, SignedInput)
    assert signature_valid(SIGNER.public, signed.data, signed.signature.value)
