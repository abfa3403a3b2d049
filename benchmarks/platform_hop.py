"""Platform benchmark: the runtime's hop against raw aiokafka on the same broker.

    .venv/bin/python -m benchmarks.platform_hop [--messages 1000 4000 8000] [--rate 200]

Baseline: raw aiokafka, idempotent producer (acks=all) -> consumer.
Hop: the same records consumed by a runtime Service: decode + inbox claim +
a state row + an outbox row in one Postgres transaction, offset commit after
it, then the relay publishes the outbox in Kafka transactions, and a
read_committed consumer receives the result. Latency is send -> arrival.
Both runs share one broker and one process, in the same invocation, so the
ratio is what the guarantees cost on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import ClassVar

import asyncpg

from benchmarks.common import HEADER, Run, drain, fresh_topic, machine, produce_paced, raw_baseline
from contracts import Event, encode, make_event
from services.runtime.consumer import Delivery
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings

MIGRATIONS = Path(__file__).parent / "sql"


class Tick(Event):
    TYPE: ClassVar[str] = "bench.Tick"
    key: str
    seq: int
    sent: float
    padding: str = ""


def tick(i: int, keys: int = 64) -> tuple[bytes, bytes]:
    key = f"submission-{i % keys}"
    data = Tick(key=key, seq=i, sent=time.time(), padding="x" * 512)
    return key.encode(), encode(make_event(data, source="/bench", subject=key))


async def forward(delivery: Delivery, out_topic: str) -> None:
    data = delivery.event.data
    assert isinstance(data, Tick)
    await delivery.conn.execute(
        "INSERT INTO ticks (event_id, seq) VALUES ($1, $2)", delivery.event.id, data.seq
    )
    await delivery.outbox.publish(out_topic, data, subject=data.key)


async def runtime_hop(settings: RuntimeSettings, messages: int, rate: float | None = None) -> Run:
    source, sink = (
        await fresh_topic(settings.kafka_bootstrap, "in"),
        await fresh_topic(settings.kafka_bootstrap, "out"),
    )
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    service = Service("bench-hop", settings=settings, schema=schema, migrations=MIGRATIONS)

    async def handle(delivery: Delivery) -> None:
        await forward(delivery, sink)

    service.consume(
        source, handle, event_types={Tick.TYPE: Tick}, group=f"bench-hop-{uuid.uuid4().hex[:6]}"
    )
    await service.start()
    try:
        ready = asyncio.Event()
        consumer = asyncio.create_task(
            drain(settings.kafka_bootstrap, sink, messages, ready, committed_only=True)
        )
        await ready.wait()
        await asyncio.sleep(3.0)  # both consumer groups assigned before the clock starts
        started = await produce_paced(settings.kafka_bootstrap, source, tick, messages, rate)
        latencies, ended = await consumer
    finally:
        await service.stop()
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    pace = f" at {rate:.0f}/s" if rate else ""
    return Run(
        f"runtime hop{pace}: consume -> PG tx (inbox+state+outbox) -> relay -> consume",
        messages,
        ended - started,
        latencies,
    )


async def main(sizes: list[int], rate: float, paced_messages: int) -> None:
    settings = RuntimeSettings(otel_exporter="none", relay_poll_interval_s=0.5)
    print(f"machine: {machine()}\n")
    print(HEADER)
    # Bursts: throughput as the backlog grows (latency there is queueing).
    for messages in sizes:
        baseline = await raw_baseline(settings.kafka_bootstrap, tick, messages)
        hop = await runtime_hop(settings, messages)
        print(baseline.row())
        print(hop.row(baseline))
    # Paced below capacity: the latency one event pays for the guarantees.
    baseline = await raw_baseline(settings.kafka_bootstrap, tick, paced_messages, rate)
    hop = await runtime_hop(settings, paced_messages, rate)
    print(baseline.row())
    print(hop.row(baseline))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1000, 4000, 8000])
    parser.add_argument("--rate", type=float, default=200.0, help="paced run: records/s")
    parser.add_argument("--paced-messages", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rate, args.paced_messages))
