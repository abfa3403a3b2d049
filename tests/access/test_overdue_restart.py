"""ComplianceOverdue fires once across a SIGKILL of the service process: the deadline
passes while no process runs, a restarted one raises it, a third one does not again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from contracts.events.access import ComplianceOverdue
from services.runtime import RuntimeSettings
from tests.access.rig import kill, model_id, running_rig, start_process
from tests.access.support import order

WITHIN_S = 6.0


async def test_overdue_fires_once_across_a_sigkill_restart_of_the_service(
    settings: RuntimeSettings, kafka: str, database: str
) -> None:
    async with running_rig(settings, start=False, access_acknowledge_within_s=WITHIN_S) as rig:
        first = start_process(rig.settings)
        try:
            model = model_id()
            await rig.send(
                order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC))
            )
            published = await rig.version(model, 1, timeout=60)
        finally:
            kill(first)  # SIGKILL before the deadline: the timer is pending in the table
        wait = (published.acknowledge_by - datetime.now(UTC)).total_seconds() + 1.0
        await asyncio.sleep(max(wait, 0.0))  # the deadline passes while nothing runs
        assert rig.answers(ComplianceOverdue, model_id=model) == []
        second = start_process(rig.settings)
        try:
            overdue = await rig.answer(ComplianceOverdue, model_id=model, timeout=60)
            assert overdue.policy_version == 1
        finally:
            kill(second)
        third = start_process(rig.settings)
        try:
            await rig.version(model, 1)
            await rig.events.linger(4.0)  # a restarted service, its timers polled again
        finally:
            third.terminate()
            third.wait(30)
        assert len(rig.answers(ComplianceOverdue, model_id=model)) == 1
        rows = await rig.fetch(
            "SELECT state FROM timers WHERE kind = 'compliance-overdue' AND key = $1",
            f"{model}#1",
        )
        assert [r["state"] for r in rows] == ["fired"]
