"""The durable-timer scheduler: fires due timers exactly once, on any replica.

Every replica runs one. It claims due rows of the kinds it has handlers for
(``FOR UPDATE SKIP LOCKED``, so replicas share the work and never fire a row
twice), and for each runs the handler in the claiming transaction with the
trace of the code that scheduled the timer, marks the row fired, writes the
handler's outbox rows, and commits. Killed mid-fire (SIGKILL), the transaction
rolls back and the row is due again. It sleeps until the next due time, at
most ``timer_poll_s``, and a NOTIFY wakes it when a timer is scheduled earlier.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from opentelemetry import trace

from services.runtime import outbox, timers
from services.runtime.context import Timer, TimerContext
from services.runtime.errors import TRANSIENT_ERRORS
from services.runtime.notify import listening
from services.runtime.telemetry import continue_trace

if TYPE_CHECKING:
    from services.runtime.clock import Clock
    from services.runtime.database import Connection, Pool
    from services.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

TimerHandler = Callable[[TimerContext, Timer], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        pool: Callable[[], Pool],
        settings: RuntimeSettings,
        clock: Clock,
        handlers: dict[str, TimerHandler],
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.handlers = handlers
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.fired = 0

    @property
    def kinds(self) -> list[str]:
        return sorted(self.handlers)

    async def run(self) -> None:
        """The background job: fire what is due, then sleep until the next due time."""
        channel = f"{self.settings.db_schema}{timers.CHANNEL_SUFFIX}"
        async with listening(self.pool(), channel) as wakeup:
            while True:
                fired = await self.fire_due()
                if fired < self.settings.timer_batch:
                    await wakeup.wait(await self._pause())

    async def fire_due(self) -> int:
        """Fire every due timer this replica can claim now; returns how many fired."""
        now = self.clock.now()
        async with self.pool().acquire() as conn, conn.transaction():
            due = await timers.claim_due(conn, self.kinds, now, self.settings.timer_batch)
            for row in due:
                # Each timer in its own savepoint: one failing handler must not keep
                # the others from firing, nor fire twice with them.
                try:
                    async with conn.transaction():
                        ctx = TimerContext(
                            conn,
                            self.settings,
                            self.clock,
                            timer=Timer(row.kind, row.key, row.due_at, row.payload),
                        )
                        with (
                            continue_trace(row.traceparent, row.tracestate),
                            self.tracer.start_as_current_span(
                                f"timer {row.kind}", attributes={"frontier_review.timer": row.key}
                            ),
                        ):
                            await self.handlers[row.kind](ctx, ctx.timer)
                        await timers.mark_fired(conn, row.kind, row.key, self.replica)
                        await outbox.write(conn, ctx.outgoing)
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    await self._failed(conn, row, exc, now)
                    continue
                self.fired += 1
        if due:
            log.info("fired %d timer(s)", len(due))
        return len(due)

    async def _failed(
        self, conn: Connection, row: timers.DueTimer, exc: Exception, now: datetime
    ) -> None:
        """Try a failing timer again with backoff; after the last attempt it is ``failed``
        (loud in the log and in the table: a bug to fix, not a deadline to drop silently)."""
        made = await timers.attempts(conn, row.kind, row.key) + 1
        retry_at = None
        if made < self.settings.handler_max_attempts:
            retry_at = now + timedelta(seconds=self.settings.handler_retry_backoff_s * 2**made)
        log.error(
            "timer %s/%s failed (attempt %d)%s",
            row.kind,
            row.key,
            made,
            "" if retry_at else "; giving up",
            exc_info=exc,
        )
        await timers.failed(conn, row.kind, row.key, f"{type(exc).__name__}: {exc}", retry_at)

    async def _pause(self) -> float:
        poll = self.settings.timer_poll_s
        async with self.pool().acquire() as conn:
            due = await timers.next_due(conn, self.kinds)
        if due is None:
            return poll
        return min(poll, max(0.01, (due - self.clock.now()).total_seconds()))
