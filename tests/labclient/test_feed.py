"""Enforcers following the service's policy feed (real Kafka + PostgreSQL): a late one
catches up before it is ready, every running one applies a new order within the measured
propagation time, and none ever answers under a version older than one it applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contracts.events.access import AccessPolicyPublished
from contracts.policy import DecisionBasis
from services.labclient.enforcer import ApplyResult, Enforcer
from services.labclient.feed import PolicyFeed
from services.runtime import RuntimeSettings
from tests.access.rig import Rig, applied, model_id, running_rig
from tests.access.support import order, person, ties

CN = person(citizenships=ties("CN"))
LAB = "example-lab"


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings) as started:
        yield started


class Recording(Enforcer):
    """An enforcer that notes how much it had applied when it first became ready."""

    models_when_ready: int | None = None

    def mark_caught_up(self) -> None:
        if self.models_when_ready is None:
            self.models_when_ready = len(self.status().models)
        super().mark_caught_up()


def now() -> datetime:
    return datetime.now(UTC)


async def test_an_enforcer_started_late_is_not_ready_until_it_has_read_the_whole_feed(
    rig: Rig,
) -> None:
    models = [model_id() for _ in range(20)]
    for model in models:
        await rig.send(order(model_id=model, nationalities=["CN"], effective_at=now()))
    for model in models:
        await rig.version(model, 1)
    late = Recording(lab_id=LAB)
    assert late.check(CN, models[0]).basis is DecisionBasis.NOT_READY
    feed = PolicyFeed(late, rig.lab_settings(LAB))
    await feed.start()
    try:
        reader = asyncio.create_task(feed.run())
        while not late.ready:
            assert late.check(CN, models[-1]).basis is DecisionBasis.NOT_READY
            await asyncio.sleep(0)
        reader.cancel()
    finally:
        await feed.stop()
    known = set(late.status().models)
    assert set(models) <= known  # the current policy of every model of its lab
    assert late.models_when_ready is not None and late.models_when_ready >= len(models)
    assert all(not late.check(CN, m).allowed for m in models)


async def test_every_running_enforcer_denies_a_new_order_within_the_propagation_time(
    rig: Rig,
) -> None:
    async with (
        rig.enforcer(LAB) as first,
        rig.enforcer(LAB) as second,
        rig.enforcer(LAB) as third,
    ):
        enforcers = [first, second, third]
        model = model_id()
        sent = time.perf_counter()
        await rig.send(order(model_id=model, nationalities=["CN"], effective_at=now()))
        delays = []
        for enforcer in enforcers:
            await applied(enforcer, model, 1)
            delays.append(time.perf_counter() - sent)
        for enforcer in enforcers:
            assert not enforcer.check(CN, model).allowed
        print(f"propagation to 3 enforcers: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")


async def test_no_enforcer_ever_answers_under_a_version_older_than_one_it_applied(
    rig: Rig,
) -> None:
    model = model_id()
    versions = 6
    async with rig.enforcer(LAB) as one, rig.enforcer(LAB) as two:
        violations: list[str] = []
        checks = 0
        done = asyncio.Event()

        async def watch(enforcer: Enforcer) -> None:
            nonlocal checks
            while not done.is_set():
                before = enforcer.applied(model)
                decision = enforcer.check(CN, model)
                checks += 1
                floor = before.version if before is not None else 0
                if (decision.policy_version or 0) < floor:
                    violations.append(f"v{decision.policy_version} after v{floor}")
                await asyncio.sleep(0)

        watchers = [asyncio.create_task(watch(e)) for e in (one, two)]
        previous = None
        submission = uuid.uuid4()  # one submission's orders: one partition, in order
        for number in range(versions):
            current = order(
                model_id=model,
                nationalities=["CN"] if number % 2 == 0 else ["RU"],
                effective_at=now(),
                supersedes=previous.order_id if previous else None,
            ).model_copy(update={"submission_id": submission})
            await rig.send(current)
            previous = current
        for enforcer in (one, two):
            await applied(enforcer, model, versions)
        done.set()
        await asyncio.gather(*watchers)
        assert checks > 100 and violations == []


async def test_an_unreadable_record_makes_its_model_fail_closed_until_a_later_version(
    rig: Rig,
) -> None:
    model = model_id()
    first = order(model_id=model, nationalities=["CN"], effective_at=now())
    await rig.send(first)
    published: AccessPolicyPublished = await rig.version(model, 1)
    async with rig.enforcer(LAB) as enforcer:
        await applied(enforcer, model, 1)
        feed = PolicyFeed(enforcer, rig.lab_settings(LAB))
        assert (
            feed.apply(model.encode(), published.model_dump_json().encode()) is None
        )  # no envelope
        decision = enforcer.check(person(), model)
        assert decision.basis is DecisionBasis.UNUSABLE_POLICY and not decision.allowed
        assert enforcer.apply(published) is ApplyResult.CONFLICT  # v1 again does not undo it
        await rig.send(order(model_id=model, residence_countries=["RU"], effective_at=now()))
        await applied(enforcer, model, 2)
        assert enforcer.check(person(), model).allowed
        assert not enforcer.check(CN, model).allowed
