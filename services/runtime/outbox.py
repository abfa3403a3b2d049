"""Transactional outbox: outgoing events become rows in the handler's transaction.

Nothing reaches Kafka unless the state change that caused it committed, and
nothing that committed is lost: the relay (relay.py) publishes the rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from contracts import CONTENT_TYPE, CloudEvent, Event, encode, make_event
from services.runtime.telemetry import current_trace_headers

if TYPE_CHECKING:
    from services.runtime.database import Connection


class Outbox:
    """Writes events on ``conn``, which must be inside the caller's transaction."""

    def __init__(self, conn: Connection, source: str) -> None:
        self.conn = conn
        self.source = source

    async def publish(
        self,
        topic: str,
        data: Event,
        *,
        subject: str,
        event_id: str | None = None,
    ) -> CloudEvent[Event]:
        """Build the CloudEvent for ``data`` (born in the current trace) and queue it."""
        trace_headers = current_trace_headers()
        event: CloudEvent[Event] = make_event(
            data,
            source=self.source,
            subject=subject,
            event_id=event_id,
            traceparent=trace_headers.get("traceparent"),
        )
        await self.put(topic, event)
        return event

    async def put(
        self, topic: str, event: CloudEvent[Event], headers: Mapping[str, str] | None = None
    ) -> None:
        """Queue an already built event; the record key is its subject."""
        if not self.conn.is_in_transaction():
            raise RuntimeError("outbox writes must share the state change's transaction")
        trace_headers = current_trace_headers()
        all_headers = {"content-type": CONTENT_TYPE, "ce_type": event.type, **(headers or {})}
        await self.conn.execute(
            """INSERT INTO outbox (topic, key, event_id, event_type, payload, headers,
                                   traceparent, tracestate)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)""",
            topic,
            event.subject.encode(),
            event.id,
            event.type,
            encode(event),
            json.dumps(all_headers),
            trace_headers.get("traceparent"),
            trace_headers.get("tracestate"),
        )
