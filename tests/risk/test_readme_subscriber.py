"""The government subscriber of services/risk/README.md, run as written: a government
principal provisioned with the operator's tooling reads the running risk service's
findings feed under the broker's ACLs (real Kafka + PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from contracts.events.gov import FindingShared
from contracts.principals import Role
from services.runtime.onboarding import KafkaOnboarding
from tests.kit import wait_for
from tests.risk.rig import Rig

README = Path(__file__).parents[2] / "services" / "risk" / "README.md"
Follow = Callable[[Callable[[FindingShared], None]], Coroutine[Any, Any, None]]


def readme_subscriber() -> tuple[str, Follow]:
    """The README's provisioning command's government id and its ``follow_findings``."""
    section = README.read_text().split("### A subscriber to the feed", 1)[1]
    command = re.search(r"principals add government (\S+) --out", section)
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert command is not None and code is not None, "the README shows both"
    namespace: dict[str, Any] = {"__name__": "readme_subscriber"}  # not "__main__"
    exec(compile(code.group(1), str(README), "exec"), namespace)
    assert namespace["GOVERNMENT_ID"] == command.group(1), "the code uses the provisioned id"
    return command.group(1), cast(Follow, namespace["follow_findings"])


async def test_the_readmes_subscriber_reads_the_findings_feed_as_a_government_principal(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    government_id, follow_findings = readme_subscriber()
    onboarding = KafkaOnboarding.from_settings(Role.GOVERNMENT, rig.settings)
    await onboarding.register(government_id)  # what `principals add government` runs
    principal = onboarding.principal(government_id)
    user = f"{onboarding.scope.principal_prefix}{principal}"  # as register names its file
    credentials = onboarding.credentials_dir / f"{user}.json"
    monkeypatch.setenv("FR_KAFKA_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("FR_TOPIC_PREFIX", rig.settings.topic_prefix)
    received: list[FindingShared] = []
    follower = asyncio.create_task(follow_findings(received.append))
    try:
        sub = await rig.submission()
        finding = rig.finding(sub, "cyber", 1.0)
        await rig.deliver(finding)

        async def arrived_or_stopped() -> bool:
            return follower.done() or any(s.finding_id == finding.finding_id for s in received)

        await wait_for(arrived_or_stopped, timeout=60, what="the finding at the subscriber")
        assert not follower.done(), follower.exception()
        (shared,) = [s for s in received if s.finding_id == finding.finding_id]
        assert shared.submission_id == sub.submission_id and shared.level is not None
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await onboarding.remove(government_id)
