"""Credential ownership and public-key parsing: decision tables."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.events.common import RejectionReason
from services.trust.credentials import check_credential_ref, owned_by
from services.trust.public_keys import parse_public_key, public_key_problem

CREDENTIALS = [
    ("labs/acme/eval-api-key", "acme", True),
    ("labs/acme/team/eval-key", "acme", True),
    ("labs/acme-eval/api-key", "acme", False),  # another lab's namespace sharing a prefix
    ("labs/other/api-key", "acme", False),
    ("labs/acme/", "acme", False),
    ("labs/acme", "acme", False),
    ("labs/acme//key", "acme", False),
    ("labs/acme/./key", "acme", False),
    ("labs/acme/../other/key", "acme", False),
    ("labs/acme/key/..", "acme", False),
    ("/labs/acme/key", "acme", False),
    ("shared/api-key", "acme", False),
    ("labs/a/b/key", "a/b", False),  # not a lab id
]


@pytest.mark.parametrize(("ref", "lab_id", "owned"), CREDENTIALS)
def test_credential_ownership_table(ref: str, lab_id: str, owned: bool) -> None:
    assert owned_by(ref, lab_id) is owned


def test_a_foreign_credential_is_refused_naming_the_field() -> None:
    refusal = check_credential_ref("labs/other/key", "acme")
    assert refusal is not None
    assert refusal.reason is RejectionReason.CREDENTIAL_NOT_OWNED
    assert refusal.field_errors[0].path == "data.evaluation_access.credential_ref"
    assert check_credential_ref("labs/acme/key", "acme") is None


PRIVATE = Ed25519PrivateKey.generate()
RAW = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        PRIVATE.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me",
        "\n  " + base64.b64encode(RAW).decode() + "\n",
    ],
)
def test_a_public_key_is_read_from_base64_pem_or_openssh(text: str) -> None:
    assert parse_public_key(text) == RAW


P = 2**255 - 19


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (bytes(31), "32 bytes"),
        (bytes([1]) + bytes(31), "small-order"),  # the neutral point
        (bytes(32), "small-order"),  # order 4
        ((P - 1).to_bytes(32, "little"), "small-order"),  # order 2
        (bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
         "small-order"),  # order 8
        (P.to_bytes(32, "little"), "canonical"),  # y >= p
        (bytes([2]) + bytes(31), "canonical"),  # not on the curve
    ],
)  # fmt: skip
def test_a_key_anyone_could_forge_for_is_refused(raw: bytes, why: str) -> None:
    problem = public_key_problem(raw)
    assert problem is not None and why in problem
    with pytest.raises(ValueError, match=why):
        parse_public_key(base64.b64encode(raw).decode())


def test_generated_keys_are_accepted() -> None:
    for _ in range(50):
        key = Ed25519PrivateKey.generate().public_key()
        assert public_key_problem(key.public_bytes(Encoding.Raw, PublicFormat.Raw)) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not base64!", "neither PEM, OpenSSH nor base64"),
        (base64.b64encode(bytes(33)).decode(), "32 bytes, not 33"),
        (X25519PrivateKey.generate().public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(), "not an Ed25519"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
        ("ssh-ed25519 AAAA", "not an OpenSSH public key"),
    ],
)  # fmt: skip
def test_what_is_not_an_ed25519_public_key_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_public_key(text)
