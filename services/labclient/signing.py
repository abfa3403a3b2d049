"""Build lab input from manifests and sign it by the contract's rule.

``signature.value`` = base64(Ed25519-sign(RFC 8785 canonical JSON of the
event's data with only ``signature.value`` removed)); key id, algorithm,
issued_at and a fresh nonce are signed with it (contracts/events/lab.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import rfc8785
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from contracts.events.common import SignedEvent
from contracts.events.lab import ComplianceAcknowledged, SubmissionFiled, WithdrawalRequested
from services.labclient.enforcer import AppliedVersion

S = TypeVar("S", bound=SignedEvent)
_PLACEHOLDER = "A" * 86 + "=="  # a well-formed value, replaced by the real signature


class ManifestError(ValueError):
    """A manifest that does not make a valid event; ``errors`` lists the failing fields."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message + "".join(f"\n  {error}" for error in errors or []))
        self.errors = errors or []


def load_manifest(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping (YAML is a superset of JSON)."""
    text = path.read_text()
    document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ManifestError(f"{path}: a manifest is a mapping of the event's fields")
    return document


def sign(event: S, key: Ed25519PrivateKey) -> S:
    """``event`` with ``signature.value`` set over its signing bytes."""
    value = base64.b64encode(key.sign(event.signing_bytes())).decode()
    return event.model_copy(
        update={"signature": event.signature.model_copy(update={"value": value})}
    )


def _signed(
    model: type[S],
    fields: Mapping[str, Any],
    key: Ed25519PrivateKey,
    key_id: str,
    now: datetime | None,
) -> S:
    if "signature" in fields:
        raise ManifestError("a manifest has no signature: the client signs it")
    signature = {
        "key_id": key_id,
        "algorithm": "ed25519",
        "issued_at": (now or datetime.now(UTC)).isoformat(),
        "nonce": secrets.token_urlsafe(18),  # 144 bits
        "value": _PLACEHOLDER,
    }
    try:
        unsigned = model.model_validate({**fields, "signature": signature})
    except ValidationError as exc:
        errors = [
            ".".join(str(part) for part in error["loc"]) + f": {error['msg']}"
            for error in exc.errors()
        ]
        raise ManifestError(f"not a valid {model.__name__}", errors) from exc
    return sign(unsigned, key)


def build_submission(
    manifest: Mapping[str, Any],
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    now: datetime | None = None,
) -> SubmissionFiled:
    """A signed SubmissionFiled; the manifest holds every field but the signature.

    ``submission_id`` must be in the manifest: it is the idempotency key, so
    re-sending the same manifest is a duplicate, never a second review.
    """
    if "submission_id" not in manifest:
        raise ManifestError(
            "the manifest needs a submission_id (a UUID you choose and keep: it is the "
            "idempotency key); `init-manifest` writes one"
        )
    return _signed(SubmissionFiled, manifest, key, key_id, now)


def build_withdrawal(
    submission_id: UUID,
    lab_id: str,
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> WithdrawalRequested:
    fields: dict[str, Any] = {"submission_id": str(submission_id), "lab_id": lab_id}
    if reason:
        fields["reason"] = reason
    return _signed(WithdrawalRequested, fields, key, key_id, now)


def build_acknowledgement(
    fields: Mapping[str, Any],
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    now: datetime | None = None,
) -> ComplianceAcknowledged:
    """A signed ComplianceAcknowledged (for lab.compliance, keyed by model id)."""
    return _signed(ComplianceAcknowledged, fields, key, key_id, now)


def acknowledgement_fields(
    applied: AppliedVersion, lab_id: str, enforcement_points: list[str]
) -> dict[str, Any]:
    """The fields of a ComplianceAcknowledged for what an enforcer applied.

    ``applied`` is ``Enforcer.applied(model_id)`` (or a decision API's /v1/status
    entry): the version, content hash and orders the enforcement point actually
    enforces, and since when. A version the enforcer could not use is not
    acknowledged: the lab does not enforce it.
    """
    if not applied.usable:
        raise ManifestError(
            f"{applied.model_id} version {applied.version} is not enforced ({applied.problem})"
        )
    return {
        "model_id": applied.model_id,
        "lab_id": lab_id,
        "policy_version": applied.version,
        "content_hash": applied.content_hash,
        "order_ids": [str(o) for o in applied.order_ids],
        "enforced_at": applied.applied_at.isoformat(),
        "enforcement_points": enforcement_points,
    }


def body_sha256(event: SubmissionFiled) -> str:
    """Digest of the body without its signature, as intake reports it in ``body_sha256``."""
    body = event.model_dump(mode="json", exclude_none=True)
    body.pop("signature", None)
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()
