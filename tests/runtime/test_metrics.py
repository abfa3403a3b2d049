"""Every service serves /healthz, /readyz and /metrics; the numbers are the truth.

A service is driven through good, poison, undecodable and slow records, then
scraped over HTTP (parsed with prometheus-client's parser): lag, durations,
dead letters by reason, outbox backlog. Readiness is 503 until the service has
started, and while its database is unreachable.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlparse, urlunparse

from services.runtime import Context, RuntimeSettings, Service
from services.runtime.consumer import Handler
from services.runtime.metrics import INVALID_EVENT_TYPE, ServiceMetrics
from tests.kit import (
    NewTopic,
    Scrape,
    StartService,
    TcpProxy,
    free_port,
    get_json,
    produce,
    read_topic,
    scrape,
    scrape_until,
    wait_for,
)
from tests.runtime.support import (
    MIGRATIONS,
    Ping,
    Pong,
    counter_settings,
    counting_handler,
    ping_record,
    ping_topic,
)

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.metrics import Samples

DURATION = "frontier_review_handler_duration_seconds"
DEAD_LETTERS = "frontier_review_dead_letters_total"
LAG = "frontier_review_consumer_lag_records"
PING = Ping.TYPE


@dataclass
class Gate:
    """Holds the record keyed ``slow`` in its handler until released; measures how long."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held_s: float = 0.0


def gated(gate: Gate, forward_to: str | None = None) -> Handler:
    counting = counting_handler(forward_to=forward_to)

    async def apply(ctx: Context, ping: Ping) -> None:
        if ping.key == "slow" and not gate.release.is_set():
            loop = asyncio.get_running_loop()
            started = loop.time()
            gate.entered.set()
            await gate.release.wait()
            gate.held_s = loop.time() - started
        await counting(ctx, ping)

    return apply


def settings_for(settings: RuntimeSettings, schema: str, **extra: object) -> RuntimeSettings:
    name = f"test-{uuid.uuid4().hex[:8]}"
    return counter_settings(settings, name, schema, http_port=0, metrics_refresh_s=0.05, **extra)


def forwarding_service(
    settings: RuntimeSettings, inbound: str, forwarded: str, gate: Gate
) -> Service:
    """Applies ``inbound`` (forwarding each Ping to ``forwarded`` through the outbox, so
    the relay writes it in a Kafka transaction) and ``forwarded``."""
    service = Service(settings, migrations=[MIGRATIONS])
    service.consume(ping_topic(inbound), {Ping: gated(gate, forward_to=forwarded)}, ignore=[Pong])
    service.consume(ping_topic(forwarded), {Ping: counting_handler()}, ignore=[Pong])
    return service


def group(service: Service, topic: str) -> str:
    return next(c.group for c in service.consumers if c.topic == topic)


