"""Durable timers fire once each, across replicas and SIGKILL, with their outbox rows."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from datetime import timedelta
from functools import partial

import asyncpg

from services.runtime import SYSTEM_CLOCK, RuntimeSettings, Timer, TimerContext
from services.runtime.database import connect
from services.runtime.outbox import publishing
from services.runtime.scheduler import Scheduler
from tests.kit import MovableClock, NewTopic, read_topic, wait_for
from tests.runtime.support import MIGRATIONS, TIMER_KIND
from tests.runtime.test_consumer_crash import COMMAND, environment


async def fired(settings: RuntimeSettings, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".fired') is None:
            return []
        return await conn.fetch(f'SELECT key, times, fired_by FROM "{schema}".fired')
    finally:
        await conn.close()


async def count_fired(settings: RuntimeSettings, schema: str, expected: int) -> bool:
    return len(await fired(settings, schema)) >= expected


async def schedule(settings: RuntimeSettings, count: int, spread_s: float) -> None:
    async with (
        connect(settings, [MIGRATIONS]) as conn,
        publishing(conn, settings, SYSTEM_CLOCK) as ctx,
    ):
        now = SYSTEM_CLOCK.now()
        for i in range(count):
            due = now + timedelta(seconds=spread_s * i / count)
            assert await ctx.schedule(TIMER_KIND, f"t{i}", due, {"i": i})
        assert not await ctx.schedule(TIMER_KIND, "t0", now), "(kind, key) is scheduled once"


async def test_two_replicas_and_a_sigkill_fire_each_timer_once(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    out = await new_topic("timers-out")
    total = 300
    env = environment(
        settings,
        schema,
        out,
        TEST_MODE="timers",
        TEST_DELAY="0.01",
        FR_TIMER_POLL_S="0.1",
        FR_TIMER_BATCH="10",
    )
    config = settings.model_copy(
        update={"service_name": env["FR_SERVICE_NAME"], "db_schema": schema}
    )
    await schedule(config, total, spread_s=3.0)
    replicas = [subprocess.Popen(COMMAND, env=env) for _ in range(2)]
    try:
        await wait_for(partial(count_fired, settings, schema, 60), timeout=60, what="progress")
        replicas[0].send_signal(signal.SIGKILL)  # mid-fire, with timers claimed
        replicas[0].wait(timeout=10)
        replicas[0] = subprocess.Popen(COMMAND, env=env)
        await wait_for(partial(count_fired, settings, schema, total), timeout=90, what="all fired")
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
            replica.wait(timeout=30)
    rows = await fired(settings, schema)
    assert sorted(r["key"] for r in rows) == sorted(f"t{i}" for i in range(total))
    assert all(r["times"] == 1 for r in rows), "a timer fired twice"
    assert len({r["fired_by"] for r in rows}) >= 2, "the replicas shared the work"
    records = await read_topic(settings, out, expected=total, timeout=60)
    ids = [json.loads(r.value)["id"] for r in records if r.value]
    assert len(ids) == total and len(set(ids)) == total


async def test_a_timer_fires_at_its_time_on_the_injected_clock_and_can_be_cancelled(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    await new_topic("timers-clock")
    config = settings.model_copy(update={"service_name": "test-timers", "db_schema": schema})
    clock = MovableClock()
    seen: list[tuple[str, int]] = []

    async def due(ctx: TimerContext, timer: Timer) -> None:
        seen.append((timer.key, timer.payload["n"]))

    async with connect(config, [MIGRATIONS]) as conn:
        async with publishing(conn, config, clock) as ctx:
            await ctx.schedule("day", "later", clock.now() + timedelta(days=30), {"n": 1})
            await ctx.schedule("day", "cancelled", clock.now() + timedelta(days=1), {"n": 2})
            await ctx.schedule("day", "moved", clock.now() + timedelta(days=40), {"n": 3})
        async with publishing(conn, config, clock) as ctx:
            assert await ctx.cancel_timer("day", "cancelled")
            assert await ctx.reschedule("day", "moved", clock.now() + timedelta(days=2))
    from services.runtime.database import create_pool

    pool = await create_pool(config)
    try:
        scheduler = Scheduler(lambda: pool, config, clock, {"day": due})
        assert await scheduler.fire_due() == 0
        clock.advance(3 * 86400)
        assert await scheduler.fire_due() == 1
        clock.advance(30 * 86400)
        assert await scheduler.fire_due() == 1
        assert await scheduler.fire_due() == 0
    finally:
        await pool.close()
    assert seen == [("moved", 3), ("later", 1)]


async def test_a_failing_timer_is_retried_then_marked_failed_without_blocking_others(
    settings: RuntimeSettings, schema: str
) -> None:
    config = settings.model_copy(
        update={"service_name": "test-timers", "db_schema": schema, "handler_retry_backoff_s": 0.0}
    )
    calls: list[str] = []

    async def due(ctx: TimerContext, timer: Timer) -> None:
        calls.append(timer.key)
        if timer.key == "bad":
            raise RuntimeError("a bug in the handler")

    async with (
        connect(config, [MIGRATIONS]) as conn,
        publishing(conn, config, SYSTEM_CLOCK) as ctx,
    ):
        await ctx.schedule("k", "bad", SYSTEM_CLOCK.now())
        await ctx.schedule("k", "good", SYSTEM_CLOCK.now())
    from services.runtime.database import create_pool

    pool = await create_pool(config)
    try:
        scheduler = Scheduler(lambda: pool, config, SYSTEM_CLOCK, {"k": due})
        for _ in range(config.handler_max_attempts + 1):
            await scheduler.fire_due()
            await asyncio.sleep(0.01)
        async with pool.acquire() as pooled:
            states = {
                r["key"]: r["state"] for r in await pooled.fetch("SELECT key, state FROM timers")
            }
    finally:
        await pool.close()
    assert states == {"good": "fired", "bad": "failed"}
    assert calls.count("good") == 1
    assert calls.count("bad") == config.handler_max_attempts


def test_what_a_timer_publishes_has_an_id_derived_from_the_timer() -> None:
    from services.runtime.timers import event_id

    same = event_id("intake", "review-window", "s1", "closed")
    assert same == event_id("intake", "review-window", "s1", "closed")
    others = {
        event_id("risk", "review-window", "s1", "closed"),
        event_id("intake", "decision-deadline", "s1", "closed"),
        event_id("intake", "review-window", "s2", "closed"),
        event_id("intake", "review-window", "s1", "reminder"),
    }
    assert same not in others and len(others) == 4
