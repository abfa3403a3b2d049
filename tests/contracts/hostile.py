"""Hostile records for the decoding tests: builders, and the poisons found so far.

    document(SubmissionFiled)                  # a valid CloudEvent as a JSON dict
    dumps(changed(document(...), "data.notes", "a\\x00b"))   # NUL in the notes, as sent
    POISONS["NUL in the CloudEvent id"]        # (topic name, bytes): replayed by the
                                               # property test and the decision table

``dumps`` writes what a hostile sender can put on the wire: Python's json with
``ensure_ascii`` escapes NUL as ``\\u0000`` and a lone surrogate as ``\\ud800``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from contracts import encode
from contracts.envelope import Event
from contracts.events import (
    ComplianceAcknowledged,
    ExternalFindingSubmitted,
    SubmissionAccepted,
    SubmissionFiled,
)
from tests.contracts.examples import example_event

Document = dict[str, Any]


def document(model: type[Event]) -> Document:
    """A valid CloudEvent of ``model``, parsed: a fresh copy to change."""
    parsed: Document = json.loads(encode(example_event(model)))
    return parsed


def changed(doc: Document, path: str, value: Any) -> Document:
    """``doc`` with the dotted ``path`` set to ``value`` (list indexes are numbers)."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def filed(path: str, value: Any) -> bytes:
    return dumps(changed(document(SubmissionFiled), path, value))


def filed_raw() -> bytes:
    """A valid SubmissionFiled as ``encode`` writes it (compact, no spaces)."""
    return encode(example_event(SubmissionFiled))


def nested(depth: int) -> str:
    """JSON text of ``depth`` arrays, one inside the other."""
    return "[" * depth + "]" * depth


def with_member(raw: bytes, member: str) -> bytes:
    """``raw`` (a JSON object) with ``member`` (raw JSON text ``"name":value``) added last."""
    return raw[:-1] + b"," + member.encode() + b"}"


DIGITS_5000 = "9" * 5000
UPPER_UUID = "0B9F4A52-6C1E-4F0E-9D55-6F1D2C3B4A01"

# name -> (topic, bytes). Each was a defect once (issue 8) or is a shape a sender
# can try; the property test replays every one with @example.
POISONS: dict[str, tuple[str, bytes]] = {
    "NUL in the CloudEvent id": ("lab.submissions", filed("id", "a\x00b")),
    "lone surrogate in the CloudEvent id": ("lab.submissions", filed("id", "\udc80")),
    "control characters in the CloudEvent id": ("lab.submissions", filed("id", "a\x1b[2Jb\n")),
    "NUL in the notes": ("lab.submissions", filed("data.notes", "see\x00")),
    "NUL in a contact name": ("lab.submissions", filed("data.contacts.0.name", "A\x00")),
    "NUL in an internal id": (
        "intake.events",
        dumps(changed(document(SubmissionAccepted), "id", "\x00")),
    ),
    "NUL in an ignored internal field": (
        "intake.events",
        dumps(changed(document(SubmissionAccepted), "data.later", "\x00")),
    ),
    "a bare JSON string holding NUL": ("intake.events", b'"\\u0000"'),
    "5000-digit training compute": (
        "lab.submissions",
        filed_raw().replace(b"3.2e+26", DIGITS_5000.encode()),
    ),
    "5000-digit integer in an ignored internal field": (
        "intake.events",
        with_member(encode(example_event(SubmissionAccepted)), f'"n":{DIGITS_5000}'),
    ),
    "100,000 nested arrays": ("lab.submissions", nested(100_000).encode()),
    "65 nested arrays in an extension attribute": (
        "intake.events",
        with_member(encode(example_event(SubmissionAccepted)), f'"x":{nested(64)}'),
    ),
    "NaN": ("lab.submissions", filed_raw().replace(b"3.2e+26", b"NaN")),
    "NaN in an ignored internal field": (
        "intake.events",
        with_member(encode(example_event(SubmissionAccepted)), '"x":NaN'),
    ),
    "-Infinity": ("lab.submissions", filed_raw().replace(b"3.2e+26", b"-Infinity")),
    "UTF-16 with a byte order mark": ("lab.submissions", filed_raw().decode().encode("utf-16")),
    "UTF-16 without a byte order mark": (
        "lab.submissions",
        filed_raw().decode().encode("utf-16-le"),
    ),
    "UTF-32": ("lab.submissions", filed_raw().decode().encode("utf-32")),
    "UTF-8 byte order mark": ("lab.submissions", b"\xef\xbb\xbf" + filed_raw()),
    "duplicate review days": (
        "lab.submissions",
        filed_raw().replace(
            b'"requested_review_days":14', b'"requested_review_days":30,"requested_review_days":14'
        ),
    ),
    '"30" as review days': ("lab.submissions", filed("data.requested_review_days", "30")),
    "true as review days": ("lab.submissions", filed("data.requested_review_days", True)),
    '"3.2e26" as training compute': (
        "lab.submissions",
        filed("data.model.training_compute_flop", "3.2e26"),
    ),
    "upper-case submission id": ("lab.submissions", filed("data.submission_id", UPPER_UUID)),
    "hyphen-less submission id": (
        "lab.submissions",
        filed("data.submission_id", UPPER_UUID.lower().replace("-", "")),
    ),
    "upper-case order id": (
        "lab.compliance",
        dumps(changed(document(ComplianceAcknowledged), "data.order_ids.0", UPPER_UUID)),
    ),
    "urn external finding id": (
        "evaluators.findings",
        dumps(
            changed(
                document(ExternalFindingSubmitted),
                "data.external_finding_id",
                "urn:uuid:" + UPPER_UUID.lower(),
            )
        ),
    ),
}
