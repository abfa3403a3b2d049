"""Helpers for intake's tests: a lab that signs, a topic watcher, a movable clock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import CloudEvent, Event, encode, make_event
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from contracts.registry import TOPIC_BY_NAME, subject_for
from services.labclient import build_submission, build_withdrawal
from services.labclient.signing import sign
from tests.kit.manifests import manifest

INTAKE_TYPES = TOPIC_BY_NAME["intake.events"].event_types


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Signer:
    """A lab identity as the lab holds it: lab id, key id, private key."""

    lab_id: str
    key_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def filed(
        self, document: dict[str, Any] | None = None, *, issued_at: datetime | None = None
    ) -> SubmissionFiled:
        return build_submission(
            document or manifest(self.lab_id), self.key, self.key_id, now=issued_at
        )

    def withdrawal(
        self,
        submission_id: uuid.UUID,
        *,
        lab_id: str | None = None,
        issued_at: datetime | None = None,
    ) -> WithdrawalRequested:
        return build_withdrawal(
            submission_id, lab_id or self.lab_id, self.key, self.key_id, now=issued_at
        )

    def resigned(self, event: SubmissionFiled, **signature: Any) -> SubmissionFiled:
        """``event`` with signature fields replaced, signed again by this key."""
        updated = event.signature.model_copy(update=signature)
        return sign(event.model_copy(update={"signature": updated}), self.key)


def envelope(data: Event, *, subject: str | None = None) -> CloudEvent[Event]:
    key = subject or subject_for(data)
    return make_event(data, source="/labs/tests", subject=key)


def raw(event: CloudEvent[Event]) -> bytes:
    return encode(event)


def mutated(event: CloudEvent[Event], change: Callable[[dict[str, Any]], None]) -> bytes:
    """The event's JSON after ``change`` edited the parsed document."""
    document = json.loads(encode(event))
    change(document)
    return json.dumps(document).encode()
