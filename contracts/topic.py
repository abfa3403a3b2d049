"""What a topic is: name, key, partitions, retention and the events on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.envelope import Event

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
