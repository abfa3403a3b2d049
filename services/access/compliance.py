"""Compliance: checking a lab's acknowledgement against the published version, and deadlines.

Pure functions. Signature and freshness of the ComplianceAcknowledged are
verified before these run, by the shared trust library (like submissions);
what is left is whether the lab acknowledges what was actually published.

Deadline rule: a version must be acknowledged by ``acknowledge_by`` =
``published_at + acknowledge_within``. It is overdue when, at that deadline, no
accepted acknowledgement of it, or of a later version of the same model, exists:
a lab that enforces a later version enforces at least what the earlier one
ordered, so a newer acknowledgement settles the older deadline too. Overdue
fires once per (model, version): its event id is derived from both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.events.access import ComplianceOverdue, ComplianceRejected
from contracts.events.common import RejectionReason
from contracts.events.lab import ComplianceAcknowledged
from services.access.model import ModelPolicy, lab_of
from services.trust.refusal import Refusal, answer_fields
from services.trust.verifier import Authenticated

OVERDUE_NAMESPACE = uuid.UUID("6b8f3c1a-4d2e-4f7a-9c5b-0e1d2a3b4c55")
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class AcceptedAcknowledgement:
    model_id: str
    lab_id: str
    policy_version: int
    content_hash: str
    enforced_at: datetime
    received_at: datetime
    enforcement_points: tuple[str, ...]


def acknowledgement_deadline(published_at: datetime, acknowledge_within: timedelta) -> datetime:
    return published_at + acknowledge_within


def check_acknowledgement(
    ack: ComplianceAcknowledged,
    published: Callable[[int], ModelPolicy | None],
    *,
    now: datetime,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> AcceptedAcknowledgement | Refusal:
    """Accept an acknowledgement that quotes a published version exactly.

    ``published(version)`` looks the model's version up. Refusals, in order:
    ``not_owner`` (the model id names another lab: decided from the id alone, before
    anything is looked up, so a lab learns nothing about another lab's policies),
    ``unknown_policy`` (no such version of the model), ``policy_mismatch`` (content
    hash or order ids differ), ``implausible_enforced_at`` (before publication, or
    in the future).
    """
    if lab_of(ack.model_id) != ack.lab_id:
        return Refusal(
            RejectionReason.NOT_OWNER,
            f"model {ack.model_id} is not a model of lab {ack.lab_id}",
        )
    policy = published(ack.policy_version)
    if policy is None or policy.model_id != ack.model_id or policy.lab_id != ack.lab_id:
        return Refusal(
            RejectionReason.UNKNOWN_POLICY,
            f"model {ack.model_id} has no published policy version {ack.policy_version}",
        )
    if ack.content_hash != policy.content_hash:
        return Refusal(
            RejectionReason.POLICY_MISMATCH,
            f"content_hash {ack.content_hash} is not that of policy version "
            f"{policy.version} ({policy.content_hash})",
        )
    if sorted(ack.order_ids) != sorted(policy.order_ids):
        return Refusal(
            RejectionReason.POLICY_MISMATCH,
            f"order_ids {sorted(map(str, ack.order_ids))} are not those of policy version "
            f"{policy.version} ({sorted(map(str, policy.order_ids))})",
        )
    if ack.enforced_at < policy.published_at - clock_skew:
        return Refusal(
            RejectionReason.IMPLAUSIBLE_ENFORCED_AT,
            f"enforced_at {ack.enforced_at.isoformat()} is before policy version "
            f"{policy.version} was published ({policy.published_at.isoformat()})",
        )
    if ack.enforced_at > now + clock_skew:
        return Refusal(
            RejectionReason.IMPLAUSIBLE_ENFORCED_AT,
            f"enforced_at {ack.enforced_at.isoformat()} is in the future",
        )
    return AcceptedAcknowledgement(
        model_id=ack.model_id,
        lab_id=ack.lab_id,
        policy_version=ack.policy_version,
        content_hash=ack.content_hash,
        enforced_at=ack.enforced_at,
        received_at=now,
        enforcement_points=tuple(ack.enforcement_points),
    )


def settles(ack: AcceptedAcknowledgement, policy: ModelPolicy) -> bool:
    """Does ``ack`` settle ``policy``'s deadline (same model, this or a later version, in time)?"""
    return (
        ack.model_id == policy.model_id
        and ack.policy_version >= policy.version
        and ack.received_at <= policy.acknowledge_by
    )


def overdue_event_id(model_id: str, version: int) -> str:
    """Deterministic: a second ComplianceOverdue for one version cannot even be queued."""
    return str(uuid.uuid5(OVERDUE_NAMESPACE, f"{model_id}#{version}"))


def overdue(
    policy: ModelPolicy, acks: Iterable[AcceptedAcknowledgement], now: datetime
) -> ComplianceOverdue | None:
    """The ComplianceOverdue for ``policy`` at its deadline, or None (settled or not due)."""
    if now < policy.acknowledge_by or any(settles(a, policy) for a in acks):
        return None
    return ComplianceOverdue(
        model_id=policy.model_id,
        lab_id=policy.lab_id,
        policy_version=policy.version,
        content_hash=policy.content_hash,
        order_ids=list(policy.order_ids),
        published_at=policy.published_at,
        acknowledge_by=policy.acknowledge_by,
        detected_at=now,
    )


def rejection(
    ack: ComplianceAcknowledged,
    refusal: Refusal,
    *,
    event_id: str,
    now: datetime,
    sender: Authenticated | None = None,
) -> ComplianceRejected:
    """The answer to a refused acknowledgement.

    What the sender is told goes through the trust library's ``answer_fields``: an
    unauthenticated sender learns only shape errors precisely. The answer names the
    model (its record key) only when the sender authenticated as the model's lab;
    any other answer is keyed by the refused event's id, so a forged or misdirected
    acknowledgement never lands among a model owner's records.
    """
    owner = sender is not None and lab_of(ack.model_id) == sender.principal_id
    return ComplianceRejected(
        **answer_fields(refusal, sender),
        rejected_event_id=event_id,
        rejected_at=now,
        model_id=ack.model_id if owner else None,
        lab_id=ack.lab_id,
        policy_version=ack.policy_version if sender is not None else None,
        signature_sha256=sender.signature_sha256 if sender is not None else None,
    )
