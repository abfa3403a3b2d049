"""Orders through the running service: risk.events -> versions on the policy feed -> a
running enforcer's decisions; lifts, expiry, hand-over to a superseding order, orders
that cannot be compiled, and risk's own contradictions (real Kafka + PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.events.access import AccessPolicyPublished, RestrictionLifted
from contracts.events.risk import RestrictionLiftOrdered, RestrictionOrdered
from contracts.policy import DecisionBasis
from services.runtime import RuntimeSettings
from tests.access.rig import Rig, applied, model_id, running_rig
from tests.access.support import order, person, ties

CN = person(citizenships=ties("CN"))
FR = person()
US = person(citizenships=ties("US"), us_person="citizen")


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings) as started:
        yield started


def now() -> datetime:
    return datetime.now(UTC)


def restriction(model: str, **fields: Any) -> RestrictionOrdered:
    fields.setdefault("effective_at", now())
    return order(model_id=model, **fields)


def lift(ordered: RestrictionOrdered) -> RestrictionLiftOrdered:
    return RestrictionLiftOrdered(
        order_id=ordered.order_id,
        submission_id=ordered.submission_id,
        model_id=ordered.model_id,
        escalation_id=ordered.escalation_id,
        reviewer_ids=["reviewer-ann", "reviewer-bob"],
        reason="mitigation verified",
        lifted_at=now(),
    )


async def test_an_order_becomes_version_1_and_a_running_enforcer_denies_under_it(
    rig: Rig,
) -> None:
    model = model_id()
    async with rig.enforcer("example-lab") as enforcer:
        ordered = restriction(model, nationalities=["CN"])
        await rig.send(ordered)
        published = await rig.version(model, 1)
        assert published.order_ids == [ordered.order_id]
        await applied(enforcer, model, 1)
        denied = enforcer.check(CN, model)
        assert not denied.allowed and denied.policy_version == 1
        assert denied.order_ids == [ordered.order_id]
        assert enforcer.check(FR, model).allowed


async def test_the_same_order_again_publishes_nothing(rig: Rig) -> None:
    model = model_id()
    ordered = restriction(model, nationalities=["CN"])
    await rig.send(ordered)
    await rig.version(model, 1)
    await rig.send(ordered)
    await rig.policies.linger(2.0)
    assert [p.policy_version for p in rig.versions(model)] == [1]


async def test_a_lifted_order_publishes_a_version_without_it_and_restriction_lifted(
    rig: Rig,
) -> None:
    model = model_id()
    async with rig.enforcer("example-lab") as enforcer:
        ordered = restriction(model, nationalities=["CN"])
        await rig.send(ordered)
        await rig.version(model, 1)
        await rig.send(lift(ordered))
        second = await rig.version(model, 2)
        assert second.order_ids == []
        announced = await rig.answer(RestrictionLifted, order_id=ordered.order_id)
        assert announced.policy_version == 2 and announced.reviewer_id == "reviewer-ann"
        await applied(enforcer, model, 2)
        assert enforcer.check(CN, model).allowed


async def test_a_lift_of_an_order_access_never_received_is_dead_lettered(rig: Rig) -> None:
    ghost = restriction(model_id(), nationalities=["CN"])
    event = await rig.send(lift(ghost))
    dlq = rig.dlq["risk.events"]
    await dlq.wait(
        lambda: any(r.value and event.id.encode() in r.value for r in dlq.records),
        what="the lift in the DLQ",
    )
    record = next(r for r in dlq.records if r.value and event.id.encode() in r.value)
    assert dict(record.headers or ())["dlq.reason"] == b"unknown_order"


async def test_an_order_expires_once_and_publishes_a_version_without_it(rig: Rig) -> None:
    model = model_id()
    ordered = restriction(model, nationalities=["CN"], expires_at=now() + timedelta(hours=1))
    await rig.send(ordered)
    await rig.version(model, 1)
    rig.clock.advance(3600)
    second = await rig.version(model, 2)
    assert second.order_ids == []
    announced = await rig.answer(RestrictionLifted, order_id=ordered.order_id)
    assert announced.reviewer_id is None and announced.policy_version == 2
    await rig.policies.linger(2.0)
    assert [p.policy_version for p in rig.versions(model)] == [1, 2]
    rows = await rig.fetch(
        "SELECT state FROM timers WHERE kind = 'order-expiry' AND key = $1",
        str(ordered.order_id),
    )
    assert [r["state"] for r in rows] == ["fired"]


async def test_a_superseding_order_effective_later_takes_over_without_a_gap(rig: Rig) -> None:
    model = model_id()
    start = now()
    interim = restriction(model, nationalities=["CN", "RU"], interim=True, reviewer_id=None)
    final = restriction(
        model,
        nationalities=["CN"],
        supersedes=interim.order_id,
        effective_at=start + timedelta(hours=2),
    )
    async with rig.enforcer("example-lab") as enforcer:
        await rig.send(interim)
        await rig.version(model, 1)
        await rig.send(final)
        both = await rig.version(model, 2)
        assert set(both.order_ids) == {interim.order_id, final.order_id}
        window = {o.order_id: o for o in both.orders}[interim.order_id]
        assert window.expires_at == final.effective_at  # the interim hands over, no gap
        await applied(enforcer, model, 2)
        ru = person(citizenships=ties("RU"))
        hour = start + timedelta(hours=1)
        assert not enforcer.check(ru, model, at=hour).allowed
        assert not enforcer.check(CN, model, at=start + timedelta(hours=3)).allowed
        assert enforcer.check(ru, model, at=start + timedelta(hours=3)).allowed
        rig.clock.advance(2 * 3600)
        third = await rig.version(model, 3)  # order-effective: the interim order ends
        assert third.order_ids == [final.order_id]


async def test_an_unknown_country_group_denies_every_foreign_person_and_no_us_person(
    rig: Rig,
) -> None:
    model = model_id()
    async with rig.enforcer("example-lab") as enforcer:
        await rig.send(restriction(model, country_groups=["atlantis"]))
        published = await rig.version(model, 1)
        assert "country group atlantis" in published.cedar_policies
        await applied(enforcer, model, 1)
        for foreign in (FR, CN):
            decision = enforcer.check(foreign, model)
            assert not decision.allowed and decision.basis is DecisionBasis.POLICY
            assert {r.criterion for r in decision.reasons} == {"country_group"}
        assert enforcer.check(US, model).allowed
    rows = await rig.fetch("SELECT problems FROM model_policies WHERE model_id = $1", model)
    assert "unknown_country_group" in rows[0]["problems"][0]


async def test_an_order_id_reused_with_other_content_is_dead_lettered(rig: Rig) -> None:
    model = model_id()
    ordered = restriction(model, nationalities=["CN"])
    await rig.send(ordered)
    await rig.version(model, 1)
    altered = ordered.model_copy(
        update={"scope": ordered.scope.model_copy(update={"nationalities": ["RU"]})}
    )
    event = await rig.send(altered)
    dlq = rig.dlq["risk.events"]
    await dlq.wait(lambda: any(r.value and event.id.encode() in r.value for r in dlq.records))
    assert [p.policy_version for p in rig.versions(model)] == [1]


async def test_every_version_of_a_model_is_kept_and_the_feed_carries_them_in_order(
    rig: Rig,
) -> None:
    model = model_id()
    first = restriction(model, nationalities=["CN"])
    second = restriction(model, verification_statuses=["unverified"], order_id=uuid.uuid4())
    await rig.send(first)
    await rig.send(second)
    await rig.version(model, 2)
    feed: list[AccessPolicyPublished] = rig.versions(model)
    assert [p.policy_version for p in feed] == [1, 2]
    assert set(feed[1].order_ids) == {first.order_id, second.order_id}
    rows = await rig.fetch(
        "SELECT version FROM model_policies WHERE model_id = $1 ORDER BY version", model
    )
    assert [r["version"] for r in rows] == [1, 2]


async def test_orders_of_one_model_arriving_out_of_order_end_in_the_same_policy(
    rig: Rig,
) -> None:
    in_order, reversed_ = model_id(), model_id()
    finals = {}
    for model, reverse in ((in_order, False), (reversed_, True)):
        interim = restriction(model, nationalities=["CN", "RU"], interim=True, reviewer_id=None)
        final = restriction(model, nationalities=["CN"], supersedes=interim.order_id)
        for each in (final, interim) if reverse else (interim, final):
            await rig.send(each)
        finals[model] = final.order_id
    first = await rig.version(in_order, 2)
    assert first.order_ids == [finals[in_order]]
    await rig.version(reversed_, 1)
    await rig.policies.linger(1.5)
    assert rig.versions(reversed_)[-1].order_ids == [finals[reversed_]]
    rows = await rig.fetch(
        "SELECT ended FROM orders WHERE model_id = $1 AND order_id <> $2",
        reversed_,
        finals[reversed_],
    )
    assert [r["ended"] for r in rows] == ["superseded"]
