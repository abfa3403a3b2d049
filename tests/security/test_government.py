"""A government subscriber reads the redacted findings feed and the audit log's
checkpoints, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.principals import Principal, Role
from contracts.registry import TOPICS
from services.runtime.kafka import KafkaSettings
from services.runtime.principals import deprovision_tenant, provision_tenant
from tests.security.support import (
    Stack,
    fetch_error,
    group_error,
    produce,
    produce_error,
    read,
    unique,
)

DENIED = "TopicAuthorizationFailedError"
GOVERNMENT_READS = {t.name for t in TOPICS if Role.GOVERNMENT in t.readers}
OTHER_TOPICS = [t.name for t in TOPICS if t.name not in GOVERNMENT_READS]


def test_government_reads_the_findings_feed_and_the_audit_checkpoints() -> None:
    assert {"gov.findings", "gov.audit"} == GOVERNMENT_READS


@pytest.fixture
async def subscriber(stack: Stack, tmp_path: Path) -> AsyncIterator[tuple[str, KafkaSettings]]:
    principal = Principal(Role.GOVERNMENT, unique("g"))
    await provision_tenant(stack.operator, principal, tmp_path / "gov.json")
    yield principal.namespace() or "", stack.settings(tmp_path / "gov.json")
    await deprovision_tenant(stack.operator, principal)


async def test_a_government_subscriber_reads_gov_findings_in_its_own_group(
    stack: Stack, subscriber: tuple[str, KafkaSettings]
) -> None:
    namespace, gov = subscriber
    value = f'{{"finding": "{unique("f")}"}}'.encode()
    await produce(stack.settings_for("risk"), "gov.findings", (b"s", value))
    # The shared topic may hold older findings: read until ours is there.
    records = await read(
        gov, "gov.findings", until=lambda rs: value in [r.value for r in rs], group=f"{namespace}f"
    )
    assert value in [r.value for r in records]


@pytest.mark.parametrize("topic", OTHER_TOPICS)
async def test_a_government_subscriber_cannot_read_any_other_topic(
    subscriber: tuple[str, KafkaSettings], topic: str
) -> None:
    _, gov = subscriber
    assert await fetch_error(gov, topic) == DENIED


async def test_a_government_subscriber_cannot_write_the_feed(
    subscriber: tuple[str, KafkaSettings],
) -> None:
    _, gov = subscriber
    assert await produce_error(gov, "gov.findings") == DENIED


async def test_a_government_subscriber_cannot_join_an_agency_group(
    subscriber: tuple[str, KafkaSettings],
) -> None:
    _, gov = subscriber
    assert await group_error(gov, "gov.findings", "risk.intake.events") == (
        "GroupAuthorizationFailedError"
    )
