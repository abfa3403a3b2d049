"""The review-window clock: a durable schedule, closed exactly once by any replica.

Every replica polls ``review_windows``; due rows are claimed with
``FOR UPDATE SKIP LOCKED``, marked closed and their ReviewWindowClosed queued
in the outbox in the same transaction. A replica killed mid-close rolls back
and the row is claimed again; a closed or cancelled (withdrawn) row never
matches again: that state is the guarantee. As defence in depth the event id
is derived from the submission id, so a second close queued while the first's
outbox row is kept (7 days, then pruned) would be refused by its unique id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta

from opentelemetry import trace

from services.intake import repository
from services.intake.clock import Clock
from services.intake.decisions import window_closed, window_closed_event_id
from services.intake.settings import IntakeSettings
from services.runtime.outbox import Outbox
from services.runtime.service import Service
from services.runtime.telemetry import attach_trace, detach_trace

log = logging.getLogger(__name__)

NONCE_PURGE_EVERY_S = 60.0


class ReviewWindowClock:
    def __init__(self, service: Service, settings: IntakeSettings, clock: Clock) -> None:
        self.service = service
        self.settings = settings
        self.clock = clock
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tracer = trace.get_tracer(__name__, tracer_provider=service.tracer_provider)
        self.max_skew = timedelta(seconds=settings.intake_max_clock_skew_s)

    async def run(self) -> None:
        """The background job: close what is due, purge old nonces, sleep until the next."""
        loop = asyncio.get_running_loop()
        next_purge = 0.0
        while True:
            closed = await self.close_due()
            if loop.time() >= next_purge:
                await self.purge_nonces()
                next_purge = loop.time() + NONCE_PURGE_EVERY_S
            if closed < self.settings.intake_clock_batch:
                await asyncio.sleep(await self._pause())

    async def close_due(self) -> int:
        """Close every due window this replica can claim now; returns how many."""
        now = self.clock.now()
        async with self.service.pool.acquire() as conn, conn.transaction():
            due = await repository.claim_due_windows(conn, now, self.settings.intake_clock_batch)
            if not due:
                return 0
            await repository.close_windows(conn, due, now, self.replica)
            outbox = Outbox(conn, self.service.source)
            for window in due:
                # Continue the submission's trace: one trace per submission.
                token = attach_trace({"traceparent": window.traceparent})
                try:
                    with self.tracer.start_as_current_span("intake review-window close"):
                        await outbox.publish(
                            self.settings.intake_events_topic,
                            window_closed(
                                window.submission_id,
                                window.lab_id,
                                window.model_id,
                                window.deadline,
                                now,
                            ),
                            subject=str(window.submission_id),
                            event_id=window_closed_event_id(window.submission_id),
                        )
                finally:
                    detach_trace(token)
        log.info("closed %d review window(s)", len(due))
        return len(due)

    async def purge_nonces(self) -> None:
        # Inputs issued before now - skew are refused as stale before their nonce is
        # checked; twice the skew leaves margin for clock steps.
        cutoff = self.clock.now() - 2 * self.max_skew
        async with self.service.pool.acquire() as conn:
            await repository.purge_nonces(conn, cutoff)

    async def _pause(self) -> float:
        poll = self.settings.intake_clock_poll_s
        async with self.service.pool.acquire() as conn:
            deadline = await repository.next_deadline(conn)
        if deadline is None:
            return poll
        until = (deadline - self.clock.now()).total_seconds()
        return min(poll, max(0.01, until))