async def test_metrics_count_what_the_service_applied_dead_lettered_and_still_owes(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, start: StartService
) -> None:
    inbound = await new_topic("metrics-in", partitions=1)
    forwarded = await new_topic("metrics-fwd", partitions=1)
    gate = Gate()
    service = await start(
        forwarding_service(settings_for(settings, schema), inbound, forwarded, gate)
    )
    assert service.http_port is not None
    port = service.http_port

    # A slow record is held in its handler; three more arrive behind it.
    await produce(settings, inbound, [("slow", ping_record("slow", 0))])
    await asyncio.wait_for(gate.entered.wait(), 30)
    await produce(
        settings,
        inbound,
        [
            ("k", ping_record("k", 1)),
            ("k", ping_record("k", 2, fail=True)),  # its handler always fails
            ("k", b"\x00\xffnot json"),
        ],
    )

    async def lag_is(expected: float) -> bool:
        return (await scrape(port)).value(LAG, topic=inbound, partition="0") == expected

    # Nothing of the partition is applied yet: the held record and the three behind it.
    await wait_for(lambda: lag_is(4), what="a lag of 4 while the first record is held")
    gate.release.set()

    async def settled() -> bool:
        now = await scrape(port)
        return (
            now.value(LAG, topic=inbound, partition="0") == 0
            and now.value(LAG, topic=forwarded, partition="0") == 0
            and now.value("frontier_review_outbox_backlog_rows") == 0
            and now.value(f"{DURATION}_count", topic=forwarded, outcome="applied") == 2
        )

    await wait_for(settled, what="every record applied, forwarded and published")
    final = await scrape(port)

    def count(topic: str, outcome: str, event_type: str = PING) -> float | None:
        return final.value(f"{DURATION}_count", topic=topic, event_type=event_type, outcome=outcome)

    assert count(inbound, "applied") == 2  # the slow one and the good one
    assert count(inbound, "retried") == settings.handler_max_attempts - 1
    assert count(inbound, "dead_lettered") == 1  # the failing handler's last attempt
    assert count(inbound, "dead_lettered", INVALID_EVENT_TYPE) == 1  # the undecodable bytes
    assert count(inbound, "answered_invalid", INVALID_EVENT_TYPE) is None  # no on_invalid here
    assert count(forwarded, "applied") == 2
    applied_s = final.value(f"{DURATION}_sum", topic=inbound, event_type=PING, outcome="applied")
    assert applied_s is not None and applied_s >= gate.held_s > 0

    assert final.value(DEAD_LETTERS, topic=inbound, reason="handler_failed") == 1
    assert final.value(DEAD_LETTERS, topic=inbound, reason="malformed_json") == 1
    assert final.total(DEAD_LETTERS) == 2
    dlq = await read_topic(settings, f"{inbound}.dlq", expected=2)
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dlq)
    assert reasons == ["handler_failed", "malformed_json"]  # the metric is what the DLQ holds

    # The forwarded topic was written in Kafka transactions: its markers are no lag.
    assert final.value(LAG, group=group(service, forwarded), topic=forwarded, partition="0") == 0
    assert final.value("frontier_review_consumer_assigned_partitions", topic=inbound) == 1
    assert final.value("frontier_review_outbox_oldest_unpublished_age_seconds") == 0
    assert final.value("frontier_review_outbox_relay_leading") == 1
    assert final.value("frontier_review_outbox_published_total") == 4  # 2 forwarded, 2 DLQ
    assert final.value("frontier_review_metrics_source_up", source="database") == 1
    assert final.value("frontier_review_metrics_source_up", source="kafka") == 1


async def test_the_outbox_backlog_counts_rows_the_relay_has_not_published(
    settings: RuntimeSettings, schema: str, start: StartService, kafka: str
) -> None:
    service = await start(Service(settings_for(settings, schema), migrations=[MIGRATIONS]))
    assert service.relay is not None and service.http_port is not None
    await service.relay.stop()  # nobody publishes now
    service.relay = None
    async with service.transaction() as ctx:
        for seq in range(3):
            ctx.publish_to(f"test.unpublished.{seq}", Pong(key="k"), subject="k")

    async def backlog_of_three() -> bool:
        now = await scrape(service.http_port or 0)
        return now.value("frontier_review_outbox_backlog_rows") == 3

    await wait_for(backlog_of_three, what="a backlog of 3")
    now = await scrape(service.http_port)
    age = now.value("frontier_review_outbox_oldest_unpublished_age_seconds")
    assert age is not None and age > 0
    assert now.value("frontier_review_outbox_relay_leading") == 0


