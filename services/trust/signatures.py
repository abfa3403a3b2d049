"""Ed25519 over the data as received, and signing by the same rule (``sign``,
``sign_event``: what senders' tools use, e.g. the reviewers' CLI).

The signed bytes are ``contracts.events.common.signing_input(data)``: the RFC
8785 form of the JSON ``data`` object exactly as it was parsed from the record,
without ``signature.value``. Never a re-dumped model: pydantic's output (number
and date formatting, defaults filled in, unknown members dropped) is not what
the sender signed. Two encodings of the same JSON value (member order,
whitespace, escapes, ``1e2`` for ``100``) have one canonical form, so both
verify; any changed value does not.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.events.common import SignedEvent, signing_input

# Verified against when the claimed key does not exist, so that an unknown key
# costs the same work as a known one (no timing tells which keys are registered).
# Its private key is thrown away at once: nothing verifies against it.
STAND_IN_KEY = (
    Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
)


def signature_valid(public_key: bytes, data: Mapping[str, Any], value: str) -> bool:
    """Does ``value`` (standard base64, canonical) sign ``data`` with ``public_key``?"""
    try:
        signature = base64.b64decode(value, validate=True)
        if base64.b64encode(signature).decode() != value:
            return False  # one encoding per signature: no malleable trailing bits
        message = signing_input(dict(data))
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, binascii.Error):
        # ValueError: a malformed key, or data RFC 8785 can't canonicalise.
        return False
    return True


def sign(data: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    """The ``signature.value`` that signs ``data`` with ``key``: the rule ``signature_valid``
    checks (standard base64 of Ed25519 over ``signing_input(data)``). ``data`` is the JSON
    object exactly as it will be sent, with its ``signature`` member (key id, algorithm,
    issued_at, nonce) in place; any ``value`` already there is ignored."""
    return base64.b64encode(key.sign(signing_input(dict(data)))).decode()


S = TypeVar("S", bound=SignedEvent)


def sign_event(event: S, key: Ed25519PrivateKey) -> S:
    """``event`` with ``signature.value`` set: signed as ``encode`` will send its data
    (None fields omitted), which is what the receiver verifies."""
    value = sign(event.model_dump(mode="json", exclude_none=True), key)
    return event.model_copy(
        update={"signature": event.signature.model_copy(update={"value": value})}
    )
