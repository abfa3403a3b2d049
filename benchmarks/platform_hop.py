"""Platform benchmark: the runtime's hop against raw aiokafka and the fair loop, one run.

    .venv/bin/python -m benchmarks.platform_hop [--messages 1000 4000 8000] [--rate 200]
        [--paced-messages 2000] [--profile out.prof]

Three kinds of run on one broker, in one process, in the same invocation:

- raw: aiokafka, idempotent producer (acks=all) -> plain consumer: the physics;
- fair: benchmarks/fair_loop.py, a hand-written loop with the runtime's guarantees
  (one transaction of three set-based statements per batch, offsets after it, a
  Kafka transaction with a checkpoint): the fair ceiling;
- hop: a runtime Service consumes the records (decode, inbox claim, one state row
  written by a handler, the outbox row from ``ctx.publish_to``, in one transaction
  per run), its relay publishes them in Kafka transactions, and a read_committed
  consumer receives them; with tracing on (spans exported as JSON lines, like
  ``FR_OTEL_EXPORTER=jsonl``) and off (not sampled).

Latency is send -> arrival at the final consumer. Bursts show throughput as the
backlog grows; a paced run below capacity shows what one record pays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import asyncpg

from benchmarks.common import (
    BENCH_PREFIX,
    HEADER,
    Run,
    drain,
    fresh_topic,
    machine,
    produce_paced,
    raw_baseline,
    record_results,
)
from benchmarks.fair_loop import main_loop
from contracts import Event, Topic, encode, make_event
from services.runtime import Context, RuntimeSettings, Service
from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.topics import TopicPlan, ensure_topics

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


async def drop(settings: RuntimeSettings, schema: str) -> None:
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def measure(
    settings: RuntimeSettings, name: str, messages: int, rate: float | None, start: object
) -> tuple[Run, str]:
    """Start the forwarder (``start(source, sink, schema)``), send, drain; one Run."""
    source, sink = await fresh_topic(settings, "in"), await fresh_topic(settings, "out")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    stop = await start(source, sink, schema)  # type: ignore[operator]
    try:
        ready = asyncio.Event()
        consumer = asyncio.create_task(drain(settings, sink, messages, ready, committed_only=True))
        await ready.wait()
        await asyncio.sleep(3.0)  # both consumer groups assigned before the clock starts
        started = await produce_paced(settings, source, tick, messages, rate)
        latencies, ended = await consumer
    finally:
        await stop()
        await drop(settings, schema)
    pace = f" at {rate:.0f}/s" if rate else ""
    return Run(f"{name}{pace}", messages, ended - started, latencies), schema


def hop_starter(settings: RuntimeSettings, traced: bool, trace_file: Path) -> object:
    async def start(source: str, sink: str, schema: str) -> object:
        config = settings.model_copy(
            update={
                "service_name": f"bench-hop-{uuid.uuid4().hex[:6]}",
                "db_schema": schema,
                "otel_exporter": "jsonl" if traced else "none",
                "otel_file": trace_file,
                "otel_sample_ratio": 1.0 if traced else 0.0,
            }
        )
        service = Service(config, migrations=[MIGRATIONS])

        async def forward(ctx: Context, data: Tick) -> None:
            await ctx.conn.execute(
                "INSERT INTO ticks (event_id, seq) VALUES ($1, $2)", ctx.event.id, data.seq
            )
            ctx.publish_to(sink, data, subject=data.key)

        service.consume(
            Topic(name=source, producer="bench", key="key", events=(Tick,)), {Tick: forward}
        )
        await service.start()
        return service.stop

    return start


def fair_starter(settings: RuntimeSettings, messages: int) -> object:
    async def start(source: str, sink: str, schema: str) -> object:
        task = await main_loop(settings, source, sink, messages, schema)

        async def stop() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)

        return stop

    return start


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)
        print(f"profile written to {path}")


async def main(sizes: list[int], rate: float, paced_messages: int, profile: Path | None) -> None:
    settings = RuntimeSettings(
        relay_poll_interval_s=1.0, log_level="WARNING", topic_prefix=BENCH_PREFIX
    )
    trace_file = Path(tempfile.mkdtemp()) / "bench-traces.jsonl"
    # The relays' and the fair loop's checkpoint partition (a fresh stack has none).
    checkpoint = TopicPlan(settings.topic(CHECKPOINT_TOPIC), 1, {"cleanup.policy": "compact"})
    await ensure_topics(settings, [checkpoint])
    print(f"machine: {machine()}\n")
    print(HEADER)
    figures: dict[str, float | int | str] = {}
    for messages in sizes:
        raw = await raw_baseline(settings, tick, messages)
        fair, _ = await measure(
            settings, "fair loop", messages, None, fair_starter(settings, messages)
        )
        with profiled(profile if messages == max(sizes) else None):
            hop, _ = await measure(
                settings,
                "runtime hop, tracing on",
                messages,
                None,
                hop_starter(settings, True, trace_file),
            )
        hop_off, _ = await measure(
            settings,
            "runtime hop, tracing off",
            messages,
            None,
            hop_starter(settings, False, trace_file),
        )
        for run in (raw, fair, hop, hop_off):
            print(
                run.row(raw if run is not raw else None)
                + f" {run.throughput / fair.throughput:.2f}x fair |"
            )
        figures |= {
            f"burst_{messages}_raw_msgs_per_s": round(raw.throughput),
            f"burst_{messages}_fair_msgs_per_s": round(fair.throughput),
            f"burst_{messages}_hop_traced_msgs_per_s": round(hop.throughput),
            f"burst_{messages}_hop_untraced_msgs_per_s": round(hop_off.throughput),
            f"burst_{messages}_fair_to_raw_ratio": round(fair.throughput / raw.throughput, 3),
            f"burst_{messages}_hop_to_fair_ratio": round(hop.throughput / fair.throughput, 3),
            f"burst_{messages}_hop_untraced_to_fair_ratio": round(
                hop_off.throughput / fair.throughput, 3
            ),
        }
    # Paced below capacity: the latency one event pays for the guarantees.
    raw = await raw_baseline(settings, tick, paced_messages, rate)
    hop, _ = await measure(
        settings,
        "runtime hop, tracing on",
        paced_messages,
        rate,
        hop_starter(settings, True, trace_file),
    )
    print(raw.row())
    print(hop.row(raw))
    largest = max(sizes)
    figures |= {
        "hop_to_fair_ratio": figures[f"burst_{largest}_hop_to_fair_ratio"],
        "hop_untraced_to_fair_ratio": figures[f"burst_{largest}_hop_untraced_to_fair_ratio"],
        "paced_rate_per_s": rate,
        "paced_raw_p50_ms": round(raw.percentile(50), 2),
        "paced_raw_p99_ms": round(raw.percentile(99), 2),
        "paced_hop_p50_ms": round(hop.percentile(50), 2),
        "paced_hop_p99_ms": round(hop.percentile(99), 2),
        "paced_hop_max_ms": round(max(hop.latencies_ms), 2),
    }
    record_results("platform_hop", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1000, 4000, 8000])
    parser.add_argument("--rate", type=float, default=200.0, help="paced run: records/s")
    parser.add_argument("--paced-messages", type=int, default=2000)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile of the largest hop")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rate, args.paced_messages, args.profile))
