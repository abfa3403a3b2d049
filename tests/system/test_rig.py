"""The rig's own options that the benchmarks use: more partitions than the registry's."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from contracts.registry import OUTBOX_CHECKPOINT_TOPIC
from services.runtime import RuntimeSettings
from tests.kit import create_registry_topics, isolated
from tests.system.rig import delete_topics


async def test_a_partitions_override_widens_the_partitioned_topics_and_no_other(
    settings: RuntimeSettings, kafka: str
) -> None:
    rig = isolated(settings, RuntimeSettings, "partitions")
    await create_registry_topics(rig, partitions=12)
    admin = AIOKafkaAdminClient(**rig.kafka_options())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(rig.topic_prefix)]
        described = await admin.describe_topics(names)
        partitions = {
            t["topic"].removeprefix(rig.topic_prefix): len(t["partitions"]) for t in described
        }
    finally:
        await admin.close()
        await delete_topics(rig)
    assert partitions["intake.events"] == 12  # the registry's 6
    assert partitions["risk.events"] == 12
    assert partitions["access.policies"] == 12  # the registry's 3
    assert partitions["gov.audit"] == 1  # one partition: one order, kept
    assert partitions["intake.events.dlq"] == 1
    assert partitions[OUTBOX_CHECKPOINT_TOPIC] == 1
