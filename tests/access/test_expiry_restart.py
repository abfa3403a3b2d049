"""An order's expiry across a SIGKILL of the service process: the order lapses while
no process runs, a restarted one publishes exactly one version without it (and one
RestrictionLifted), and a third process publishes nothing again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from contracts.events.access import RestrictionLifted
from services.runtime import RuntimeSettings
from tests.access.rig import Rig, kill, model_id, running_rig, start_process
from tests.access.support import order

EXPIRES_IN = timedelta(seconds=8)  # room for a loaded machine to publish v1 first


def now() -> datetime:
    return datetime.now(UTC)  # the processes run on the real clock


async def expiry_timer(rig: Rig, order_id: object) -> list[str]:
    rows = await rig.fetch(
        "SELECT state FROM timers WHERE kind = 'order-expiry' AND key = $1", str(order_id)
    )
    return [r["state"] for r in rows]


async def test_an_order_expiring_while_the_service_is_down_ends_once_after_a_restart(
    settings: RuntimeSettings, kafka: str, database: str
) -> None:
    async with running_rig(settings, start=False) as rig:
        first = start_process(rig.settings)
        try:
            # A first order the process publishes: it is up, so the next one is
            # published well inside its short life.
            warm = model_id()
            await rig.send(order(model_id=warm, nationalities=["RU"], effective_at=now()))
            await rig.version(warm, 1, timeout=60)
            model = model_id()
            start = now()
            ordered = order(
                model_id=model,
                nationalities=["CN"],
                effective_at=start,
                expires_at=start + EXPIRES_IN,
            )
            await rig.send(ordered)
            published = await rig.version(model, 1)
        finally:
            kill(first)  # before the expiry: the timer is pending in the table
        assert published.order_ids == [ordered.order_id]
        assert await expiry_timer(rig, ordered.order_id) == ["pending"]
        assert ordered.expires_at is not None
        wait = (ordered.expires_at - now()).total_seconds() + 1.0
        await asyncio.sleep(max(wait, 0.0))  # the order lapses while nothing runs
        assert [p.policy_version for p in rig.versions(model)] == [1]

        second = start_process(rig.settings)
        try:
            without = await rig.version(model, 2, timeout=60)
            lifted = await rig.answer(RestrictionLifted, order_id=ordered.order_id, timeout=60)
        finally:
            kill(second)
        assert without.order_ids == []
        assert lifted.policy_version == 2 and lifted.reviewer_id is None

        third = start_process(rig.settings)
        try:
            # Up, consuming and publishing (its scheduler started with it), then a while
            # for a second expiry, which must not come.
            alive = model_id()
            await rig.send(order(model_id=alive, nationalities=["RU"], effective_at=now()))
            await rig.version(alive, 1, timeout=60)
            await rig.policies.linger(2.0)
        finally:
            third.terminate()
            third.wait(30)
        assert [p.policy_version for p in rig.versions(model)] == [1, 2]
        assert len(rig.answers(RestrictionLifted, order_id=ordered.order_id)) == 1
        assert await expiry_timer(rig, ordered.order_id) == ["fired"]
