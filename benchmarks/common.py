"""Shared pieces of the benchmarks: percentiles, the machine, the raw baseline."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, dlq_plan, ensure_topics

RESULTS_JSON = Path(__file__).parent / "results.json"
# Benchmarks connect as the test harness's principal, whose ACLs cover ``test.``: every
# Kafka name of a benchmark run is under this prefix.
BENCH_PREFIX = "test.bench."


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: with 12 values p99 is the largest."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass(frozen=True)
class Run:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]
    # CPU time of this process (every thread) over the run: the benchmark's own producer
    # and consumer included, the broker's and the database's not. Less noisy than
    # throughput on a shared machine.
    cpu_seconds: float = 0.0

    @property
    def cpu_ms_per_record(self) -> float:
        return self.cpu_seconds / self.messages * 1000

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def row(self, baseline: Run | None = None) -> str:
        ratio = f"{self.throughput / baseline.throughput:.3f}" if baseline else "1 (baseline)"
        return (
            f"| {self.name} | {self.messages} | {self.throughput:,.0f} | {ratio} | "
            f"{self.percentile(50):.1f} | {self.percentile(99):.1f} |"
        )


HEADER = (
    "| run | messages | msg/s | throughput ratio to raw | p50 ms | p99 ms |\n"
    "|---|---|---|---|---|---|"
)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


async def fresh_topic(settings: RuntimeSettings, prefix: str, partitions: int = 6) -> str:
    name = settings.topic(f"bench.{prefix}.{uuid.uuid4().hex[:8]}")
    await ensure_topics(settings, [TopicPlan(name, partitions), dlq_plan(f"{name}.dlq")])
    return name


def record_results(benchmark: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` (a key per figure) into benchmarks/results.json under
    ``benchmark``, with the machine and the date."""
    results: dict[str, Any] = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    results[benchmark] = {"machine": machine(), **figures}
    RESULTS_JSON.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def stamp(value: bytes) -> float:
    """The send time (epoch seconds) a benchmark CloudEvent carries in ``data.sent``."""
    sent: float = json.loads(value)["data"]["sent"]
    return sent


async def drain(
    settings: RuntimeSettings,
    topic: str,
    expected: int,
    ready: asyncio.Event,
    *,
    committed_only: bool,
) -> tuple[list[float], float]:
    """Consume ``expected`` records; returns per-record latency (ms) and the end time."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_options(),
        group_id=settings.topic(f"bench-{uuid.uuid4().hex[:6]}"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    ready.set()
    latencies: list[float] = []
    try:
        while len(latencies) < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.time()
            for records in batch.values():
                latencies += [(now - stamp(r.value or b"")) * 1000 for r in records]
    finally:
        await consumer.stop()
    return latencies, time.perf_counter()


Make = Callable[[int], tuple[bytes, bytes]]


async def produce_paced(
    settings: RuntimeSettings, topic: str, make: Make, messages: int, rate: float | None = None
) -> float:
    """Produce ``messages`` records (a burst, or ``rate`` per second) with the
    services' producer settings (idempotent, acks=all); returns the start time.
    Each record is built when it is sent, so its ``sent`` stamp is true."""
    producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True, acks="all")
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(messages):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            key, value = make(i)
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return started


async def raw_baseline(
    settings: RuntimeSettings, make: Make, messages: int, rate: float | None = None
) -> Run:
    """Raw aiokafka produce -> consume on the same broker: the physical baseline."""
    topic = await fresh_topic(settings, "raw")
    ready = asyncio.Event()
    consumer = asyncio.create_task(drain(settings, topic, messages, ready, committed_only=False))
    await ready.wait()
    await asyncio.sleep(1.0)  # let the group assignment settle before the clock starts
    cpu = time.process_time()
    started = await produce_paced(settings, topic, make, messages, rate)
    latencies, ended = await consumer
    pace = f" at {rate:.0f}/s" if rate else ""
    name = f"raw aiokafka produce -> consume{pace}"
    return Run(name, messages, ended - started, latencies, time.process_time() - cpu)
