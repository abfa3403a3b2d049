"""Create the project's topics from the contract registry (never auto-created).

``python -m services.runtime.topics create`` — idempotent: existing topics are
kept and reported; a topic with fewer partitions than the registry asks for is
an error to fix by hand (partitions can grow, not shrink, and growing changes
the key -> partition mapping).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.runtime.consumer import EXTERNAL_PRODUCERS
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.settings import RuntimeSettings

DLQ_RETENTION_MS = 90 * 24 * 3600 * 1000


class TopicMismatch(RuntimeError):
    """An existing topic does not match the registry (fix by hand: see module doc)."""


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def planned_topics(prefix: str = "") -> list[TopicPlan]:
    """The registry's topics (under ``prefix``), their DLQs and the relay checkpoints.

    Topics written from outside the agency take the broker's append time as the
    record timestamp (LogAppendTime): freshness of signed input is judged against
    when the broker received it, which a sender cannot set. DLQs take records
    twice the consumers' limit, so a dead letter is never refused for its size.
    """
    from contracts.registry import TOPICS

    plans = [TopicPlan(CHECKPOINT_TOPIC, 1, {"cleanup.policy": "compact"})]
    for topic in TOPICS:
        config = topic.kafka_config()
        if topic.producer in EXTERNAL_PRODUCERS:
            config["message.timestamp.type"] = "LogAppendTime"
        plans.append(TopicPlan(prefix + topic.name, topic.partitions, config))
        plans.append(dlq_plan(prefix + topic.dlq))
    return plans


def dlq_plan(name: str) -> TopicPlan:
    return TopicPlan(
        name,
        1,
        {"retention.ms": str(DLQ_RETENTION_MS), "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
    )


async def ensure_topics(settings: RuntimeSettings, plans: Iterable[TopicPlan]) -> list[str]:
    """Create what is missing; returns the names created."""
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [p for p in plans if p.name not in existing]
        present = [p for p in plans if p.name in existing]
        if present:
            described = await admin.describe_topics([p.name for p in present])
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            short = [p for p in present if partitions.get(p.name, 0) < p.partitions]
            if short:
                raise TopicMismatch(
                    "; ".join(
                        f"{p.name} has {partitions.get(p.name, 0)} partitions, the registry "
                        f"asks for {p.partitions}"
                        for p in short
                    )
                )
        if missing:
            await admin.create_topics(
                [
                    NewTopic(p.name, p.partitions, replication_factor=1, topic_configs=p.config)
                    for p in missing
                ]
            )
            # Metadata names the leader before the broker has taken the role; the
            # first produce would only be retried (NotLeaderForPartition). Settle.
            await asyncio.sleep(0.5)
        return [p.name for p in missing]
    finally:
        await admin.close()


def main(argv: list[str]) -> int:
    if argv[1:] != ["create"]:
        print("usage: python -m services.runtime.topics create", file=sys.stderr)
        return 2
    settings = RuntimeSettings()
    plans = planned_topics(settings.topic_prefix)
    try:
        created = asyncio.run(ensure_topics(settings, plans))
    except TopicMismatch as mismatch:
        print(f"topics: ERROR: {mismatch}", file=sys.stderr)
        return 1
    for plan in plans:
        state = "created" if plan.name in created else "exists"
        print(f"{state:8} {plan.name} ({plan.partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
