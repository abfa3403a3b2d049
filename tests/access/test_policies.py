"""Order lifecycle and model policy versions (pure decisions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts.events.common import RejectionReason
from contracts.policy import Action, LoadedPolicy
from services.access.model import ModelPolicy, OrderRecord, OrderState
from services.access.policies import (
    ORDER_EFFECTIVE,
    ORDER_EXPIRY,
    Duplicate,
    OrderChange,
    deadlines,
    enforced_orders,
    expire_order,
    lift_order,
    lifted,
    next_version,
    receive_order,
    take_effect,
)
from services.trust.refusal import Refusal
from tests.access.support import GROUPS, MODEL, T0, at_location, order, person, ties

HOUR = timedelta(hours=1)


def _version(records: list[OrderRecord], current: ModelPolicy | None) -> ModelPolicy | None:
    result = next_version(MODEL, current, records, GROUPS, now=T0, acknowledge_within=HOUR)
    assert not isinstance(result, Refusal), result
    return result


def _denies_cn(policy: ModelPolicy, at: datetime = T0 + HOUR) -> bool:
    loaded = LoadedPolicy.parse(MODEL, policy.version, policy.cedar_policies, policy.content_hash)
    decision = loaded.decide(person(citizenships=ties("CN")), Action.INVOKE, at_location(), at)
    return not decision.allowed


def test_an_order_is_ordered_before_its_effective_time_and_effective_from_it() -> None:
    record = OrderRecord(
        order(nationalities=["CN"], effective_at=T0 + HOUR, expires_at=T0 + 2 * HOUR)
    )
    assert record.state_at(T0) is OrderState.ORDERED
    assert record.state_at(T0 + HOUR) is OrderState.EFFECTIVE
    assert record.state_at(T0 + 2 * HOUR) is OrderState.EXPIRED


def test_the_first_order_of_a_model_publishes_version_1() -> None:
    o = order(nationalities=["CN"])
    policy = _version([OrderRecord(o)], None)
    assert policy is not None
    assert policy.version == 1 and policy.order_ids == (o.order_id,)
    assert policy.acknowledge_by == T0 + HOUR
    event = policy.published()
    assert event.orders[0].order_id == o.order_id and event.effective_at == o.effective_at
    assert event.cedar_schema_version == "fr-access-1"
    assert _denies_cn(policy)


def test_a_model_without_orders_has_no_policy() -> None:
    assert _version([], None) is None


def test_recompiling_the_same_orders_publishes_nothing_new() -> None:
    records = [OrderRecord(order(nationalities=["CN"]))]
    first = _version(records, None)
    assert first is not None
    assert _version(records, first) is None


def test_lifting_the_last_order_publishes_a_version_that_allows_everyone() -> None:
    record = OrderRecord(order(nationalities=["CN"]))
    first = _version([record], None)
    assert first is not None
    ended = lift_order(record, reviewer_id="reviewer-joe", reason="mitigated", now=T0 + HOUR)
    assert isinstance(ended, OrderRecord) and ended.state_at(T0) is OrderState.LIFTED
    second = _version([ended], first)
    assert second is not None and second.version == 2 and second.order_ids == ()
    assert not _denies_cn(second)
    announced = lifted(ended, second)
    assert announced.policy_version == 2 and announced.reviewer_id == "reviewer-joe"


def test_a_lifted_order_cannot_be_lifted_again() -> None:
    record = OrderRecord(order(nationalities=["CN"])).end(OrderState.LIFTED, T0)
    refusal = lift_order(record, reviewer_id="r", reason="again", now=T0)
    assert isinstance(refusal, Refusal) and refusal.reason is RejectionReason.INVALID_STATE


def test_expiry_ends_a_due_order_and_publishes_a_version_without_it() -> None:
    record = OrderRecord(order(nationalities=["CN"], expires_at=T0 + HOUR))
    first = _version([record], None)
    assert first is not None
    assert isinstance(expire_order(record, T0), Refusal)  # not due yet
    ended = expire_order(record, T0 + HOUR)
    assert isinstance(ended, OrderRecord) and ended.ended is OrderState.EXPIRED
    second = _version([ended], first)
    assert second is not None and second.order_ids == ()
    assert lifted(ended, second).reviewer_id is None


def test_a_superseding_order_ends_the_order_it_names() -> None:
    interim = order(nationalities=["CN", "RU"])
    records = {interim.order_id: OrderRecord(interim)}
    final = order(nationalities=["CN"], supersedes=interim.order_id)
    change = receive_order(final, records, T0)
    assert isinstance(change, OrderChange)
    new, old = change.records
    assert new.in_policy and old.ended is OrderState.SUPERSEDED
    assert old.superseded_by == final.order_id
    policy = _version([new, old], None)
    assert policy is not None and policy.order_ids == (final.order_id,)


def test_an_order_arriving_after_the_order_superseding_it_never_enters_a_policy() -> None:
    interim = order(nationalities=["CN", "RU"])
    final = order(nationalities=["CN"], supersedes=interim.order_id)
    change = receive_order(interim, {final.order_id: OrderRecord(final)}, T0)
    assert isinstance(change, OrderChange)
    assert change.records[0].ended is OrderState.SUPERSEDED


def test_the_same_order_twice_is_a_duplicate_and_other_content_a_conflict() -> None:
    o = order(nationalities=["CN"])
    records = {o.order_id: OrderRecord(o)}
    assert isinstance(receive_order(o, records, T0), Duplicate)
    changed = o.model_copy(update={"expires_at": T0 + HOUR})
    refusal = receive_order(changed, records, T0)
    assert isinstance(refusal, Refusal) and refusal.reason is RejectionReason.CONFLICT


def test_an_order_received_after_its_expiry_is_recorded_as_expired() -> None:
    o = order(nationalities=["CN"], expires_at=T0 + HOUR)
    change = receive_order(o, {}, T0 + 2 * HOUR)
    assert isinstance(change, OrderChange) and change.records[0].ended is OrderState.EXPIRED


def test_a_future_order_is_in_the_published_version_ahead_of_its_time() -> None:
    o = order(nationalities=["CN"], effective_at=T0 + 24 * HOUR)
    policy = _version([OrderRecord(o)], None)
    assert policy is not None and policy.effective_at == o.effective_at
    assert not _denies_cn(policy, T0 + HOUR)
    assert _denies_cn(policy, T0 + 24 * HOUR)


def test_a_second_order_publishes_the_next_version_with_both() -> None:
    a = OrderRecord(order(nationalities=["CN"]))
    first = _version([a], None)
    b = OrderRecord(order(residence_countries=["RU"], expires_at=T0 + 48 * HOUR))
    second = _version([a, b], first)
    assert second is not None and second.version == 2
    assert set(second.order_ids) == {a.order_id, b.order_id}
    assert second.expires_at is None  # order a lasts until lifted


def test_a_superseding_order_effective_later_leaves_the_replaced_one_in_force_until_then() -> None:
    interim = order(nationalities=["CN", "RU"])
    records = {interim.order_id: OrderRecord(interim)}
    final = order(nationalities=["CN"], supersedes=interim.order_id, effective_at=T0 + HOUR)
    change = receive_order(final, records, T0)
    assert isinstance(change, OrderChange) and len(change.records) == 1  # nothing ended yet
    records[final.order_id] = change.records[0]
    enforced = {o.order_id: o for o in enforced_orders(MODEL, records.values())}
    assert enforced[interim.order_id].expires_at == final.effective_at  # cut: no gap
    assert [d.kind for d in deadlines(change, T0)] == [ORDER_EFFECTIVE]
    ended = take_effect(records[final.order_id], records, T0 + HOUR)
    assert ended is not None and ended.records[0].ended is OrderState.SUPERSEDED


def test_an_order_whose_successor_takes_effect_first_is_left_out_of_the_policy() -> None:
    old = order(nationalities=["CN"], effective_at=T0 + 2 * HOUR)
    new = order(nationalities=["RU"], supersedes=old.order_id, effective_at=T0 + HOUR)
    records = [OrderRecord(old), OrderRecord(new)]
    assert [o.order_id for o in enforced_orders(MODEL, records)] == [new.order_id]


def test_a_time_limited_order_needs_its_expiry_timer() -> None:
    o = order(nationalities=["CN"], expires_at=T0 + HOUR)
    change = receive_order(o, {}, T0)
    assert isinstance(change, OrderChange)
    [deadline] = deadlines(change, T0)
    assert deadline.kind == ORDER_EXPIRY and deadline.due_at == T0 + HOUR


def test_a_version_naming_an_unknown_country_group_is_published_fail_closed() -> None:
    policy = _version([OrderRecord(order(country_groups=["atlantis"]))], None)
    assert policy is not None and "unknown_country_group" in policy.problems[0]
    assert _denies_cn(policy)
    loaded = LoadedPolicy.parse(MODEL, 1, policy.cedar_policies, policy.content_hash)
    french = loaded.decide(person(), Action.INVOKE, at_location(), T0 + HOUR)
    american = person(citizenships=ties("US"), us_person="citizen")
    assert not french.allowed and french.reasons[0].criterion == "country_group"
    assert loaded.decide(american, Action.INVOKE, at_location(), T0 + HOUR).allowed
