"""Reading what a record claims, before anything in it is trusted.

Two uses:
- ``read_signed``: for a record that decoded as a signed event, the ``data``
  object exactly as received (what the signature covers), the claimed sender,
  the signature and the body digest. Everything the verifier uses comes from
  these bytes, not from a model re-dumped from them.
- ``read_addressing``: for a record that failed decoding or authentication, what
  can address an answer to its sender (the CloudEvent id if it is a storable
  string, the claimed principal id, the subject id), and nothing more: none of
  it is evidence of who sent the record.

Signed data is read with the contracts' safe parser (``parse_json``); what addresses
an answer with ``contracts.salvage_json``, which reads unstorable values as None.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError

import contracts
from contracts import ContractViolation
from contracts.events.common import RejectionReason, Signature
from services.trust.digest import body_digest
from services.trust.refusal import Refusal, field_error

MAX_ID = 200  # a CloudEvent id, type or subject (contracts.envelope)
SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # contracts.events.common.Slug
MODEL_ID = re.compile(
    r"[a-z0-9][a-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,79}@[A-Za-z0-9][A-Za-z0-9._+-]{0,39}"
)


def parse_json(raw: bytes) -> Any:
    """The JSON value of signed input as received; ContractViolation when it isn't one.

    The contracts' safe parser for outside input: UTF-8 only (RFC 8259; no BOM, no
    UTF-16), no duplicate member names (RFC 8785 needs none: which value was signed
    would depend on the parser), no NaN or Infinity, bounded integers and nesting,
    no string PostgreSQL could not store.
    """
    return contracts.parse_json(raw, external=True)


def storable_id(value: object) -> str | None:
    """``value`` if it is a string that can key an answer and be stored and logged.

    1..200 characters, none of them a control character (NUL, newlines: log
    injection) or a lone surrogate (not UTF-8, PostgreSQL refuses it).
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        return None
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        return None
    return value


def canonical_uuid(value: object) -> str | None:
    """``value`` if it is a UUID in its canonical form (lower case, hyphenated)."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        return value if str(UUID(value)) == value else None
    except ValueError:
        return None


def model_id(value: object) -> str | None:
    """``value`` if it is a ``<lab_id>/<name>@<version>`` model id."""
    return value if isinstance(value, str) and MODEL_ID.fullmatch(value) else None


def slug(value: object) -> str | None:
    return value if isinstance(value, str) and SLUG.fullmatch(value) else None


@dataclass(frozen=True)
class SignedInput:
    """What a signed record claims, read from its bytes as received."""

    data: dict[str, Any]  # the CloudEvent data object exactly as parsed
    principal_id: str  # claimed, not yet verified
    signature: Signature
    digest: str  # body_digest(data)


def read_signed(raw: bytes, *, principal_field: str) -> SignedInput | Refusal:
    """The signed claim of ``raw``, or the schema refusal that tells the sender why not.

    ``principal_field`` names the data member with the sender's id (``lab_id``,
    ``evaluator_id``, ``reviewer_id``).
    """
    try:
        document = parse_json(raw)
    except ContractViolation as exc:
        return Refusal(RejectionReason(exc.reason), exc.detail)
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        return Refusal(
            RejectionReason.SCHEMA_VIOLATION,
            "the CloudEvent data is not a JSON object",
            (field_error("data", "must be an object"),),
        )
    principal_id = slug(data.get(principal_field))
    if principal_id is None:
        return Refusal(
            RejectionReason.SCHEMA_VIOLATION,
            f"data.{principal_field} is not a registered-id form (a slug)",
            (field_error(f"data.{principal_field}", "must match ^[a-z0-9][a-z0-9._-]{0,63}$"),),
        )
    try:
        signature = Signature.model_validate(data.get("signature"))
    except ValidationError as exc:
        errors = tuple(
            field_error(".".join(["data.signature", *map(str, e["loc"])]), e["msg"])
            for e in exc.errors()
        )
        return Refusal(RejectionReason.SCHEMA_VIOLATION, "data.signature is not valid", errors)
    digest = body_digest(data)
    if isinstance(digest, Refusal):
        return digest
    return SignedInput(data=data, principal_id=principal_id, signature=signature, digest=digest)


def check_subject(subject: str, signed: SignedInput, field: str) -> Refusal | None:
    """The envelope is not signed: its subject (the record key) must be the signed id, as sent."""
    signed_id = signed.data.get(field)
    if isinstance(signed_id, str) and subject == signed_id:
        return None
    return Refusal(
        RejectionReason.SUBJECT_MISMATCH,
        f"CloudEvent subject {subject[:MAX_ID]!r} is not the signed data.{field}",
        (field_error("subject", f"must equal data.{field}"),),
    )


@dataclass(frozen=True)
class Addressing:
    """Where an answer to an unverified record can go. Claims only, never evidence."""

    event_id: str | None
    event_type: str | None
    principal_id: str | None
    subject_id: str | None

    @property
    def addressable(self) -> bool:
        """Can anybody match an answer to what they sent?"""
        return self.event_id is not None or self.subject_id is not None


NOWHERE = Addressing(None, None, None, None)


def read_addressing(
    raw: bytes,
    *,
    principal_field: str,
    subject_field: str,
    subject_form: Callable[[object], str | None] = canonical_uuid,
) -> Addressing:
    """What of ``raw`` can address an answer; fields that don't qualify are None.

    ``subject_form`` accepts the subject id's form (``canonical_uuid`` for a
    submission id, ``model_id`` on lab.compliance).
    """
    try:
        document = contracts.salvage_json(raw)  # unstorable strings read as None
    except ContractViolation:
        return NOWHERE
    if not isinstance(document, dict):
        return NOWHERE
    data = document.get("data")
    data = data if isinstance(data, dict) else {}
    return Addressing(
        event_id=storable_id(document.get("id")),
        event_type=storable_id(document.get("type")),
        principal_id=slug(data.get(principal_field)),
        subject_id=subject_form(data.get(subject_field)),
    )
