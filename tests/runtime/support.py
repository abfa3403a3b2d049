"""A tiny test service: counts the Ping events it applies, optionally forwards them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

from contracts import Event, Topic, encode, make_event
from services.runtime import (
    Context,
    PermanentError,
    RuntimeSettings,
    Service,
    Timer,
    TimerContext,
)
from services.runtime.consumer import Handler
from tests.kit import test_topic

MIGRATIONS = Path(__file__).parent / "sql"


class Ping(Event):
    TYPE: ClassVar[str] = "test.Ping"
    key: str
    seq: int
    fail: bool = False
    permanent: bool = False


class Pong(Event):
    """Another type on the test topic, which the counter ignores."""

    TYPE: ClassVar[str] = "test.Pong"
    key: str


def ping_topic(name: str) -> Topic:
    return test_topic(name, (Ping, Pong))


def counting_handler(
    delay: float = 0.0, forward_to: str | None = None, *, deferred: bool = False
) -> Handler:
    """Counts each applied Ping in ``applied`` (with ``ctx.defer`` when ``deferred``)."""

    async def apply(ctx: Context, ping: Ping) -> None:
        if ping.permanent:
            raise PermanentError("test_refused", f"ping {ping.seq} is refused")
        if ping.fail:
            raise RuntimeError(f"ping {ping.seq} always fails")
        if delay:
            await asyncio.sleep(delay)
        write = ctx.defer if deferred else ctx.conn.execute
        await write(
            """INSERT INTO applied (event_id, key, seq) VALUES ($1, $2, $3)
               ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1""",
            ctx.event.id,
            ping.key,
            ping.seq,
        )
        if forward_to:
            ctx.publish_to(forward_to, ping, subject=ping.key)

    return apply


def ping_record(key: str, seq: int, **flags: bool) -> bytes:
    return encode(make_event(Ping(key=key, seq=seq, **flags), source="/tests", subject=key))


def counter_settings(
    base: RuntimeSettings, name: str, schema: str, **extra: object
) -> RuntimeSettings:
    return base.model_copy(update={"service_name": name, "db_schema": schema, **extra})


def counter_service(
    settings: RuntimeSettings, topic: str, delay: float = 0.0, forward_to: str | None = None
) -> Service:
    service = Service(settings, migrations=[MIGRATIONS])
    service.consume(ping_topic(topic), {Ping: counting_handler(delay, forward_to)}, ignore=[Pong])
    return service


TIMER_KIND = "ping-due"


def timer_service(settings: RuntimeSettings, out_topic: str, delay: float = 0.0) -> Service:
    """Fires ``ping-due`` timers: records each firing and announces it on ``out_topic``."""
    service = Service(settings, migrations=[MIGRATIONS])

    async def due(ctx: TimerContext, timer: Timer) -> None:
        if delay:
            await asyncio.sleep(delay)
        await ctx.conn.execute(
            """INSERT INTO fired (key, fired_by) VALUES ($1, $2)
               ON CONFLICT (key) DO UPDATE SET times = fired.times + 1""",
            timer.key,
            os.getpid(),
        )
        ctx.publish_to(
            out_topic, Pong(key=timer.key), subject=timer.key, event_id=ctx.event_id("due")
        )

    service.timer(TIMER_KIND, due)
    return service


if __name__ == "__main__":
    # Run as a separate process, so tests can SIGKILL / SIGTERM it.
    delay = float(os.environ.get("TEST_DELAY", "0"))
    if os.environ.get("TEST_MODE") == "timers":
        timer_service(RuntimeSettings(), os.environ["TEST_TOPIC"], delay).run()
    else:
        counter_service(RuntimeSettings(), os.environ["TEST_TOPIC"], delay=delay).run()
