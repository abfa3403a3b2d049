"""The generated parts of docs/lab-guide.md: examples, tables and limits, from the code.

``python -m docs.lab_guide generate`` rewrites every section between a pair of
markers ``<!-- BEGIN GENERATED <name> ... -->`` / ``<!-- END GENERATED <name> -->``
and leaves the prose around them alone; ``check`` exits 1 when a section is not
what the code produces now (the guide is stale), naming it.

Everything a lab's engineer relies on is rendered from the code that decides it,
never copied by hand: the lab principal's ACL grants (``contracts.acl``), its
topics and feeds (``contracts.registry``), the envelope attributes
(``contracts.envelope``), the covered-model criteria (intake's ``criteria.yaml``),
every reason code (``RejectionReason``) and what an unauthenticated sender is told
(``services.trust.refusal``), the freshness window and nonce retention
(``services.trust.freshness``), the dead-letter headers (``services.runtime.
deadletter``) and the size limits. The example records come from
``docs.lab_examples`` (deterministic, signed with a published example key). The
refusal table runs each malformed variant through the real decoder and verifier.

This module is a documentation tool of the repository, outside the services: it
may read every service's facts, and no service imports it. (The lab client
itself, ``services.labclient``, imports only contracts and how to connect.)
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from contracts import CONTENT_TYPE, ContractViolation
from contracts.acl import own_grants
from contracts.envelope import CloudEventAttributes
from contracts.events.common import (
    UUID_PATTERN,
    RejectionReason,
)
from contracts.parsing import MAX_DEPTH, MAX_INTEGER_DIGITS, MAX_MEMBERS
from contracts.principals import Role, lab
from contracts.registry import LAB_FEEDS, TOPIC_BY_NAME, TOPICS
from contracts.topic import DAY_MS
from docs.lab_examples import (
    APPENDED_AFTER,
    CRITERIA,
    EXAMPLE_KEY_ID,
    EXAMPLE_KEY_SEED,
    LAB_ID,
    SIGNED_AT,
    TRACEPARENT,
    ExampleRecord,
    answer_examples,
    decode_lab_input,
    example_filing,
    example_public_key,
    lab_examples,
)
from services.access.settings import AccessSettings
from services.intake.criteria import load_criteria
from services.intake.decisions import (
    invalid_input_refusal,
)
from services.intake.settings import IntakeSettings
from services.runtime.context import Record
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES, dead_letter
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import planned_topics
from services.trust.freshness import IMPLAUSIBLE_APPEND_TIME, FreshnessPolicy
from services.trust.refusal import (
    AUTHENTICATION_FAILED_DETAIL,
    SHAPE_REASONS,
    Refusal,
    public_refusal,
)
from services.trust.signatures import signature_valid
from services.trust.unverified import check_subject, read_signed

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "lab-guide.md"

BEGIN = "<!-- BEGIN GENERATED {name}: python -m docs.lab_guide generate -->"
END = "<!-- END GENERATED {name} -->"
_SECTION = re.compile(
    r"<!-- BEGIN GENERATED (?P<name>[a-z-]+): [^>]*-->\n"
    r"(?P<body>.*?)<!-- END GENERATED (?P=name) -->",
    re.DOTALL,
)

# --- rendering ------------------------------------------------------------------------------


def _code(text: str) -> str:
    return f"`{text}`"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _days(ms: int) -> str:
    return "kept forever" if ms < 0 else f"{ms // DAY_MS} d"


def render_record(record: ExampleRecord) -> str:
    meta = [f"topic: {record.topic}", f"key: {record.key}"]
    meta += [f"header {name}: {value}" for name, value in record.headers]
    value = json.dumps(json.loads(record.value), indent=2, ensure_ascii=False)
    note = f"{record.note}\n\n" if record.note else ""
    return (
        f"#### {record.title}\n\n{note}```text\n" + "\n".join(meta) + "\n```\n\n"
        f"```json\n{value}\n```\n"
    )


def section_principal() -> str:
    principal = lab(LAB_ID)
    namespace = principal.namespace() or ""
    rows = [
        [
            grant.operation.value,
            grant.resource_type.value.lower().replace("_", " "),
            _code(grant.name),
            grant.pattern.value.lower(),
        ]
        for grant in sorted(
            own_grants(principal), key=lambda g: (g.resource_type, g.name, g.operation)
        )
    ]
    return (
        f"For lab id {_code(LAB_ID)} the SCRAM user is {_code(principal.name)} "
        f"(`lab.<lab id>`), and the broker grants it exactly this (`contracts/acl.py`):\n\n"
        + _table(["operation", "resource", "name", "match"], rows)
        + f"\nEvery consumer group the lab uses must start with {_code(namespace)} "
        f"(e.g. {_code(namespace + 'answers-reader')}); any other group name "
        "is refused with GROUP_AUTHORIZATION_FAILED. A reader without a group (assigning "
        "partitions itself, as the agency's lab client does) needs none.\n"
    )


def section_topics() -> str:
    timestamps = {
        plan.name: plan.config.get("message.timestamp.type", "CreateTime")
        for plan in planned_topics()
    }
    inputs = [t for t in TOPICS if Role.LAB in t.writers]
    rows = [
        [
            _code(t.name),
            "write only",
            _code(t.key),
            ", ".join(e.__name__ for e in t.events),
            str(t.partitions),
            _days(int(t.kafka_config()["retention.ms"])),
            timestamps[t.name],
        ]
        for t in inputs
    ]
    rows += [
        [
            _code(f.topic(LAB_ID)),
            "read",
            f.key,
            ", ".join(e.__name__ for e in f.events),
            str(f.partitions),
            ("compacted, " if f.compacted else "") + _days(int(f.kafka_config()["retention.ms"])),
            "CreateTime (the agency's producer)",
        ]
        for f in LAB_FEEDS
    ]
    header = ["topic (lab `example-lab`)", "the lab may", "record key", "events"]
    return _table([*header, "partitions", "retention", "record timestamp"], rows)


LAB_SENDS: dict[str, str] = {
    "specversion": '`"1.0"`',
    "id": "a new UUID (canonical text) for every record you produce; answers name it "
    "(`filed_event_id`, `requested_event_id`, `rejected_event_id`), and an answer to input "
    "that did not authenticate is keyed by it. Printable text only: an id (or source, type, "
    "subject) with a control character is refused as `invalid_envelope`, answered by the "
    "submission id it names",
    "source": f"`/labs/<lab id>` (`/labs/{LAB_ID}`): not signed and not trusted, but logged",
    "type": "`frontier_review.lab.SubmissionFiled`, `frontier_review.lab.WithdrawalRequested` "
    "or `frontier_review.lab.ComplianceAcknowledged`",
    "subject": "exactly the signed `data.submission_id` (`data.model_id` on `lab.compliance`), "
    "as text, and the same bytes as the record key; else `subject_mismatch`",
    "time": "when you built the event, RFC 3339 with a UTC offset (`Z`); informational",
    "datacontenttype": '`"application/json"` (or leave it out: that is the default)',
    "dataschema": "`urn:frontier-review:schema:<type>:v1` (optional; the committed JSON "
    "Schema's `$id`)",
    "traceparent": "optional: the W3C trace context the event was born in",
}
"""What a lab sends in each envelope attribute; generation fails when one is missing."""


def section_envelope() -> str:
    schema = CloudEventAttributes.model_json_schema()
    required = set(schema.get("required", []))
    missing = sorted(set(schema["properties"]) - set(LAB_SENDS))
    if missing:
        raise ValueError(f"LAB_SENDS lacks {', '.join(missing)}: say what a lab sends in it")
    rows = []
    for name, spec in schema["properties"].items():
        text = next((a for a in spec.get("anyOf", []) if a.get("type") != "null"), spec)
        if "const" in spec:
            kind = f"string, exactly {_code(spec['const'])}"
        else:
            kind = text.get("type", "string") + (f" ({text['format']})" if "format" in text else "")
        if "minLength" in text or "maxLength" in text:
            kind += f", {text.get('minLength', 0)}-{text['maxLength']} characters"
        presence = "required" if name in required else "optional"
        rows.append([_code(name), kind, presence, LAB_SENDS[name]])
    rows.append([_code("data"), "object", "required", "the event's payload, signed (below)"])
    return _table(["attribute", "type", "presence", "what a lab sends"], rows)


def _duration(delta: timedelta) -> str:
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"


def section_signing() -> str:
    policy = FreshnessPolicy()
    seed = EXAMPLE_KEY_SEED.hex()
    public = base64.b64encode(example_public_key()).decode()
    return (
        _table(
            ["rule", "value"],
            [
                [
                    "`issued_at` may precede the broker's LogAppendTime by (max_age `A`)",
                    _duration(policy.max_age),
                ],
                [
                    "`issued_at` may follow the LogAppendTime by (max_future `F`)",
                    _duration(policy.max_future),
                ],
                ["clock tolerance broker/agency (`T`)", _duration(policy.clock_tolerance)],
                ["a record may wait on an input topic (`L`)", _duration(policy.max_record_age)],
                [
                    "a spent nonce is remembered after its `issued_at` (`L + A + 2T`)",
                    _duration(policy.nonce_retention),
                ],
            ],
        )
        + "\nThe **example key** of this guide (published: anyone can sign with it, so no "
        "operator may ever register it):\n\n"
        + _table(
            ["", ""],
            [
                ["key id", _code(EXAMPLE_KEY_ID)],
                ["private key (32-byte Ed25519 seed, hex)", _code(seed)],
                ["public key (32 raw bytes, base64)", _code(public)],
            ],
        )
    )


def section_lab_examples() -> str:
    out = []
    for record in lab_examples():
        out.append(render_record(record))
        signed = record.event.data
        canonical = read_signed(record.value, principal_field="lab_id")
        assert not isinstance(canonical, Refusal)
        from contracts.events.common import signing_input

        signed_bytes = signing_input(canonical.data).decode()
        out.append(
            f"The bytes signed (RFC 8785 of `data` without `signature.value`), "
            f"{len(signed_bytes.encode())} bytes:\n\n```text\n{signed_bytes}\n```\n\n"
            f"Broker LogAppendTime in this example: "
            f"{_code(record.appended_at.isoformat(timespec='milliseconds'))}, "
            f"{record.appended_at.timestamp() * 1000:.0f} ms since the epoch "
            f"(`signature.issued_at` {_code(signed.signature.issued_at.isoformat())}): "
            "fresh.\n"
        )
    return "\n".join(out)


def section_answer_examples() -> str:
    return "\n".join(render_record(record) for record in answer_examples())


def section_criteria() -> str:
    criteria = load_criteria(CRITERIA)
    capabilities = ", ".join(_code(c) for c in sorted(criteria.covered_capabilities)) or "none"
    threshold = criteria.training_compute_flop_at_least
    return (
        f"Criteria version {_code(criteria.version)} (`SubmissionAccepted.criteria_version` "
        "names the version that decided). A model is covered when **either** holds:\n\n"
        f"- `model.training_compute_flop` >= {_code(format(threshold, '.6g'))} "
        f"FLOP: `reason` {_code('covered_by_compute')};\n"
        f"- `model.declared_capabilities` contains at least one of: {capabilities}: "
        f"`reason` {_code('covered_by_capability')}.\n\n"
        "Both: `covered_by_compute_and_capability`. Neither: `SubmissionRejected` with reason "
        "`not_covered_model`, and the detail says which figures decided.\n"
    )


REASON_MEANINGS: dict[RejectionReason, str] = {
    RejectionReason.UNKNOWN_LAB: "the claimed `lab_id` is not registered",
    RejectionReason.UNKNOWN_EVALUATOR: "evaluators only: the claimed evaluator is not registered",
    RejectionReason.UNKNOWN_KEY: "`signature.key_id` is not a key of the claimed lab",
    RejectionReason.REVOKED_KEY: "the key was revoked",
    RejectionReason.EXPIRED_KEY: "the broker's append time is outside the key's validity window",
    RejectionReason.BAD_SIGNATURE: "the signature does not verify over the data as received",
    RejectionReason.STALE_ISSUED_AT: "`issued_at` is more than max_age before the broker's "
    "append time",
    RejectionReason.FUTURE_ISSUED_AT: "`issued_at` is more than max_future after the broker's "
    "append time",
    RejectionReason.REPLAYED_NONCE: "the nonce was spent before with this key",
    RejectionReason.MALFORMED: "the input could not be read in a way no other code describes",
    RejectionReason.MALFORMED_JSON: "not UTF-8 JSON the agency reads (BOM, UTF-16, syntax, NaN, "
    "duplicate member names, too deep, too many members, too long an integer)",
    RejectionReason.INVALID_ENVELOPE: "JSON, but not a valid CloudEvent",
    RejectionReason.UNKNOWN_EVENT_TYPE: "`type` does not travel on this topic",
    RejectionReason.SCHEMA_VIOLATION: "`data` does not match its contract (strictly: no coercion); "
    "`field_errors` name the paths",
    RejectionReason.SUBJECT_MISMATCH: "the CloudEvent `subject` is not the signed id",
    RejectionReason.OVERSIZED: "the record value is larger than the consumer's limit",
    RejectionReason.ENDPOINT_NOT_HTTPS: "legacy code of the endpoint check; today "
    "`endpoint_not_allowed` is sent instead",
    RejectionReason.NOT_COVERED_MODEL: "the model meets none of the coverage criteria",
    RejectionReason.CONFLICT: "the submission id exists with a different body",
    RejectionReason.UNKNOWN_SUBMISSION: "a withdrawal names a submission the agency does not have",
    RejectionReason.NOT_OWNER: "the submission belongs to another lab",
    RejectionReason.CREDENTIAL_NOT_OWNED: "`evaluation_access.credential_ref` is not under "
    "`labs/<lab id>/`",
    RejectionReason.INVALID_STATE: "the request does not fit the submission's state "
    "(e.g. withdrawn or decided already)",
    RejectionReason.UNKNOWN_POLICY: "an acknowledgement names a policy version that was never "
    "published for the model",
    RejectionReason.POLICY_MISMATCH: "an acknowledgement's content hash or orders are not "
    "those of the version it names",
    RejectionReason.AUTHENTICATION_FAILED: "the only refusal an unauthenticated sender hears "
    "for anything but a shape error",
    RejectionReason.UNKNOWN_PRINCIPAL: "reviewers only: the claimed sender is not registered",
    RejectionReason.ENDPOINT_NOT_ALLOWED: "the evaluation endpoint is not a public https host "
    "(loopback, private, link-local, reserved, credentials in the URL, does not resolve)",
    RejectionReason.IMPLAUSIBLE_ENFORCED_AT: "an acknowledgement's `enforced_at` lies in the "
    "future or before the version was published",
    RejectionReason.UNKNOWN_COUNTRY_GROUP: "agency-internal (restriction orders)",
    RejectionReason.INVALID_POLICY: "agency-internal (policy compilation)",
    RejectionReason.UNKNOWN_REVIEWER: "reviewers only",
    RejectionReason.UNKNOWN_ESCALATION: "reviewers only",
    RejectionReason.ESCALATION_MISMATCH: "reviewers only",
    RejectionReason.ALREADY_SIGNED: "reviewers only",
    RejectionReason.ESCALATION_CONCLUDED: "reviewers only",
    RejectionReason.ESCALATION_SUPERSEDED: "reviewers only",
    RejectionReason.NO_INTERIM_ORDER: "reviewers only",
    RejectionReason.ORDER_OUTDATED: "reviewers only",
    RejectionReason.NOT_ASSIGNED: "evaluators only: not assigned to the submission",
}
"""One line per reason code; generation fails when a code has none (document it)."""


def section_reasons() -> str:
    missing = [r.value for r in RejectionReason if r not in REASON_MEANINGS]
    if missing:
        raise ValueError(f"REASON_MEANINGS lacks {', '.join(missing)}: say what each means")
    rows = [
        [
            _code(reason.value),
            "as is"
            if public_refusal(Refusal(reason, "")).reason is reason
            else "`authentication_failed`",
            REASON_MEANINGS[reason],
        ]
        for reason in RejectionReason
    ]
    shape = ", ".join(_code(r.value) for r in RejectionReason if r in SHAPE_REASONS)
    return (
        _table(["reason", "told to a sender that did not authenticate", "meaning"], rows)
        + f"\nTold as is without authentication (the shape of the bytes): {shape}. "
        "Everything else becomes `authentication_failed` with this fixed detail and no "
        f"field errors:\n\n> {AUTHENTICATION_FAILED_DETAIL}\n"
    )


@dataclass(frozen=True)
class Variant:
    change: str
    raw: Callable[[bytes], bytes]


def _edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        document = json.loads(raw)
        edit(document)
        return json.dumps(document).encode()

    return apply


def _set(path: str, value: Any) -> Callable[[bytes], bytes]:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[part]
        target[last] = value

    return _edit(edit)


VARIANTS: tuple[Variant, ...] = (
    Variant(
        '`"requested_review_days": "14"` (a string for a number)',
        _set("data.requested_review_days", "14"),
    ),
    Variant('`"requested_review_days": true`', _set("data.requested_review_days", True)),
    Variant(
        '`"requested_review_days": 14.0` (an integer field takes integer literals only)',
        _set("data.requested_review_days", 14.0),
    ),
    Variant(
        '`"training_compute_flop": "3.2e26"` (a string)',
        _set("data.model.training_compute_flop", "3.2e26"),
    ),
    Variant(
        "an upper-case `submission_id`",
        lambda raw: _set("data.submission_id", json.loads(raw)["data"]["submission_id"].upper())(
            raw
        ),
    ),
    Variant(
        "a `submission_id` without hyphens",
        lambda raw: _set(
            "data.submission_id", json.loads(raw)["data"]["submission_id"].replace("-", "")
        )(raw),
    ),
    Variant(
        "an unknown member `data.model.parameters`", _set("data.model.parameters", 70_000_000_000)
    ),
    Variant("a NUL character in `data.notes`", _set("data.notes", "frozen\u0000")),
    Variant(
        "a duplicate member name (`requested_review_days` twice)",
        lambda raw: raw.replace(
            b'"requested_review_days":14',
            b'"requested_review_days":14,"requested_review_days":30',
            1,
        ),
    ),
    Variant("a UTF-8 byte order mark before the JSON", lambda raw: b"\xef\xbb\xbf" + raw),
    Variant("the same JSON in UTF-16", lambda raw: raw.decode().encode("utf-16")),
    Variant(
        f"an integer literal of {MAX_INTEGER_DIGITS + 1} digits",
        lambda raw: raw.replace(
            b'"requested_review_days":14',
            b'"requested_review_days":' + b"9" * (MAX_INTEGER_DIGITS + 1),
            1,
        ),
    ),
    Variant(
        "`type` of an event that does not travel on the topic",
        _set("type", "frontier_review.lab.ComplianceAcknowledged"),
    ),
    Variant(
        "`subject` not the signed `submission_id`",
        _set("subject", "00000000-0000-4000-8000-000000000000"),
    ),
    Variant(
        "`data.notes` changed after signing", _set("data.notes", "Snapshot frozen for the review!")
    ),
)


def refusal_of(raw: bytes, topic: str) -> RejectionReason | None:
    """What the agency's decoding and signature checks (before any key lookup) say of ``raw``:
    decode, the signed data as received, the subject, then the example key's signature."""
    decoded = decode_lab_input(raw, topic)
    if isinstance(decoded, ContractViolation):
        return invalid_input_refusal(decoded).reason
    signed = read_signed(raw, principal_field="lab_id")
    if isinstance(signed, Refusal):
        return signed.reason
    field = TOPIC_BY_NAME[topic].key
    subject = check_subject(decoded.subject, signed, field)
    if subject is not None:
        return subject.reason
    if not signature_valid(example_public_key(), signed.data, signed.signature.value):
        return RejectionReason.BAD_SIGNATURE
    return None