async def test_readiness_is_503_naming_the_database_when_it_is_unreachable(
    settings: RuntimeSettings, schema: str
) -> None:
    closed = free_port()
    url = urlparse(settings.database_url)
    nowhere = urlunparse(url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{closed}"))
    service = Service(settings_for(settings, schema, database_url=nowhere))
    await service.start_http()
    try:
        assert service.http_port is not None
        assert (await get_json(service.http_port, "/healthz")) == (200, {"status": "ok"})
        status, body = await get_json(service.http_port, "/readyz")
        assert status == 503
        assert body["status"] == "not ready"
        assert body["checks"]["database"].startswith("unreachable")
        assert body["checks"]["service"] == "starting"
    finally:
        await service.close()


async def test_readiness_turns_200_once_started_and_503_while_the_database_is_cut_off(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic, kafka: str
) -> None:
    topic = await new_topic("ready", partitions=2)
    url = urlparse(settings.database_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    through_proxy = urlunparse(
        url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{proxy.port}")
    )
    service = Service(
        settings_for(settings, schema, database_url=through_proxy), migrations=[MIGRATIONS]
    )
    service.consume(ping_topic(topic), {Ping: counting_handler()}, ignore=[Pong])
    await service.start_http()
    try:
        assert service.http_port is not None
        port = service.http_port
        status, body = await get_json(port, "/readyz")
        assert status == 503
        assert body["checks"]["service"] == "starting"
        assert body["checks"][f"consumer {service.consumers[0].group}"].startswith("has not joined")

        await service.start()

        async def ready(expected: bool) -> bool:
            status, _ = await get_json(port, "/readyz")
            return (status == 200) is expected

        await wait_for(lambda: ready(True), what="ready after start")
        status, body = await get_json(port, "/readyz")
        assert body == {
            "status": "ready",
            "checks": {
                "service": "ok",
                "database": "ok",
                "relay": "ok",
                f"consumer {service.consumers[0].group}": "ok",
            },
        }

        await proxy.cut()
        await wait_for(lambda: ready(False), what="not ready with the database cut off")
        status, body = await get_json(port, "/readyz")
        assert status == 503 and body["checks"]["database"].startswith("unreachable")
        assert (await get_json(port, "/healthz"))[0] == 200  # alive all the same

        await proxy.restore()
        await wait_for(lambda: ready(True), timeout=60, what="ready again once it is back")
    finally:
        await service.stop()
        await proxy.close()


async def test_a_service_without_routes_of_its_own_answers_404_beside_the_endpoints(
    settings: RuntimeSettings, schema: str, start: StartService, kafka: str
) -> None:
    service = await start(Service(settings_for(settings, schema), migrations=[MIGRATIONS]))
    assert service.http_port is not None
    status, body = await get_json(service.http_port, "/submissions/1")
    assert status == 404 and body["endpoints"] == ["/healthz", "/readyz", "/metrics"]


async def test_a_failing_service_query_leaves_the_other_metrics_refreshed_and_says_so(
    settings: RuntimeSettings, schema: str, start: StartService, kafka: str
) -> None:
    service = Service(settings_for(settings, schema), migrations=[MIGRATIONS])

    async def broken(conn: Connection) -> Samples:
        return {(): float(await conn.fetchval("SELECT count(*) FROM no_such_table"))}

    async def working(conn: Connection) -> Samples:
        return {(): float(await conn.fetchval("SELECT 7"))}

    service.metrics.query("test_broken", "A query with a bug.", broken)
    service.metrics.query("test_working", "A query that works.", working)
    await start(service)
    assert service.http_port is not None

    def refreshed(now: Scrape) -> bool:
        return now.value("frontier_review_test_working") == 7

    now = await scrape_until(service.http_port, refreshed, what="the working query's value")
    assert now.value("frontier_review_test_broken") is None
    assert now.value("frontier_review_outbox_backlog_rows") == 0  # refreshed all the same
    assert now.value("frontier_review_metrics_source_up", source="database") == 0


def test_two_services_in_one_process_keep_their_metrics_apart(settings: RuntimeSettings) -> None:
    first = Service(counter_settings(settings, "first", "first"))
    second = Service(counter_settings(settings, "second", "second"))
    for service in (first, second):  # the same name on each registry: no collision
        service.metrics.counter("test_widgets", "Widgets.").inc()
    first_widgets = first.metrics.registry.get_sample_value("frontier_review_test_widgets_total")
    assert first_widgets == 1
    assert isinstance(first.metrics, ServiceMetrics) and first.metrics is not second.metrics
    assert first.metrics.registry is not second.metrics.registry


def test_a_service_metric_is_named_under_the_systems_prefix(settings: RuntimeSettings) -> None:
    service = Service(counter_settings(settings, "named", "named"))
    service.metrics.gauge("frontier_review_test_depth", "Depth.").set(3)
    service.metrics.gauge("test_height", "Height.").set(4)
    registry = service.metrics.registry
    assert registry.get_sample_value("frontier_review_test_depth") == 3
    assert registry.get_sample_value("frontier_review_test_height") == 4
