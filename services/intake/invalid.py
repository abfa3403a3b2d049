"""Answers for records that are JSON but not a valid event of lab.submissions.

Oversized, not a CloudEvent, an unknown type, a schema violation: whatever can
be addressed (a CloudEvent id or a submission id can be read from it) gets a
rejection the lab can read, with the failing field paths. Nothing in it is
authenticated, so the rejection is keyed by the CloudEvent id, and names the
submission only when there is no id to key it by. What can't be addressed, or
isn't JSON at all, goes to the DLQ with its original bytes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from contracts import ContractViolation, salvage_json
from contracts.events.common import UUID_PATTERN, RejectionReason, Slug, field_errors
from contracts.events.intake import SubmissionRejected, WithdrawalRejected
from contracts.events.lab import WithdrawalRequested
from contracts.violation import storable
from services.intake.decisions import rejection
from services.intake.trust import Refusal

_SLUG: TypeAdapter[str] = TypeAdapter(Slug)
CANONICAL_UUID = re.compile(UUID_PATTERN)

_WHAT = {
    "oversized": "the record is larger than intake accepts",
    "invalid_envelope": "the record is not a valid CloudEvent",
    "unknown_event_type": "lab.submissions carries SubmissionFiled and WithdrawalRequested only",
    "schema_violation": "the event does not match its contract",
    "malformed_json": "the record is not valid JSON",
}


def _parse(raw: bytes) -> dict[str, Any] | None:
    """What can be read of a refused record to address its answer (unstorable strings,
    huge numbers and the like read as None; not JSON at all: nothing)."""
    try:
        document = salvage_json(raw)
    except ContractViolation:
        return None
    return document if isinstance(document, dict) else None


def _event_id(document: dict[str, Any]) -> str | None:
    value = document.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 200 and storable(value) else None


def _submission_id(data: dict[str, Any]) -> UUID | None:
    value = data.get("submission_id")
    # Only the canonical spelling: an answer must name the id exactly as the lab wrote it.
    return UUID(value) if isinstance(value, str) and CANONICAL_UUID.match(value) else None


def _lab_id(data: dict[str, Any]) -> str | None:
    try:
        return _SLUG.validate_python(data.get("lab_id"))
    except ValidationError:
        return None


def answer_invalid(
    raw: bytes, violation: ContractViolation, now: datetime
) -> SubmissionRejected | WithdrawalRejected | None:
    """The rejection to publish for ``raw``, or None when it must go to the DLQ."""
    document = _parse(raw)
    if document is None:
        return None
    data = document.get("data")
    data = data if isinstance(data, dict) else {}
    event_id = _event_id(document)
    submission_id = _submission_id(data)
    if event_id is None and submission_id is None:
        return None  # nobody could read an answer: the DLQ keeps it for an operator
    kind: type[SubmissionRejected] | type[WithdrawalRejected] = (
        WithdrawalRejected
        if document.get("type") == WithdrawalRequested.TYPE
        else SubmissionRejected
    )
    what = _WHAT.get(violation.reason, violation.reason)
    try:
        reason = RejectionReason(violation.reason)
    except ValueError:
        reason = RejectionReason.MALFORMED
    refusal = Refusal(
        reason,
        f"{what}: {violation.detail}",
        tuple(field_errors(violation)[:100]),
    )
    return rejection(
        kind,
        refusal,
        submission_id=submission_id,
        lab_id=_lab_id(data),
        event_id=event_id,
        now=now,
        trusted=False,
    )