def section_refusals() -> str:
    filing = example_filing()
    rows = []
    for variant in VARIANTS:
        reason = refusal_of(variant.raw(filing.value), filing.topic)
        if reason is None:
            raise ValueError(f"the variant {variant.change!r} is accepted: not a refusal example")
        told = public_refusal(Refusal(reason, "")).reason
        rows.append([variant.change, _code(reason.value), _code(told.value)])
    return _table(["the SubmissionFiled example with", "reason", "the sender is told"], rows)


def _default(settings: type[RuntimeSettings], name: str) -> object:
    return settings.model_fields[name].default


def section_limits() -> str:
    settings = RuntimeSettings()
    return _table(
        ["limit", "value"],
        [
            ["record value (larger: `oversized`)", f"{settings.max_message_bytes:,} bytes"],
            ["nesting of objects and arrays", str(MAX_DEPTH)],
            ["members of one object (external input)", str(MAX_MEMBERS)],
            ["digits of an integer literal", str(MAX_INTEGER_DIGITS)],
            [
                "integers that can be signed (RFC 8785 / I-JSON)",
                "within ±(2**53 - 1); write larger numbers with an exponent",
            ],
            ["CloudEvent `id`, `type`, `subject`", "1-200 characters; `source` 1-500"],
            ["canonical UUID (`submission_id`, `order_ids`)", _code(UUID_PATTERN)],
            [
                "answers to input that did not authenticate, per claimed lab and hour "
                "(submissions; acknowledgements)",
                f"{_default(IntakeSettings, 'intake_refusals_answered_per_hour')}; "
                f"{_default(AccessSettings, 'access_refusals_answered_per_hour')}",
            ],
            [
                "answers to duplicates of one filing, per submission and hour",
                str(_default(IntakeSettings, "intake_duplicates_answered_per_hour")),
            ],
            ["a DLQ topic's records", f"up to {DLQ_MAX_MESSAGE_BYTES:,} bytes (the full original)"],
        ],
    )


