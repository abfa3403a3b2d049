"""A real PostgreSQL restart and a real crash, mid-batch, under two replicas.

The database is a server of the test's own (tests/kit/postgres.py), restarted
fast (what an operator's restart or a failover does to every session) or
crashed (SIGKILL of the whole server: crash recovery at the next start) while
both replicas of a consumer service are applying batches: inbox, handler
state and outbox rows in one transaction each, the relay publishing the outbox
to Kafka. Afterwards every record is applied once, every outbox event is on
Kafka once (read_committed) in order per key, nothing is dead-lettered, and
the services came back by themselves: the same consumer and relay tasks run
throughout, nobody restarted anything.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from contracts import decode
from services.runtime import RuntimeSettings, Service
from tests.kit import NewTopic, StartService, produce, read_topic
from tests.kit.postgres import PrivateServer, private_server
from tests.runtime.support import Ping, counter_service, ping_record

TOTAL = 3000
KEYS = 24
STRIKES = 2  # faults per run, each while a batch is in flight
DEADLINE_S = 150


@pytest.fixture
async def server() -> AsyncIterator[PrivateServer]:
    async with private_server() as started:
        yield started


async def query(server: PrivateServer, schema: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(server.url, timeout=5)
    try:
        if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".applied') is None:
            return []
        return await conn.fetch(sql.replace("{schema}", f'"{schema}"'))
    finally:
        await conn.close()


async def applied_count(server: PrivateServer, schema: str) -> int:
    try:
        rows = await query(server, schema, "SELECT count(*) AS n FROM {schema}.applied")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return -1  # the server is coming back
    return int(rows[0]["n"]) if rows else 0


async def batch_in_flight(server: PrivateServer, application: str) -> bool:
    """Whether a replica holds an open transaction that has written (a batch being applied)."""
    conn = await asyncpg.connect(server.url, timeout=5)
    try:
        return bool(
            await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                   WHERE application_name = $1 AND backend_xid IS NOT NULL
                     AND state IN ('active', 'idle in transaction'))""",
                application,
            )
        )
    finally:
        await conn.close()


async def strike_mid_batch(
    server: PrivateServer, application: str, fault: Callable[[], Awaitable[None]]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await batch_in_flight(server, application):
        assert loop.time() < deadline, "no batch was ever in flight to strike"
    await fault()


@pytest.mark.parametrize("fault", ["restart", "crash"])
async def test_a_database_restart_or_crash_mid_batch_loses_and_doubles_nothing(
    settings: RuntimeSettings,
    new_topic: NewTopic,
    start: StartService,
    server: PrivateServer,
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbound = await new_topic("pg-in", partitions=4)
    outbound = await new_topic("pg-out", partitions=4)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    config = settings.model_copy(
        update={
            "service_name": f"test-pg-{uuid.uuid4().hex[:8]}",
            "db_schema": schema,
            "database_url": server.url,
            "consumer_batch_size": 50,
            "relay_batch_size": 100,
        }
    )
    await produce(
        settings,
        inbound,
        [(f"k{i % KEYS}", ping_record(f"k{i % KEYS}", i)) for i in range(TOTAL)],
    )
    replicas: list[Service] = []
    for _ in range(2):
        replicas.append(
            await start(counter_service(config, inbound, delay=0.002, forward_to=outbound))
        )
    tasks = [(c, c._task) for r in replicas for c in r.consumers]
    relays = [(r.relay, r.relay._task) for r in replicas if r.relay is not None]
    assert len(relays) == 2

    strike = server.restart if fault == "restart" else server.crash
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    for n in range(1, STRIKES + 1):
        while await applied_count(server, schema) < TOTAL * n // (STRIKES + 1):
            assert loop.time() < deadline, f"stalled before fault {n}"
            await asyncio.sleep(0.05)
        await strike_mid_batch(server, config.service_name, strike)
    assert server.restarts + server.crashes == STRIKES

    while await applied_count(server, schema) < TOTAL:
        assert loop.time() < deadline, (
            f"{await applied_count(server, schema)} of {TOTAL} applied: the services did not "
            "recover by themselves"
        )
        await asyncio.sleep(0.2)
    unpublished = "SELECT count(*) AS n FROM {schema}.outbox WHERE published_at IS NULL"
    while (await query(server, schema, unpublished))[0]["n"]:
        assert loop.time() < deadline, "the relay did not publish the whole outbox"
        await asyncio.sleep(0.2)

    rows = await query(
        server, schema, "SELECT key, seq, times FROM {schema}.applied ORDER BY applied_at"
    )
    assert sorted(r["seq"] for r in rows) == list(range(TOTAL)), "every record applied"
    assert [r["seq"] for r in rows if r["times"] != 1] == [], "no record applied twice"
    applied_by_key: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        applied_by_key[r["key"]].append(r["seq"])
    assert all(seqs == sorted(seqs) for seqs in applied_by_key.values()), "applied out of order"
    (outbox,) = await query(
        server, schema, "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM {schema}.outbox"
    )
    assert (outbox["n"], outbox["ids"]) == (TOTAL, TOTAL), "one outbox row per applied record"

    published = await read_topic(settings, outbound, expected=TOTAL, timeout=60)
    events = [decode(r.value or b"", {Ping.TYPE: Ping}) for r in published]
    assert len(published) == TOTAL, f"{len(published)} records published for {TOTAL} events"
    assert len({e.id for e in events}) == TOTAL, "an outbox event was published twice"
    assert sorted(e.data.seq for e in events if isinstance(e.data, Ping)) == list(range(TOTAL))
    on_kafka: dict[str, list[int]] = defaultdict(list)
    for _, event in sorted(
        zip(published, events, strict=True), key=lambda p: (p[0].partition, p[0].offset)
    ):
        assert isinstance(event.data, Ping)
        on_kafka[event.data.key].append(event.data.seq)
    assert all(seqs == sorted(seqs) for seqs in on_kafka.values()), "published out of order"
    assert await read_topic(settings, f"{inbound}.dlq", expected=0, timeout=1) == [], (
        "a database outage is not the records' fault: nothing is dead-lettered"
    )

    # An outage is the infrastructure's fault: said as warnings, never as an error of
    # the runtime (an error there means a path that did not know a restart for one).
    errors = [
        f"{r.name}: {r.getMessage()} ({r.exc_info[1]!r})" if r.exc_info else r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("services.runtime")
    ]
    assert errors == [], errors

    # They recovered by themselves: the very tasks started at the beginning still run.
    for consumer, task in tasks:
        assert consumer._task is task and consumer.running, "a consumer task was replaced"
    for relay, task in relays:
        assert relay._task is task and task is not None and not task.done(), "a relay died"
