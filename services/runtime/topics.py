"""Create the project's topics from the contract registry (never auto-created),
and apply the registry's ACLs.

``python -m services.runtime.topics create`` — idempotent: existing topics are
kept and reported; a topic with fewer partitions than the registry asks for is
an error to fix by hand (partitions can grow, not shrink, and growing changes
the key -> partition mapping).

``python -m services.runtime.topics apply-acls [--prefix P] [--principal-prefix Q]``
— idempotent and converging (services/runtime/acls.py): every principal of the
deployment ends up with exactly the bindings ``contracts.acl`` derives; with a
prefix, the same set on ``<P><name>`` for principals ``<Q><name>`` (a test rig).
``python -m services.runtime.topics acls`` prints them read back from the
broker and exits 1 if they differ from the registry's.

All three connect as the operator (FR_KAFKA_CREDENTIALS_FILE = its file).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.acl import AclScope, desired_grants
from services.runtime.acls import apply_acls, deployment_principals, read_acls
from services.runtime.consumer import EXTERNAL_PRODUCERS
from services.runtime.database import database_name
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from services.runtime.kafka import KafkaSettings, aiokafka_options
from services.runtime.kafka_admin import KafkaAdmin
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

    plans = [TopicPlan(prefix + CHECKPOINT_TOPIC, 1, {"cleanup.policy": "compact"})]
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


async def ensure_topics(kafka: KafkaSettings | str, plans: Iterable[TopicPlan]) -> list[str]:
    """Create what is missing; returns the names created. ``kafka`` is the
    connection's settings (a bare bootstrap string means PLAINTEXT)."""
    options = {"bootstrap_servers": kafka} if isinstance(kafka, str) else aiokafka_options(kafka)
    admin = AIOKafkaAdminClient(**options)
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


async def _apply_acls(settings: KafkaSettings, scope: AclScope) -> int:
    async with KafkaAdmin(settings) as admin:
        changes = await apply_acls(admin, scope=scope)
    for grant in sorted(changes.created):
        print(f"granted  {grant}")
    for grant in sorted(changes.deleted):
        print(f"revoked  {grant}")
    print(f"acls: {len(changes.created)} granted, {len(changes.deleted)} revoked")
    return 0


async def _show_acls(settings: KafkaSettings, scope: AclScope) -> int:
    async with KafkaAdmin(settings) as admin:
        held = await read_acls(admin, scope)
        expected = desired_grants(await deployment_principals(admin, scope), scope)
    for grant in sorted(held | expected):
        mark = " " if grant in held and grant in expected else ("+" if grant in held else "-")
        print(f"{mark} {grant}")
    if held != expected:
        print("acls: differ from the registry (+ held, not registered; - registered, missing)")
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.topics")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create", help="create the registry's topics")
    for name in ("apply-acls", "acls"):
        command = commands.add_parser(name)
        command.add_argument("--prefix", default="", help="in front of every resource name")
        command.add_argument("--principal-prefix", default="", help="in front of every user")
    args = parser.parse_args(argv[1:])
    settings = RuntimeSettings()
    if args.command != "create":
        scope = AclScope(
            prefix=args.prefix,
            principal_prefix=args.principal_prefix,
            database=database_name(RuntimeSettings().database_url),
        )
        run = _apply_acls if args.command == "apply-acls" else _show_acls
        return asyncio.run(run(settings, scope))
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