DLQ_REASONS: dict[str, str] = {
    "malformed_json": "not readable JSON, and no answer could be addressed (no readable "
    "event id or subject)",
    "invalid_envelope": "not a CloudEvent, and no answer could be addressed",
    "unknown_event_type": "a type the topic does not carry, and no answer could be addressed",
    "schema_violation": "the data does not match, and no answer could be addressed",
    "oversized": "larger than the consumer's limit, and no answer could be addressed",
    "event_id_reused": "an agency topic's event id applied before with other bytes",
    IMPLAUSIBLE_APPEND_TIME: "the broker timestamp is implausible (a clock or topic "
    "configuration fault): neither accepted nor refused, kept for a re-drive",
    "event_too_large": "the answer the record caused would exceed the record size limit",
    "handler_failed": "the service failed on the record after its retries (a defect on the "
    "agency's side, never a verdict on the input)",
    "apply_failed": "the database refused to store what the record caused",
}


def section_dlq() -> str:
    record = Record(
        topic="lab.submissions",
        partition=3,
        offset=1207,
        key=b"7d1f9a40-3c2b-4e5f-8a6b-9c0d1e2f3a4b",
        headers={"content-type": CONTENT_TYPE.encode(), "traceparent": TRACEPARENT.encode()},
        timestamp_ms=int((SIGNED_AT + APPENDED_AFTER).timestamp() * 1000),
        log_append_time=True,
    )
    letter = dead_letter(
        record,
        b"{}",
        reason="handler_failed",
        error="RuntimeError: example",
        consumer="intake.lab.submissions",
        attempts=5,
        at=SIGNED_AT + timedelta(seconds=4),
    )
    rows = [[_code(name), _code(value)] for name, value in letter.headers.items()]
    return (
        f"Topic `<topic>.dlq` (here {_code(letter.topic)}), key = the original key, value = the "
        "original bytes. Headers, every value UTF-8 text:\n\n"
        + _table(["header", "example value"], rows)
        + "\nReasons (`dlq.reason`):\n\n"
        + _table(["reason", "meaning"], [[_code(k), v] for k, v in DLQ_REASONS.items()])
    )


