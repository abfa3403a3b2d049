"""Signed test input: keys, data objects signed by the contract's rule, CloudEvent bytes."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.events.common import signing_input

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Signer:
    key_id: str = "key-1"
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_base64(self) -> str:
        return base64.b64encode(self.public).decode()

    def sign(
        self, body: dict[str, Any], *, issued_at: datetime = T0, nonce: str | None = None
    ) -> dict[str, Any]:
        """``body`` with a signature member over it by the contract's rule."""
        data = dict(body)
        data["signature"] = {
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "issued_at": issued_at.isoformat(),
            "nonce": nonce or secrets.token_urlsafe(18),
            "value": "",
        }
        value = base64.b64encode(self.private.sign(signing_input(data))).decode()
        data["signature"]["value"] = value
        return data


def submission_body(lab_id: str = "lab-a", **extra: Any) -> dict[str, Any]:
    return {
        "submission_id": str(uuid.uuid4()),
        "lab_id": lab_id,
        "requested_review_days": 30,
        "notes": "a model",
        **extra,
    }


def envelope(data: dict[str, Any], *, subject: str | None = None, **attributes: Any) -> bytes:
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/labs/lab-a",
        "type": "frontier_review.lab.SubmissionFiled",
        "subject": subject or str(data.get("submission_id")),
        "time": T0.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
        **attributes,
    }
    return json.dumps(document).encode()
