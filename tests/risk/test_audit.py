"""The audit log's hash chain, checkpoints and verifier (pure): each kind of tampering is
caught at the right entry."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import encode, make_event
from contracts.events.gov import AuditCheckpoint
from contracts.registry import subject_for
from services.risk.audit import (
    GENESIS,
    AuditKind,
    Break,
    ServiceKey,
    append,
    checkpoint,
    entry_sha256,
    verify_chain,
)
from services.risk.model import AuditEntry
from tests.risk.support import NOW, SUBMISSION_ID

KEY = ServiceKey("risk-k1", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
KEYS = {KEY.key_id: KEY.public_bytes()}
KINDS = list(AuditKind)


def chain(
    size: int, key: ServiceKey = KEY, start: list[AuditEntry] | None = None
) -> list[AuditEntry]:
    entries = list(start or [])
    for n in range(len(entries), size):
        entries.append(
            append(
                entries[-1] if entries else None,
                KINDS[n % len(KINDS)],
                str(SUBMISSION_ID),
                {"n": n, "what": f"event {n}", "score": n / 3},
                NOW + timedelta(seconds=n),
                key,
            )
        )
    return entries


def received(cp: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint's data as a party outside the agency received it from gov.audit."""
    data: dict[str, Any] = json.loads(
        encode(make_event(cp, source="/risk", subject=subject_for(cp)))
    )["data"]
    return data


def checkpoints_at(entries: list[AuditEntry], *sizes: int) -> list[dict[str, Any]]:
    return [
        received(checkpoint(entries[size - 1], NOW + timedelta(hours=size), KEY)) for size in sizes
    ]


def first_broken(
    entries: list[AuditEntry], cps: list[dict[str, Any]] | None = None
) -> tuple[int, Break] | None:
    report = verify_chain(entries, cps or [], KEYS)
    broken = report.first_broken
    return (broken.sequence, broken.kind) if broken else None


def test_an_untouched_log_verifies_against_its_checkpoints() -> None:
    entries = chain(8)
    report = verify_chain(entries, checkpoints_at(entries, 4, 8), KEYS)
    assert report.intact and report.entries == 8 and report.checkpoints_verified == 2
    assert [e.sequence for e in entries] == list(range(1, 9))
    assert entries[0].previous_sha256 == GENESIS
    assert all(b.previous_sha256 == a.entry_sha256 for a, b in pairwise(entries))


def test_entries_are_deterministic_and_their_content_canonical() -> None:
    assert chain(3) == chain(3)
    assert chain(1)[0].content == '{"n":0,"score":0,"what":"event 0"}'


def test_a_tampered_row_is_caught_at_that_entry() -> None:
    entries = chain(8)
    entries[4] = replace(entries[4], content=entries[4].content.replace("event 4", "nothing"))
    assert first_broken(entries) == (5, Break.CONTENT_TAMPERED)


def test_a_tampered_time_or_kind_is_caught_too() -> None:
    entries = chain(8)
    entries[2] = replace(entries[2], recorded_at=entries[2].recorded_at + timedelta(days=1))
    entries[6] = replace(entries[6], kind=AuditKind.DECISION_REFUSED.value)
    report = verify_chain(entries, [], KEYS)
    assert [(p.sequence, p.kind) for p in report.problems] == [
        (3, Break.CONTENT_TAMPERED),
        (7, Break.CONTENT_TAMPERED),
    ]


def test_a_rehashed_tampered_row_fails_its_signature() -> None:
    entries = chain(8)
    forged = replace(entries[4], content='{"n":4,"what":"nothing"}')
    forged = replace(
        forged,
        entry_sha256=entry_sha256(
            forged.sequence,
            forged.kind,
            forged.subject,
            forged.recorded_at,
            forged.content,
            forged.previous_sha256,
        ),
    )
    entries[4] = forged
    report = verify_chain(entries, [], KEYS)
    assert report.first_broken is not None
    assert (report.first_broken.sequence, report.first_broken.kind) == (5, Break.BAD_SIGNATURE)
    assert (6, Break.CHAIN_BROKEN) in [(p.sequence, p.kind) for p in report.problems]


def test_a_deleted_row_is_caught_where_it_is_missing() -> None:
    entries = chain(8)
    del entries[4]
    assert first_broken(entries) == (5, Break.MISSING)
    del entries[4]  # now 5 and 6 are gone
    report = verify_chain(entries, [], KEYS)
    assert report.first_broken is not None and "5..6" in report.first_broken.detail


