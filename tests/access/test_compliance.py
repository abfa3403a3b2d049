"""Acknowledgements against the published version, and the overdue rule."""

from __future__ import annotations

import uuid
from datetime import timedelta

from contracts.events.common import RejectionReason
from contracts.events.lab import ComplianceAcknowledged
from services.access.compliance import (
    AcceptedAcknowledgement,
    check_acknowledgement,
    overdue,
    overdue_event_id,
    rejection,
)
from services.access.model import ModelPolicy, OrderRecord
from services.access.policies import next_version
from services.trust.refusal import Refusal
from services.trust.verifier import Authenticated
from tests.access.support import GROUPS, LAB, MODEL, T0, order
from tests.contracts.examples import example

HOUR = timedelta(hours=1)


def _policy(version: int = 1) -> ModelPolicy:
    result = next_version(
        MODEL,
        None,
        [OrderRecord(order(nationalities=["CN"]))],
        GROUPS,
        now=T0,
        acknowledge_within=HOUR,
    )
    assert isinstance(result, ModelPolicy)
    return ModelPolicy(**{**result.__dict__, "version": version})


POLICY = _policy()


def _ack(**changes: object) -> ComplianceAcknowledged:
    fields = {
        "model_id": MODEL,
        "lab_id": LAB,
        "policy_version": 1,
        "content_hash": POLICY.content_hash,
        "order_ids": list(POLICY.order_ids),
        "enforced_at": T0 + timedelta(minutes=1),
        "enforcement_points": ["gateway"],
        **changes,
    }
    return example(ComplianceAcknowledged, **fields)


def _check(ack: ComplianceAcknowledged) -> AcceptedAcknowledgement | Refusal:
    versions = {POLICY.version: POLICY}
    return check_acknowledgement(ack, versions.get, now=T0 + timedelta(minutes=2))


def _refused(ack: ComplianceAcknowledged) -> Refusal:
    result = _check(ack)
    assert isinstance(result, Refusal), result
    return result


def test_an_acknowledgement_quoting_the_published_version_is_accepted() -> None:
    accepted = _check(_ack())
    assert isinstance(accepted, AcceptedAcknowledgement)
    assert accepted.policy_version == 1 and accepted.enforcement_points == ("gateway",)


def test_an_unknown_version_is_refused_as_unknown_policy() -> None:
    assert _refused(_ack(policy_version=7)).reason is RejectionReason.UNKNOWN_POLICY


def test_another_models_version_is_refused_as_unknown_policy() -> None:
    ack = _ack(model_id=f"{LAB}/other@1")
    assert _refused(ack).reason is RejectionReason.UNKNOWN_POLICY


def test_another_lab_acknowledging_is_refused_as_not_owner() -> None:
    assert _refused(_ack(lab_id="other-lab")).reason is RejectionReason.NOT_OWNER


def test_a_wrong_content_hash_is_a_policy_mismatch() -> None:
    refusal = _refused(_ack(content_hash="0" * 64))
    assert refusal.reason is RejectionReason.POLICY_MISMATCH and "content_hash" in refusal.detail


def test_wrong_order_ids_are_a_policy_mismatch() -> None:
    refusal = _refused(_ack(order_ids=[uuid.uuid4()]))
    assert refusal.reason is RejectionReason.POLICY_MISMATCH and "order_ids" in refusal.detail


def test_enforcing_before_publication_is_implausible() -> None:
    refusal = _refused(_ack(enforced_at=T0 - HOUR))
    assert refusal.reason is RejectionReason.IMPLAUSIBLE_ENFORCED_AT


def test_enforcing_in_the_future_is_implausible() -> None:
    refusal = _refused(_ack(enforced_at=T0 + 10 * HOUR))
    assert refusal.reason is RejectionReason.IMPLAUSIBLE_ENFORCED_AT


LAB_SENDER = Authenticated(
    kind="lab",
    principal_id=LAB,
    key_id="k1",
    nonce="n" * 16,
    issued_at=T0,
    signature_sha256="5" * 64,
)


def test_a_refusal_to_the_models_lab_is_precise_and_addressed_to_the_model() -> None:
    ack = _ack(content_hash="0" * 64)
    event = rejection(ack, _refused(ack), event_id="ev-1", now=T0, sender=LAB_SENDER)
    assert event.reason is RejectionReason.POLICY_MISMATCH
    assert event.model_id == MODEL and event.rejected_event_id == "ev-1"


def test_a_refusal_to_an_unauthenticated_sender_is_concealed_and_keyed_by_event_id() -> None:
    ack = _ack(content_hash="0" * 64)
    event = rejection(ack, _refused(ack), event_id="ev-1", now=T0)
    assert event.reason is RejectionReason.AUTHENTICATION_FAILED
    assert event.model_id is None and event.rejected_event_id == "ev-1"


def test_another_labs_model_is_refused_before_any_version_is_looked_up() -> None:
    looked_up: list[int] = []

    def published(version: int) -> ModelPolicy | None:
        looked_up.append(version)
        return POLICY

    ack = _ack(model_id="other-lab/model@1")
    refusal = check_acknowledgement(ack, published, now=T0)
    assert isinstance(refusal, Refusal) and refusal.reason is RejectionReason.NOT_OWNER
    assert looked_up == []


def _accepted(version: int, received_after: timedelta) -> AcceptedAcknowledgement:
    return AcceptedAcknowledgement(
        model_id=MODEL,
        lab_id=LAB,
        policy_version=version,
        content_hash="x",
        enforced_at=T0,
        received_at=T0 + received_after,
        enforcement_points=("g",),
    )


def test_an_unacknowledged_version_is_overdue_at_its_deadline_and_not_before() -> None:
    assert overdue(POLICY, [], T0 + HOUR - timedelta(seconds=1)) is None
    event = overdue(POLICY, [], T0 + HOUR)
    assert event is not None and event.policy_version == 1 and event.acknowledge_by == T0 + HOUR


def test_an_acknowledgement_in_time_settles_the_deadline() -> None:
    assert overdue(POLICY, [_accepted(1, timedelta(minutes=5))], T0 + HOUR) is None


def test_an_acknowledgement_after_the_deadline_does_not_settle_it() -> None:
    assert overdue(POLICY, [_accepted(1, 2 * HOUR)], T0 + 3 * HOUR) is not None


def test_an_acknowledged_later_version_settles_an_earlier_deadline() -> None:
    assert overdue(POLICY, [_accepted(2, timedelta(minutes=5))], T0 + HOUR) is None


def test_overdue_has_one_event_id_per_model_version() -> None:
    assert overdue_event_id(MODEL, 1) == overdue_event_id(MODEL, 1)
    assert overdue_event_id(MODEL, 1) != overdue_event_id(MODEL, 2)
