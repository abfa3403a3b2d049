"""Decisions on orders and model policy versions: plain functions returning values.

The handlers (phase 2) load the model's ``OrderRecord``s and current
``ModelPolicy`` from the repository, call these, store what they return and
publish ``ModelPolicy.published()`` to the lab's policy feed and access.events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events.access import RestrictionLifted
from contracts.events.common import RejectionReason
from contracts.events.risk import RestrictionOrdered
from services.access.compile import compile_policy
from services.access.compliance import acknowledgement_deadline
from services.access.country_groups import CountryGroups
from services.access.model import ModelPolicy, OrderRecord, OrderState, Refusal, lab_of


@dataclass(frozen=True)
class Duplicate:
    """The same order again: nothing changes."""

    order_id: UUID


@dataclass(frozen=True)
class OrderChange:
    """Records to store after an order arrived (the new one, and any it supersedes)."""

    records: tuple[OrderRecord, ...]


def receive_order(
    order: RestrictionOrdered, records: Mapping[UUID, OrderRecord], now: datetime
) -> OrderChange | Duplicate | Refusal:
    """Take an order for its model. ``records``: the model's known orders by id.

    An order naming ``supersedes`` ends that order (of the same model). An order
    that arrives after the order superseding it, or after its own expiry, is
    recorded as ended at once: it never enters a policy.
    """
    known = records.get(order.order_id)
    if known is not None:
        if known.order == order:
            return Duplicate(order.order_id)
        return Refusal(
            RejectionReason.CONFLICT,
            f"order {order.order_id} was already received with different content",
        )
    record = OrderRecord(order)
    changed: list[OrderRecord] = []
    successor = next((r for r in records.values() if r.order.supersedes == order.order_id), None)
    if successor is not None:
        record = record.end(
            OrderState.SUPERSEDED,
            now,
            superseded_by=successor.order_id,
            reason=f"superseded by order {successor.order_id}",
        )
    elif order.expires_at is not None and order.expires_at <= now:
        record = record.end(OrderState.EXPIRED, now, reason="expired before it was received")
    if order.supersedes is not None:
        previous = records.get(order.supersedes)
        if previous is not None and previous.order.model_id != order.model_id:
            return Refusal(
                RejectionReason.CONFLICT,
                f"order {order.order_id} supersedes {order.supersedes} of another model",
            )
        if previous is not None and previous.ended is None:
            changed.append(
                previous.end(
                    OrderState.SUPERSEDED,
                    now,
                    superseded_by=order.order_id,
                    reason=f"superseded by order {order.order_id}",
                )
            )
    return OrderChange((record, *changed))


def lift_order(
    record: OrderRecord, *, reviewer_id: str, reason: str, now: datetime
) -> OrderRecord | Refusal:
    """A reviewer lifts an order that has not ended."""
    if record.ended is not None:
        return Refusal(
            RejectionReason.INVALID_STATE, f"order {record.order_id} is already {record.ended}"
        )
    return record.end(OrderState.LIFTED, now, lifted_by=reviewer_id, reason=reason)


def expire_order(record: OrderRecord, now: datetime) -> OrderRecord | Refusal:
    """The expiry timer: end an order whose ``expires_at`` has passed."""
    expires_at = record.order.expires_at
    if record.ended is not None:
        return Refusal(
            RejectionReason.INVALID_STATE, f"order {record.order_id} is already {record.ended}"
        )
    if expires_at is None or now < expires_at:
        return Refusal(
            RejectionReason.INVALID_STATE, f"order {record.order_id} is not due to expire"
        )
    return record.end(OrderState.EXPIRED, now, reason=f"expired at {expires_at.isoformat()}")


def next_version(
    model_id: str,
    current: ModelPolicy | None,
    records: Iterable[OrderRecord],
    groups: CountryGroups,
    *,
    now: datetime,
    acknowledge_within: timedelta,
) -> ModelPolicy | Refusal | None:
    """The model's next policy version, or None when the enforced text would not change.

    A model never restricted has no policy (None) until its first order; after
    that every change publishes ``version + 1``, lifting the last order too.
    """
    active = sorted(
        (r.order for r in records if r.in_policy and r.order.model_id == model_id),
        key=lambda o: (o.effective_at, str(o.order_id)),
    )
    if current is None and not active:
        return None
    compiled = compile_policy(model_id, active, groups)
    if isinstance(compiled, Refusal):
        return compiled
    if current is not None and current.content_hash == compiled.content_hash:
        return None
    return ModelPolicy(
        model_id=model_id,
        lab_id=lab_of(model_id),
        version=1 if current is None else current.version + 1,
        cedar_policies=compiled.cedar_policies,
        content_hash=compiled.content_hash,
        orders=compiled.orders,
        published_at=now,
        acknowledge_by=acknowledgement_deadline(now, acknowledge_within),
        schema_version=compiled.schema_version,
        country_groups_version=compiled.country_groups_version,
        order_ids=tuple(o.order_id for o in compiled.orders),
    )


def lifted(record: OrderRecord, policy: ModelPolicy | None) -> RestrictionLifted:
    """The RestrictionLifted announcing an ended order (lifted or expired)."""
    assert record.ended is not None and record.ended_at is not None
    return RestrictionLifted(
        order_id=record.order_id,
        model_id=record.order.model_id,
        submission_id=record.order.submission_id,
        reviewer_id=record.lifted_by,
        reason=(record.end_reason or str(record.ended))[:4000],
        policy_version=policy.version if policy is not None else None,
        lifted_at=record.ended_at,
    )
