"""The interim order the running risk service publishes, enforced by the running access
service and a lab's enforcer (real Kafka + PostgreSQL, both services).

The order is taken from risk.events as risk published it and handed to access unchanged:
what access compiles is what risk decided, country-group names included.
"""

from __future__ import annotations

from contracts.events import RestrictionOrdered
from services.runtime import RuntimeSettings
from tests.access.rig import Lab, applied
from tests.access.rig import running_rig as access_rig
from tests.access.support import person, ties
from tests.risk.rig import Rig


async def test_risks_interim_order_denies_the_groups_nationals_in_access_and_allows_others(
    rig: Rig, settings: RuntimeSettings
) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    interim = await rig.one(sub, RestrictionOrdered)
    assert interim.interim
    async with (
        access_rig(settings, labs=[Lab(sub.lab_id, "k1")]) as access,
        access.enforcer(sub.lab_id) as enforcer,
    ):
        await access.send(interim)
        published = await access.version(sub.model_id, 1)
        assert published.order_ids == [interim.order_id]
        await applied(enforcer, sub.model_id, 1)
        french = enforcer.check(person(), sub.model_id)
        assert french.allowed, french.reasons
        chinese = enforcer.check(person(citizenships=ties("CN")), sub.model_id)
        assert not chinese.allowed
        assert chinese.order_ids == [interim.order_id]
