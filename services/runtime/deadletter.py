"""Dead letters: records that can't be applied go to ``<topic>.dlq``, untouched.

The value is the original bytes; headers keep the original headers and say why
(``dlq.reason``: a stable code, ``dlq.error``: the detail) and where from
(``dlq.origin.*``), so an operator can inspect, fix and replay the record.
Publishing is confirmed before the source offset is committed: at worst a
crash in between sends a dead letter twice, never zero times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker

MAX_ERROR_CHARS = 4000


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def dead_letter_headers(
    record: Any, *, reason: str, error: str, consumer: str, attempts: int
) -> dict[str, str]:
    original = {key: value.decode(errors="replace") for key, value in (record.headers or ())}
    return original | {
        "dlq.reason": reason,
        "dlq.error": error[:MAX_ERROR_CHARS],
        "dlq.consumer": consumer,
        "dlq.attempts": str(attempts),
        "dlq.origin.topic": record.topic,
        "dlq.origin.partition": str(record.partition),
        "dlq.origin.offset": str(record.offset),
        "dlq.failed_at": datetime.now(UTC).isoformat(),
    }


async def send_to_dlq(
    broker: KafkaBroker,
    record: Any,
    *,
    reason: str,
    error: str,
    consumer: str,
    attempts: int = 1,
) -> None:
    """Publish ``record`` (an aiokafka ConsumerRecord) to its topic's DLQ and wait for the ack."""
    await broker.publish(
        record.value or b"",
        dlq_topic(record.topic),
        key=record.key,
        headers=dead_letter_headers(
            record, reason=reason, error=error, consumer=consumer, attempts=attempts
        ),
    )
