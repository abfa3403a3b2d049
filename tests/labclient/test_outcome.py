"""Which answer on the lab's feed is the outcome of what the client sent (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import CloudEvent, make_event
from contracts.events.intake import AcceptanceReason, SubmissionAccepted
from contracts.events.lab import SubmissionFiled
from services.labclient import LabClient, body_sha256, load_manifest
from services.labclient.client import answer_to, signature_sha256

MANIFEST = Path(__file__).parents[2] / "services/labclient/examples/submission.yaml"
KEY = Ed25519PrivateKey.generate()
T0 = datetime(2026, 2, 2, 9, tzinfo=UTC)


def client() -> LabClient:
    return LabClient(lab_id="example-lab", key_id="k1", key=KEY)


def filing() -> CloudEvent[SubmissionFiled]:
    """The example manifest, signed anew: each call a duplicate of the others."""
    lab = client()
    return lab.envelope(lab.submission(load_manifest(MANIFEST)))  # type: ignore[return-value]


def acceptance(of: CloudEvent[SubmissionFiled], **extra: Any) -> CloudEvent[Any]:
    filed = of.data
    data = SubmissionAccepted(
        submission_id=filed.submission_id,
        lab_id=filed.lab_id,
        model_id="example-lab/frontier-1@2026-01-10",
        model=filed.model,
        evaluation_access=filed.evaluation_access,
        reason=AcceptanceReason.COVERED_BY_COMPUTE,
        detail="covered",
        criteria_version="2026.1",
        requested_review_days=14,
        review_days=14,
        accepted_at=T0,
        deadline=T0 + timedelta(days=14),
        filed_event_id=of.id,
        body_sha256=body_sha256(filed),
        signature_sha256=signature_sha256(of),
    ).model_copy(update=extra)
    return make_event(data, source="/frontier-review/intake", subject=str(filed.submission_id))


def copy_for(original: CloudEvent[Any], duplicate: CloudEvent[Any]) -> CloudEvent[Any]:
    """Intake's copy of ``original`` answering ``duplicate``."""
    return acceptance(
        duplicate,
        filed_event_id=original.data.filed_event_id,
        signature_sha256=signature_sha256(duplicate),
        duplicate_event_id=duplicate.id,
    )


def test_the_copy_answering_a_duplicate_is_its_bound_outcome() -> None:
    first, again = filing(), filing()
    original = acceptance(first)
    outcome = answer_to(again, copy_for(original, again))
    assert outcome is not None and outcome.status == "duplicate" and outcome.bound


def test_the_original_decision_is_a_duplicates_outcome_but_unbound() -> None:
    first, again = filing(), filing()
    outcome = answer_to(again, acceptance(first))
    assert outcome is not None and outcome.status == "duplicate" and not outcome.bound


def test_a_copy_answering_another_duplicate_is_unbound() -> None:
    first, one, other = filing(), filing(), filing()
    outcome = answer_to(other, copy_for(acceptance(first), one))
    assert outcome is not None and outcome.status == "duplicate" and not outcome.bound


def test_a_copy_naming_our_event_under_another_signature_is_no_answer_to_it() -> None:
    first, again, forged = filing(), filing(), filing()
    copy = acceptance(
        forged,
        filed_event_id=first.id,
        signature_sha256=signature_sha256(forged),
        duplicate_event_id=again.id,  # our id, someone else's signature digest
    )
    assert answer_to(again, copy) is None


async def test_the_outcome_of_input_this_client_did_not_send_needs_a_start() -> None:
    with pytest.raises(ValueError, match="not published by this client"):
        await client().outcome(filing(), within_s=1)
