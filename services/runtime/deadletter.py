"""Dead letters: records that can't be applied go to ``<topic>.dlq``, untouched.

The value is the original bytes; headers keep the original headers and say why
(``dlq.reason``: a stable code, ``dlq.error``: the detail) and where from
(``dlq.origin.*``), so an operator can inspect, fix and replay the record.

A dead letter is an outbox row written in the same transaction as the inbox
claim of the record's position: a record is dead-lettered exactly once, however
often it is delivered, and never lost (the relay publishes it like any event).

Sizes: consumers refuse records above ``max_message_bytes`` (1,000,000) as
``oversized``, but the broker accepts up to its ``message.max.bytes``
(1,048,588). The DLQ topics accept 2 MiB records (topics.py) and the relay's
producer up to ``MAX_REQUEST_BYTES``, so the full copy of any record the
broker ever accepted, with these headers, always fits: the DLQ keeps the
original bytes, not a truncated prefix.
"""

from __future__ import annotations

from datetime import datetime

from services.runtime.context import Outgoing, Record

MAX_ERROR_CHARS = 2000
DLQ_MAX_MESSAGE_BYTES = 2_097_152
# Headers are copied as text; undecodable bytes expand when replaced, so the
# copy is bounded (the value is what an operator replays).
MAX_COPIED_HEADER_CHARS = 64_000


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def dead_letter(
    record: Record,
    raw: bytes,
    *,
    reason: str,
    error: str,
    consumer: str,
    attempts: int,
    at: datetime,
) -> Outgoing:
    """The outbox row that copies ``record`` to its topic's DLQ."""
    headers = _original_headers(record) | {
        "dlq.reason": storable(reason),
        "dlq.error": storable(error[:MAX_ERROR_CHARS]),
        "dlq.consumer": consumer,
        "dlq.attempts": str(attempts),
        "dlq.origin.topic": record.topic,
        "dlq.origin.partition": str(record.partition),
        "dlq.origin.offset": str(record.offset),
        "dlq.origin.timestamp": str(record.timestamp_ms),
        "dlq.failed_at": at.isoformat(),
    }
    return Outgoing(
        topic=dlq_topic(record.topic),
        key=record.key,
        event_id=f"dlq:{consumer}:{record.position}",
        event_type="frontier_review.runtime.DeadLetter",
        payload=raw,
        headers=headers,
        traceparent=None,
        tracestate=None,
    )


def _original_headers(record: Record) -> dict[str, str]:
    copied: dict[str, str] = {}
    budget = MAX_COPIED_HEADER_CHARS
    for key, value in record.headers.items():
        text = storable(value.decode(errors="replace"))
        budget -= len(key) + len(text)
        if budget < 0:
            copied["dlq.headers_truncated"] = "true"
            break
        copied[storable(key)] = text
    return copied


def storable(text: str) -> str:
    """``text`` as PostgreSQL (and JSON in Kafka headers) can carry it: no NUL, no lone
    surrogates. Only for the copy's *descriptions*; the value stays byte for byte."""
    cleaned = text.replace("\x00", "\\u0000")
    return cleaned.encode("utf-8", errors="backslashreplace").decode("utf-8")
