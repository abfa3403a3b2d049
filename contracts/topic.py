"""What a topic is: name, key, partitions, retention, the events on it, and who
may write and read it (by role; ``contracts.acl`` turns that into Kafka ACLs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.envelope import Event
from contracts.principals import Role, tenant_namespace

DAY_MS = 24 * 3600 * 1000

EXTERNAL_PRODUCERS = frozenset({"lab", "evaluators", "reviewers"})
"""Producers outside the agency: their topics carry hostile input until verified."""


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str  # the context allowed to write it ("lab" for lab-facing input topics)
    key: str  # what the record key (= CloudEvent subject) is
    events: tuple[type[Event], ...]
    partitions: int = 6
    compacted: bool = False
    retention_ms: int = 30 * DAY_MS
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Least privilege, as data: the only roles whose principals may produce to /
    # consume from this topic (the operator, a super user, is not listed). Each
    # reader also writes the topic's DLQ and uses the group ``<role>.<topic>``.
    writers: tuple[Role, ...] = ()
    readers: tuple[Role, ...] = ()

    @property
    def external(self) -> bool:
        """Written from outside the agency: ``decode(raw, topic.event_types, external=True)``.

        Its events are ``Event.EXTERNAL`` too (a test keeps the two in step), so
        decode is strict for them even when a caller leaves the flag out.
        """
        return self.producer in EXTERNAL_PRODUCERS

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    @property
    def event_types(self) -> dict[str, type[Event]]:
        return {event.TYPE: event for event in self.events}

    def kafka_config(self) -> dict[str, str]:
        config = {"retention.ms": str(-1 if self.compacted else self.retention_ms)}
        if self.compacted:
            # Latest policy per model survives forever, so a new enforcement point
            # can rebuild the current state by reading from the start.
            config |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        return config | self.extra_config


@dataclass(frozen=True)
class TenantFeed:
    """A topic every tenant of ``owner``'s role has one of, ``<root>.<tenant id>.<suffix>``
    (``labs.acme.answers``): what the agency answers that tenant, readable by it alone
    (a tenant reads no agency topic). Its events travel as owner copies
    (``contracts.sensitivity.owner_copy``)."""

    owner: Role
    suffix: str
    key: str  # what the record key is (a feed may carry several, see description)
    writers: tuple[Role, ...]  # agency roles that publish to every such feed
    events: tuple[type[Event], ...] = ()
    partitions: int = 3
    compacted: bool = False
    retention_ms: int = 90 * DAY_MS
    description: str = ""

    def topic(self, tenant_id: str) -> str:
        return f"{tenant_namespace(self.owner, tenant_id)}{self.suffix}"

    def kafka_config(self) -> dict[str, str]:
        config = {"retention.ms": str(-1 if self.compacted else self.retention_ms)}
        if self.compacted:
            config |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        return config


def lab_namespace(lab_id: str) -> str:
    """``labs.<lab id>.``: the prefix of every topic and consumer group a lab owns."""
    return tenant_namespace(Role.LAB, lab_id)
