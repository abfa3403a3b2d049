"""The audit log as pure code: a hash chain of signed entries, signed checkpoints of its
head, and a verifier that names the first broken entry.

Entry ``n`` (``n`` = 1, 2, 3 ... without gaps):

    content       = RFC 8785 canonical JSON of what happened (the event's data; for a
                    reviewer's decision, the signed data exactly as received)
    entry_sha256  = SHA-256( "frontier-review/audit-entry/v1\\n" ||
                             RFC 8785 { sequence, kind, subject, recorded_at,
                                        previous_sha256, content_sha256 } )
    previous_sha256 = entry_sha256 of entry n - 1 (64 zeros for entry 1)
    signature     = Ed25519( "frontier-review/audit-signature/v1\\n" || entry hash bytes )
                    by the service key named by key_id

Changing any entry changes its hash and breaks the link from the next one; the
signature stops anyone without the service key from re-hashing the tail. Someone *with*
the key (or the database's owner, who can drop the trigger that refuses UPDATE and
DELETE) could rewrite the tail consistently: that is what the checkpoints are for. An
``AuditCheckpoint`` (gov.audit, in the spirit of an RFC 9162 signed tree head) states the
log's size and head hash, signed; parties outside the agency keep them, and a log whose
entry at a checkpoint's size no longer hashes to its head was rewritten, one shorter
than a checkpoint's size was truncated. A tail appended after the last checkpoint can
only be checked as far as the chain and signatures go: publish checkpoints often.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ValidationError

from contracts.events.common import signing_input
from contracts.events.gov import AuditCheckpoint
from services.risk.model import AuditEntry

GENESIS = "0" * 64
ENTRY_DOMAIN = b"frontier-review/audit-entry/v1\n"
SIGNATURE_DOMAIN = b"frontier-review/audit-signature/v1\n"
LOG_ID = "risk"
PLACEHOLDER_SIGNATURE = base64.b64encode(bytes(64)).decode()


class AuditKind(StrEnum):
    """What an entry records."""

    ASSESSMENT_ESCALATED = "assessment_escalated"  # a RiskAssessed that requires escalation
    ESCALATION_RAISED = "escalation_raised"
    ESCALATION_SUPERSEDED = "escalation_superseded"
    ORDER_ISSUED = "order_issued"  # RestrictionOrdered, interim or final
    DECISION_ACCEPTED = "decision_accepted"  # the reviewer's signed data, verbatim
    DECISION_REFUSED = "decision_refused"
    ESCALATION_OVERDUE = "escalation_overdue"
    LIFT_ORDERED = "lift_ordered"  # RestrictionLiftOrdered: the reviewers' quorum lifts an order
    RESTRICTION_LIFTED = "restriction_lifted"  # RestrictionLifted from access: it is lifted
    COMPLIANCE_OVERDUE = "compliance_overdue"
    REVIEW_CONCLUDED = "review_concluded"


@dataclass(frozen=True)
class ServiceKey:
    """The risk service's signing key (from its secret store) and the id it is published
    under."""

    key_id: str
    private_key: Ed25519PrivateKey

    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def canonical(content: BaseModel | Mapping[str, Any]) -> str:
    """RFC 8785 JSON of an event's data (None fields omitted, as ``encode`` sends it) or of
    a JSON object as received."""
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json", exclude_none=True)
    return bytes(rfc8785.dumps(dict(content))).decode()


def entry_sha256(
    sequence: int,
    kind: str,
    subject: str,
    recorded_at: datetime,
    content: str,
    previous_sha256: str,
) -> str:
    header: dict[str, Any] = {
        "sequence": sequence,
        "kind": kind,
        "subject": subject,
        "recorded_at": _utc(recorded_at),
        "previous_sha256": previous_sha256,
        "content_sha256": hashlib.sha256(content.encode()).hexdigest(),
    }
    return hashlib.sha256(ENTRY_DOMAIN + rfc8785.dumps(header)).hexdigest()


class ChainHead(NamedTuple):
    """What the next entry links to: the last entry's number and hash (0 and GENESIS for
    an empty log). An AuditEntry is one too."""

    sequence: int
    entry_sha256: str


def append(
    previous: AuditEntry | ChainHead | None,
    kind: AuditKind,
    subject: str,
    content: BaseModel | Mapping[str, Any],
    recorded_at: datetime,
    key: ServiceKey,
) -> AuditEntry:
    """The entry after ``previous`` (None: the first). The caller serialises appends
    (one head at a time) and stores the entry in the transaction of what it records."""
    sequence = previous.sequence + 1 if previous else 1
    previous_sha256 = previous.entry_sha256 if previous else GENESIS
    if previous is not None and previous.sequence == 0 and previous_sha256 != GENESIS:
        raise ValueError("an empty log's head is the genesis hash")
    text = canonical(content)
    digest = entry_sha256(sequence, kind.value, subject, recorded_at, text, previous_sha256)
    signature = key.private_key.sign(SIGNATURE_DOMAIN + bytes.fromhex(digest))
    return AuditEntry(
        sequence=sequence,
        kind=kind.value,
        subject=subject,
        recorded_at=recorded_at,
        content=text,
        previous_sha256=previous_sha256,
        entry_sha256=digest,
        key_id=key.key_id,
        signature=base64.b64encode(signature).decode(),
    )


def checkpoint(head: AuditEntry | None, now: datetime, key: ServiceKey) -> AuditCheckpoint:
    """A signed statement of the log's head (``head`` None: the empty log)."""
    size = head.sequence if head else 0
    head_sha256 = head.entry_sha256 if head else GENESIS
    unsigned = AuditCheckpoint.model_validate(
        {
            "log_id": LOG_ID,
            "size": size,
            "head_sha256": head_sha256,
            "checkpointed_at": now,
            "signature": {
                "key_id": key.key_id,
                "algorithm": "ed25519",
                "issued_at": now,
                # unique per checkpoint of this key (one per interval, so a log that did
                # not grow is checkpointed again at a later time), and reproducible
                "nonce": f"cp-{size}-{head_sha256[:16]}-{_micros(now)}",
                "value": PLACEHOLDER_SIGNATURE,
            },
        }
    )
    value = base64.b64encode(key.private_key.sign(unsigned.signing_bytes())).decode()
    return unsigned.model_copy(
        update={"signature": unsigned.signature.model_copy(update={"value": value})}
    )


# --- verification ----------------------------------------------------------------------


class Break(StrEnum):
    """How an entry is broken."""

    MISSING = "missing"  # a sequence number is absent: the entry was deleted
    REORDERED = "reordered"  # it links to another entry than its predecessor
    CHAIN_BROKEN = "chain_broken"  # it links to no entry of the log (inserted / predecessor gone)
    CONTENT_TAMPERED = "content_tampered"  # its stored hash is not the hash of its content
    BAD_SIGNATURE = "bad_signature"  # the service key did not sign it
    UNKNOWN_KEY = "unknown_key"  # signed by a key id that was never published
    TRUNCATED = "truncated"  # a signed checkpoint says the log had this entry
    REWRITTEN = "rewritten"  # a signed checkpoint's head differs: rewritten consistently


@dataclass(frozen=True)
class BrokenEntry:
    sequence: int
    kind: Break
    detail: str


@dataclass(frozen=True)
class BadCheckpoint:
    """A checkpoint that proves nothing (bad signature, unknown key, malformed)."""

    size: int | None
    detail: str


@dataclass(frozen=True)
class ChainReport:
    entries: int
    checkpoints_verified: int
    problems: tuple[BrokenEntry, ...] = ()
    bad_checkpoints: tuple[BadCheckpoint, ...] = field(default=())

    @property
    def first_broken(self) -> BrokenEntry | None:
        return min(self.problems, key=lambda p: p.sequence, default=None)

    @property
    def intact(self) -> bool:
        return not self.problems and not self.bad_checkpoints


def verify_chain(
    entries: Iterable[AuditEntry],
    checkpoints: Iterable[Mapping[str, Any]],
    keys: Mapping[str, bytes],
    *,
    log_id: str = LOG_ID,
) -> ChainReport:
    """Walk the log and check it against the published checkpoints.

    ``checkpoints`` are AuditCheckpoint data objects as received (parsed JSON), since a
    signature is verified over the data as sent; ``keys`` maps published key ids to raw
    Ed25519 public keys (the service's current and retired keys).
    """
    chain = sorted(entries, key=lambda e: e.sequence)
    problems = list(_walk(chain, keys))
    bad: list[BadCheckpoint] = []
    verified: list[AuditCheckpoint] = []
    for data in checkpoints:
        accepted = _verified_checkpoint(data, keys, log_id)
        if isinstance(accepted, BadCheckpoint):
            bad.append(accepted)
        else:
            verified.append(accepted)
    problems += _against_checkpoints(chain, verified)
    return ChainReport(
        entries=len(chain),
        checkpoints_verified=len(verified),
        # stable: of two problems of one entry, the one found first (the cause) leads
        problems=tuple(sorted(problems, key=lambda p: p.sequence)),
        bad_checkpoints=tuple(bad),
    )


def _walk(chain: list[AuditEntry], keys: Mapping[str, bytes]) -> Iterable[BrokenEntry]:
    hashes = {entry.entry_sha256: entry.sequence for entry in chain}
    expected, previous_sha256 = 1, GENESIS
    for entry in chain:
        if entry.sequence > expected:
            gap = (
                f"{expected}"
                if entry.sequence == expected + 1
                else (f"{expected}..{entry.sequence - 1}")
            )
            yield BrokenEntry(expected, Break.MISSING, f"entry {gap} is missing (deleted)")
        elif entry.sequence < expected:
            yield BrokenEntry(entry.sequence, Break.REORDERED, "sequence number repeated")
        if entry.sequence == expected and entry.previous_sha256 != previous_sha256:
            other = hashes.get(entry.previous_sha256)
            if other is not None:
                yield BrokenEntry(
                    entry.sequence,
                    Break.REORDERED,
                    f"it links to entry {other}, not to entry {entry.sequence - 1}: "
                    "entries were reordered",
                )
            else:
                yield BrokenEntry(
                    entry.sequence,
                    Break.CHAIN_BROKEN,
                    f"it links to {entry.previous_sha256[:16]}..., which is no entry of the "
                    f"log: entry {entry.sequence - 1} was altered or an entry was removed "
                    "or inserted",
                )
        recomputed = entry_sha256(
            entry.sequence,
            entry.kind,
            entry.subject,
            entry.recorded_at,
            entry.content,
            entry.previous_sha256,
        )
        if recomputed != entry.entry_sha256:
            yield BrokenEntry(
                entry.sequence,
                Break.CONTENT_TAMPERED,
                "its content, kind, subject or time no longer hash to its stored hash",
            )
        else:
            problem = _signature_problem(entry, keys)
            if problem is not None:
                yield problem
        expected = entry.sequence + 1
        previous_sha256 = entry.entry_sha256


def _signature_problem(entry: AuditEntry, keys: Mapping[str, bytes]) -> BrokenEntry | None:
    public = keys.get(entry.key_id)
    if public is None:
        return BrokenEntry(
            entry.sequence, Break.UNKNOWN_KEY, f"signed with unknown key {entry.key_id!r}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(entry.signature, validate=True),
            SIGNATURE_DOMAIN + bytes.fromhex(entry.entry_sha256),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return BrokenEntry(
            entry.sequence,
            Break.BAD_SIGNATURE,
            f"the signature does not verify with key {entry.key_id!r}",
        )
    return None


def _verified_checkpoint(
    data: Mapping[str, Any], keys: Mapping[str, bytes], log_id: str
) -> AuditCheckpoint | BadCheckpoint:
    try:
        parsed = AuditCheckpoint.model_validate(data)
    except ValidationError as exc:
        return BadCheckpoint(None, f"malformed checkpoint: {exc.error_count()} error(s)")
    if parsed.log_id != log_id:
        return BadCheckpoint(parsed.size, f"a checkpoint of log {parsed.log_id!r}")
    public = keys.get(parsed.signature.key_id)
    if public is None:
        return BadCheckpoint(parsed.size, f"signed with unknown key {parsed.signature.key_id!r}")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(parsed.signature.value, validate=True), signing_input(dict(data))
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return BadCheckpoint(parsed.size, "the checkpoint's signature does not verify")
    return parsed


def _against_checkpoints(
    chain: list[AuditEntry], checkpoints: list[AuditCheckpoint]
) -> Iterable[BrokenEntry]:
    by_sequence = {entry.sequence: entry for entry in chain}
    last = chain[-1].sequence if chain else 0
    good_below = 0  # the largest checkpointed size found intact so far
    for cp in sorted(checkpoints, key=lambda c: c.size):
        if cp.size == 0:
            continue
        if cp.size > last:
            yield BrokenEntry(
                last + 1,
                Break.TRUNCATED,
                f"the log ends at entry {last}, but a checkpoint signed at "
                f"{cp.checkpointed_at.isoformat()} says it had {cp.size} entries",
            )
            continue
        entry = by_sequence.get(cp.size)
        if entry is None:
            continue  # reported as missing by the walk
        if entry.entry_sha256 != cp.head_sha256:
            yield BrokenEntry(
                good_below + 1,
                Break.REWRITTEN,
                f"entry {cp.size} does not hash to the head signed at "
                f"{cp.checkpointed_at.isoformat()}: entries {good_below + 1}..{cp.size} were "
                "rewritten (consistently re-hashed and re-signed)",
            )
        else:
            good_below = cp.size


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