def test_a_deleted_row_with_the_rest_renumbered_breaks_the_chain_there() -> None:
    entries = chain(8)
    renumbered = entries[:4] + [replace(e, sequence=e.sequence - 1) for e in entries[5:]]
    assert first_broken(renumbered) == (5, Break.CHAIN_BROKEN)


def test_a_truncated_tail_is_caught_against_the_last_checkpoint() -> None:
    entries = chain(8)
    cps = checkpoints_at(entries, 4, 8)
    assert first_broken(entries[:6], cps) == (7, Break.TRUNCATED)
    assert first_broken(entries[:3], cps) == (4, Break.TRUNCATED)


def test_a_tail_cut_after_the_last_checkpoint_cannot_be_seen() -> None:
    """The limit of checkpoints: publish them often."""
    entries = chain(8)
    assert first_broken(entries[:6], checkpoints_at(entries, 4)) is None


def test_reordered_rows_are_caught_at_the_first_of_them() -> None:
    entries = chain(8)
    swapped = list(entries)
    swapped[3] = replace(entries[4], sequence=4)
    swapped[4] = replace(entries[3], sequence=5)
    assert first_broken(swapped) == (4, Break.REORDERED)


def test_a_forged_signature_is_caught_at_that_entry() -> None:
    entries = chain(8)
    impostor = ServiceKey(KEY.key_id, Ed25519PrivateKey.generate())
    forged = append(
        entries[1],
        KINDS[2],
        str(SUBMISSION_ID),
        {"n": 2, "what": "event 2", "score": 2 / 3},
        NOW + timedelta(seconds=2),
        impostor,
    )
    assert forged.entry_sha256 == entries[2].entry_sha256, "same content, other signer"
    entries[2] = forged
    assert first_broken(entries) == (3, Break.BAD_SIGNATURE)


def test_an_entry_signed_by_an_unpublished_key_is_caught() -> None:
    other = ServiceKey("risk-k9", Ed25519PrivateKey.generate())
    entries = chain(5, key=other, start=chain(2))
    assert first_broken(entries) == (3, Break.UNKNOWN_KEY)


def test_a_rotated_key_verifies_once_it_is_published() -> None:
    rotated = ServiceKey("risk-k2", Ed25519PrivateKey.generate())
    entries = chain(5, key=rotated, start=chain(2))
    keys = KEYS | {rotated.key_id: rotated.public_bytes()}
    assert verify_chain(entries, [], keys).intact


def test_a_consistent_rewrite_with_the_key_is_caught_by_an_earlier_checkpoint() -> None:
    entries = chain(8)
    cps = checkpoints_at(entries, 4, 8)
    rewritten = list(entries[:4])
    for n in range(4, 8):  # an insider with the key re-creates entries 5..8
        rewritten.append(
            append(
                rewritten[-1], KINDS[0], str(SUBMISSION_ID), {"n": n, "what": "benign"}, NOW, KEY
            )
        )
    assert verify_chain(rewritten, [], KEYS).intact, "the chain alone cannot tell"
    report = verify_chain(rewritten, cps, KEYS)
    assert report.first_broken is not None
    assert (report.first_broken.sequence, report.first_broken.kind) == (5, Break.REWRITTEN)
    assert "5..8" in report.first_broken.detail


def test_a_forged_checkpoint_proves_nothing() -> None:
    entries = chain(8)
    impostor = ServiceKey(KEY.key_id, Ed25519PrivateKey.generate())
    forged = received(checkpoint(entries[7], NOW, impostor))
    unknown = received(checkpoint(entries[7], NOW, ServiceKey("who", Ed25519PrivateKey.generate())))
    report = verify_chain(entries[:5], [forged, unknown], KEYS)
    assert report.checkpoints_verified == 0 and report.first_broken is None
    assert [b.detail for b in report.bad_checkpoints] == [
        "the checkpoint's signature does not verify",
        "signed with unknown key 'who'",
    ]
    assert not report.intact


def test_a_checkpoint_altered_in_transit_is_refused() -> None:
    entries = chain(8)
    [data] = checkpoints_at(entries, 8)
    data["size"] = 9
    assert verify_chain(entries, [data], KEYS).bad_checkpoints


def test_the_empty_log_has_a_genesis_checkpoint() -> None:
    cp = checkpoint(None, NOW, KEY)
    assert (cp.size, cp.head_sha256, cp.log_id) == (0, GENESIS, "risk")
    assert verify_chain([], [received(cp)], KEYS).intact