SECTIONS: dict[str, Callable[[], str]] = {
    "principal": section_principal,
    "topics": section_topics,
    "envelope": section_envelope,
    "signing": section_signing,
    "lab-examples": section_lab_examples,
    "answer-examples": section_answer_examples,
    "criteria": section_criteria,
    "reasons": section_reasons,
    "refusals": section_refusals,
    "limits": section_limits,
    "dlq": section_dlq,
}


def render(document: str) -> str:
    """``document`` with every generated section as the code produces it now."""
    found = {m.group("name") for m in _SECTION.finditer(document)}
    missing = sorted(set(SECTIONS) - found)
    if missing:
        raise ValueError(f"{GUIDE.name} lacks the markers of {', '.join(missing)}")
    return _SECTION.sub(
        lambda m: (
            f"{BEGIN.format(name=m.group('name'))}\n{SECTIONS[m.group('name')]()}"
            f"{END.format(name=m.group('name'))}"
        ),
        document,
    )


def stale_sections(document: str) -> list[str]:
    """The names of the sections of ``document`` that differ from what the code produces."""
    fresh = {m.group("name"): m.group("body") for m in _SECTION.finditer(render(document))}
    return [
        m.group("name")
        for m in _SECTION.finditer(document)
        if fresh[m.group("name")] != m.group("body")
    ]


