"""Who sent it, and is it fresh: lab keys, Ed25519 signatures, issued-at skew.

Signatures are checked over the JSON ``data`` object as received (the contract's
signing rule, ``signing_input``), never over a re-serialised model, so number or
date formatting can't turn a valid signature invalid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import parse_json
from contracts.events.common import FieldError, RejectionReason, signing_input


@dataclass(frozen=True)
class Refusal:
    """Why an input is refused: the reason code, a human text, failing fields."""

    reason: RejectionReason
    detail: str
    field_errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True)
class LabKey:
    lab_id: str
    key_id: str
    public_key: bytes  # raw 32-byte Ed25519 public key
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None


def received_data(raw: bytes) -> dict[str, Any]:
    """The CloudEvent ``data`` object exactly as sent (the record was decoded already)."""
    data = parse_json(raw, external=True)["data"]
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    return data


def body_sha256(data: dict[str, Any]) -> str:
    """Digest of the body without its signature: equal for a re-signed identical submission."""
    body = {key: value for key, value in data.items() if key != "signature"}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def body_digest(data: dict[str, Any]) -> str | Refusal:
    """``body_sha256``, or a schema violation for JSON that RFC 8785 cannot canonicalise.

    The contract's schema admits e.g. ``"training_compute_flop": 3200...0`` as a JSON
    integer beyond 2**53, which RFC 8785 (I-JSON) refuses: such a body can be neither
    digested nor signed, so it is refused, naming the field.
    """
    try:
        return body_sha256(data)
    except rfc8785.CanonicalizationError as exc:
        path = _uncanonical_path(data, "data")
        hint = (
            "; JSON integers must stay within +-(2**53 - 1): write large numbers with an "
            "exponent, e.g. 3.2e+26"
            if isinstance(exc, rfc8785.IntegerDomainError)
            else ""
        )
        return Refusal(
            RejectionReason.SCHEMA_VIOLATION,
            f"the event cannot be canonicalised (RFC 8785) to check its signature: "
            f"{path}: {exc}{hint}",
            (FieldError(path=path[:500], message=str(exc)[:1000]),),
        )


def _uncanonical_path(value: Any, path: str) -> str:
    """The dotted path of the innermost member that RFC 8785 refuses to canonicalise."""
    if isinstance(value, dict):
        members: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        members = list(enumerate(value))
    else:
        members = []
    for key, member in members:
        try:
            rfc8785.dumps(member)
        except rfc8785.CanonicalizationError:
            return _uncanonical_path(member, f"{path}.{key}")
    return path


def check_key(
    key: LabKey | None, *, lab_id: str, key_id: str, lab_known: bool, now: datetime
) -> Refusal | None:
    """The key must belong to the claimed lab, be unrevoked and inside its validity window."""
    if not lab_known:
        return Refusal(RejectionReason.UNKNOWN_LAB, f"lab {lab_id!r} is not registered")
    if key is None:
        return Refusal(
            RejectionReason.UNKNOWN_KEY, f"lab {lab_id!r} has no registered key {key_id!r}"
        )
    if key.revoked_at is not None and key.revoked_at <= now:
        return Refusal(
            RejectionReason.REVOKED_KEY,
            f"key {key_id!r} of lab {lab_id!r} was revoked at {key.revoked_at.isoformat()}",
        )
    if key.valid_until is not None and key.valid_until <= now:
        return Refusal(
            RejectionReason.EXPIRED_KEY,
            f"key {key_id!r} of lab {lab_id!r} expired at {key.valid_until.isoformat()}",
        )
    if key.valid_from > now:
        # Outside its validity window too: a scheduled rotation key used too early.
        return Refusal(
            RejectionReason.EXPIRED_KEY,
            f"key {key_id!r} of lab {lab_id!r} is not valid before {key.valid_from.isoformat()}",
        )
    return None


def check_signature(key: LabKey, data: dict[str, Any], value: str) -> Refusal | None:
    try:
        signature = base64.b64decode(value, validate=True)
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, signing_input(data))
    except (InvalidSignature, binascii.Error, ValueError):
        return Refusal(
            RejectionReason.BAD_SIGNATURE,
            f"the signature does not verify with key {key.key_id!r} of lab {key.lab_id!r}",
        )
    return None


def check_issued_at(issued_at: datetime, now: datetime, max_skew: timedelta) -> Refusal | None:
    if issued_at < now - max_skew:
        return Refusal(
            RejectionReason.STALE_ISSUED_AT,
            f"issued_at {issued_at.isoformat()} is more than {max_skew.total_seconds():g} s "
            f"before intake's clock ({now.isoformat()}); sign again and re-send",
        )
    if issued_at > now + max_skew:
        return Refusal(
            RejectionReason.FUTURE_ISSUED_AT,
            f"issued_at {issued_at.isoformat()} is more than {max_skew.total_seconds():g} s "
            f"after intake's clock ({now.isoformat()}); check the signer's clock",
        )
    return None


def replayed_nonce(lab_id: str, key_id: str, nonce: str) -> Refusal:
    return Refusal(
        RejectionReason.REPLAYED_NONCE,
        f"nonce {nonce!r} was already used with key {key_id!r} of lab {lab_id!r}",
    )


def check_subject(subject: str, submission_id: UUID) -> Refusal | None:
    """The envelope is not signed: its subject (the record key) must name the signed id."""
    try:
        if UUID(subject) == submission_id:
            return None
    except ValueError:
        pass
    return Refusal(
        RejectionReason.SUBJECT_MISMATCH,
        f"CloudEvent subject {subject[:200]!r} is not the signed submission id {submission_id}",
    )


def parse_public_key(text: str) -> bytes:
    """A raw 32-byte Ed25519 public key from base64 (standard or url-safe) or PEM text."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 or PEM: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw
