"""Restriction orders: the canonical form reviewers' signatures are compared on, and the
deterministic ids of orders.

Two reviewers sign "the same order" when the SHA-256 of the order's canonical form is
equal. The canonical form is the order's JSON with every list of the scope treated as a
set (sorted, duplicates dropped: ``["RU", "CN"]`` and ``["CN", "RU", "CN"]`` are one
criterion) and every time in UTC, canonicalised with RFC 8785. It is built from the
model's own dump, so a field added to the scope later is part of the hash without
anyone remembering to add it here.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import rfc8785

from contracts.events.risk import RestrictionOrderSpec, RestrictionScope

ORDER_NAMESPACE = UUID("0d6e3b9a-4f21-4c8e-a7b5-2e9f1c3d5a70")
ORDER_HASH_DOMAIN = b"frontier-review/restriction-order/v1\n"


def canonical_order(spec: RestrictionOrderSpec) -> dict[str, Any]:
    """The order as compared: set-valued lists sorted and deduplicated, times in UTC."""
    document = spec.model_dump(mode="json", exclude={"effective_at", "expires_at"})
    document["effective_at"] = _utc(spec.effective_at)
    document["expires_at"] = _utc(spec.expires_at) if spec.expires_at is not None else None
    document["compliance_deadline"] = _utc(spec.compliance_deadline)
    document["scope"] = {key: _as_set(value) for key, value in document["scope"].items()}
    return document


def order_sha256(spec: RestrictionOrderSpec) -> str:
    return hashlib.sha256(ORDER_HASH_DOMAIN + rfc8785.dumps(canonical_order(spec))).hexdigest()


def order_id(escalation_id: UUID, sha256: str) -> UUID:
    """The id a signed order gets once its quorum is met (known when the first signs)."""
    return uuid.uuid5(ORDER_NAMESPACE, f"{escalation_id}/order/{sha256}")


def interim_order_id(escalation_id: UUID) -> UUID:
    return uuid.uuid5(ORDER_NAMESPACE, f"{escalation_id}/interim")


def as_scope(scope: RestrictionScope) -> RestrictionScope:
    """A scope from the policy or a reviewer's input, as the contract's plain type."""
    return RestrictionScope.model_validate(scope.model_dump())


def scaled(duration: timedelta, seconds_per_day: float) -> timedelta:
    """A policy duration on a clock whose day lasts ``seconds_per_day`` (demo, tests)."""
    return duration * (seconds_per_day / 86_400.0)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_set(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    unique = {rfc8785.dumps(item): item for item in value}
    return [unique[key] for key in sorted(unique)]