_RECORD = re.compile(
    r"```text\n(?P<meta>topic: .*?)\n```\n\n```json\n(?P<value>.*?)\n```", re.DOTALL
)


@dataclass(frozen=True)
class ShownRecord:
    """A record as the guide shows it, read back from the text."""

    topic: str
    key: str
    headers: dict[str, str]
    value: bytes


def shown_records(document: str, section: str) -> list[ShownRecord]:
    """The example records in ``section`` of ``document``, read from the text."""
    body = next(m.group("body") for m in _SECTION.finditer(document) if m.group("name") == section)
    records = []
    for match in _RECORD.finditer(body):
        meta: dict[str, str] = {}
        headers: dict[str, str] = {}
        for line in match.group("meta").splitlines():
            name, _, value = line.partition(": ")
            if name.startswith("header "):
                headers[name.removeprefix("header ")] = value
            else:
                meta[name] = value
        records.append(
            ShownRecord(meta["topic"], meta["key"], headers, match.group("value").encode())
        )
    return records


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "generate":
        GUIDE.write_text(render(GUIDE.read_text()))
        return 0
    if command == "check":
        stale = stale_sections(GUIDE.read_text())
        for name in stale:
            print(
                f"STALE {GUIDE.relative_to(ROOT)}: section {name}; "
                "run python -m docs.lab_guide generate"
            )
        return 1 if stale else 0
    print("usage: python -m docs.lab_guide generate|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
