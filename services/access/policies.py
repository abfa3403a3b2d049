"""Decisions on orders and model policy versions: plain functions returning values.

The handlers load the model's ``OrderRecord``s and current ``ModelPolicy`` from
the repository, call these, store what they return, schedule the ``deadlines``
and publish ``ModelPolicy.published()`` to the lab's policy feed.

Three durable timers (kinds below) carry an order's and a version's times:
``order-effective`` (a superseding order takes effect: the order it replaces
ends), ``order-expiry`` (a time-limited order lapses: a version without it) and
``compliance-overdue`` (a version's acknowledgement deadline).
"""

from __future__ import annotations

import uuid
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
from services.access.model import ModelPolicy, OrderRecord, OrderState, lab_of
from services.trust.refusal import Refusal

ORDER_EFFECTIVE = "order-effective"
ORDER_EXPIRY = "order-expiry"
COMPLIANCE_OVERDUE = "compliance-overdue"
POLICY_NAMESPACE = uuid.UUID("2f0c9e47-83a1-4b6d-9e25-7a1d3c5b8f60")


@dataclass(frozen=True)
class Deadline:
    """A durable timer to schedule: fires once at ``due_at``."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, str]


def policy_event_id(model_id: str, version: int) -> str:
    """Deterministic: one version of one model is published under one event id."""
    return str(uuid.uuid5(POLICY_NAMESPACE, f"{model_id}#{version}"))


def lifted_event_id(order_id: UUID) -> str:
    """Deterministic: an order ends once, so it is announced under one event id."""
    return str(uuid.uuid5(POLICY_NAMESPACE, f"lifted:{order_id}"))


def overdue_key(model_id: str, version: int) -> str:
    return f"{model_id}#{version}"


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

    An order naming ``supersedes`` ends that order (of the same model) when it
    takes effect: at once if it is effective now, else at its ``effective_at``
    (the ``order-effective`` timer; until then the replaced order stays in the
    policy, its window cut at that time, so there is no gap). An order that arrives
    after the order superseding it took effect, or after its own expiry, is recorded
    as ended at once: it never enters a policy.
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
    if successor is not None and (
        not successor.in_policy or successor.order.effective_at <= max(now, order.effective_at)
    ):
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
        if previous is not None and previous.ended is None and order.effective_at <= now:
            changed.append(_superseded(previous, order.order_id, now))
    return OrderChange((record, *changed))


def _superseded(record: OrderRecord, by: UUID, now: datetime) -> OrderRecord:
    return record.end(
        OrderState.SUPERSEDED, now, superseded_by=by, reason=f"superseded by order {by}"
    )


def take_effect(
    record: OrderRecord, records: Mapping[UUID, OrderRecord], now: datetime
) -> OrderChange | None:
    """The ``order-effective`` timer: the order now in effect ends the one it supersedes."""
    replaced = records.get(record.order.supersedes) if record.order.supersedes else None
    if not record.in_policy or replaced is None or not replaced.in_policy:
        return None
    return OrderChange((_superseded(replaced, record.order_id, now),))


def deadlines(change: OrderChange, now: datetime) -> list[Deadline]:
    """The order timers a received order needs (the first record of ``change``)."""
    record = change.records[0]
    order = record.order
    if not record.in_policy:
        return []
    found = []
    key = str(order.order_id)
    payload = {"model_id": order.model_id, "order_id": key}
    if order.expires_at is not None:
        found.append(Deadline(ORDER_EXPIRY, key, order.expires_at, payload))
    if order.supersedes is not None and order.effective_at > now:
        found.append(Deadline(ORDER_EFFECTIVE, key, order.effective_at, payload))
    return found


def enforced_orders(model_id: str, records: Iterable[OrderRecord]) -> list[RestrictionOrdered]:
    """The orders a model's policy enforces, with their windows as compiled.

    Every order not ended, its window cut at the ``effective_at`` of an order in
    the policy that supersedes it (the hand-over without a gap); an order whose
    successor takes effect before it would never deny and is left out.
    """
    mine = [r for r in records if r.order.model_id == model_id]
    cut: dict[UUID, datetime] = {}
    for r in mine:
        replaced = r.order.supersedes
        if r.in_policy and replaced is not None:
            at = r.order.effective_at
            cut[replaced] = min(at, cut.get(replaced, at))
    enforced = []
    for r in mine:
        if not r.in_policy:
            continue
        order = r.order
        end = cut.get(order.order_id)
        if end is not None:
            if end <= order.effective_at:
                continue
            if order.expires_at is None or end < order.expires_at:
                order = order.model_copy(update={"expires_at": end})
        enforced.append(order)
    return sorted(enforced, key=lambda o: (o.effective_at, str(o.order_id)))


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
    Orders are compiled fail closed (``compile_policy(fail_closed=True)``): an
    order that cannot be compiled as written still denies, and ``problems`` says
    so. A Refusal is left only for orders of another model (a caller's error).
    """
    active = enforced_orders(model_id, records)
    if current is None and not active:
        return None
    compiled = compile_policy(model_id, active, groups, fail_closed=True)
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
        problems=compiled.problems,
    )


def overdue_deadline(policy: ModelPolicy, grace: timedelta) -> Deadline:
    """When to look for the version's acknowledgement: its deadline plus a grace for
    acknowledgements the broker appended in time but the service has not read yet."""
    return Deadline(
        COMPLIANCE_OVERDUE,
        overdue_key(policy.model_id, policy.version),
        policy.acknowledge_by + grace,
        {"model_id": policy.model_id, "version": str(policy.version)},
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
