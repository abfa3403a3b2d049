"""What the Kafka trust boundary costs: raw aiokafka produce -> consume, and the
runtime's hop (benchmarks/platform_hop.py: consume, one transaction with inbox +
state + outbox, exactly-once relay, read_committed consumer), each over PLAINTEXT
(no authentication, no encryption) against SASL_SSL with SCRAM-SHA-512, on the
same broker, in one run.

The secured broker gets a PLAINTEXT listener for the measurement only:

    FR_KAFKA_PLAINTEXT_PORT=29094 bash deploy/stack.sh up   # (down first if running)
    eval "$(FR_KAFKA_PLAINTEXT_PORT=29094 bash deploy/stack.sh up)"
    .venv/bin/python -m benchmarks.kafka_security [--messages 10000] [--rounds 3]

The PLAINTEXT principal is User:ANONYMOUS, which holds no ACL: the benchmark (as
the operator) grants it what a benchmark needs on names under ``test.bench.``
(topics, consumer groups, the relay's transactional id) for the run and revokes
it after. The SASL_SSL side runs as the ``test`` principal on a topic under
``test.``. Both sides pass through the same authorizer; what differs is TLS,
SASL and SCRAM. Rounds alternate the two modes so drift on a shared 2-core
machine hits both; the ratio is taken per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn

from benchmarks.common import BENCH_PREFIX, machine, percentile
from benchmarks.platform_hop import hop_starter
from benchmarks.platform_hop import measure as measure_hop
from contracts.acl import Grant, Operation, PatternType, ResourceType
from services.runtime.kafka import KafkaSettings, aiokafka_options
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, ensure_topics

PARTITIONS = 6
VALUE_BYTES = 900  # about one CloudEvent of the pipeline
RESULTS_JSON = Path(__file__).with_name("kafka_security.json")


@dataclass(frozen=True)
class Measurement:
    mode: str
    kind: str  # "burst", "paced", "connect", "hop burst" or "hop paced"
    messages: int
    per_second: float
    p50_ms: float
    p99_ms: float


def record(i: int) -> tuple[bytes, bytes]:
    stamp = json.dumps({"sent": time.time(), "i": i}).encode()
    return f"k{i % 64}".encode(), stamp.ljust(VALUE_BYTES, b" ")


async def produce_consume(
    settings: KafkaSettings, topic: str, messages: int, rate: float | None
) -> tuple[float, list[float]]:
    """Records/s from the first send to the last arrival, and each record's latency."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolve now, before the clock starts
    producer = AIOKafkaProducer(**aiokafka_options(settings), enable_idempotence=True, acks="all")
    await producer.start()
    latencies: list[float] = []

    async def drain() -> None:
        while len(latencies) < messages:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.time()
            for records in batch.values():
                latencies.extend(
                    (now - json.loads(r.value or b"{}")["sent"]) * 1000 for r in records
                )

    draining = asyncio.create_task(drain())
    started = time.perf_counter()
    try:
        for i in range(messages):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            key, value = record(i)
            await producer.send(topic, value=value, key=key)
        await producer.flush()
        await asyncio.wait_for(draining, 120)
        elapsed = time.perf_counter() - started
    finally:
        draining.cancel()
        await producer.stop()
        await consumer.stop()
    return messages / elapsed, latencies


async def connect_times(settings: KafkaSettings, count: int) -> list[float]:
    """Milliseconds to open one authenticated connection (TCP, TLS, SASL/SCRAM)."""
    options = aiokafka_options(settings)
    host, port = options.pop("bootstrap_servers").rsplit(":", 1)
    times: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn = await create_conn(host, int(port), **options)
        times.append((time.perf_counter() - t0) * 1000)
        conn.close()
    return times


async def measure(
    modes: dict[str, tuple[KafkaSettings, str]], messages: int, rounds: int, rate: float
) -> list[Measurement]:
    """Each round runs a burst and a paced run in both modes, in alternating order."""
    results: list[Measurement] = []
    paced = min(messages, int(rate * 10))
    for round_ in range(rounds):
        order = list(modes.items()) if round_ % 2 == 0 else list(reversed(modes.items()))
        for kind, count, pace in (("burst", messages, None), ("paced", paced, rate)):
            for mode, (settings, topic) in order:
                per_second, latencies = await produce_consume(settings, topic, count, pace)
                results.append(
                    Measurement(
                        mode,
                        kind,
                        count,
                        per_second,
                        percentile(latencies, 50),
                        percentile(latencies, 99),
                    )
                )
                print(
                    f"  round {round_ + 1} {kind} {mode:9} {per_second:8,.0f}/s "
                    f"p50 {percentile(latencies, 50):6.1f} ms",
                    file=sys.stderr,
                )
    for mode, (settings, _) in modes.items():
        times = await connect_times(settings, 30)
        results.append(
            Measurement(
                mode,
                "connect",
                len(times),
                1000 / statistics.mean(times),
                percentile(times, 50),
                percentile(times, 99),
            )
        )
    return results


async def measure_hops(
    modes: dict[str, RuntimeSettings], messages: int, rounds: int, rate: float
) -> list[Measurement]:
    """The runtime hop (tracing off: the transport is what differs), a burst and a
    paced run per round in both modes, in alternating order."""
    results: list[Measurement] = []
    paced = min(messages, int(rate * 10))
    trace_file = Path("/dev/null")
    for round_ in range(rounds):
        order = list(modes.items()) if round_ % 2 == 0 else list(reversed(modes.items()))
        for kind, count, pace in (("hop burst", messages, None), ("hop paced", paced, rate)):
            for mode, settings in order:
                run, _ = await measure_hop(
                    settings, f"hop {mode}", count, pace, hop_starter(settings, False, trace_file)
                )
                results.append(
                    Measurement(
                        mode, kind, count, run.throughput, run.percentile(50), run.percentile(99)
                    )
                )
                print(
                    f"  round {round_ + 1} {kind} {mode:9} {run.throughput:8,.0f}/s "
                    f"p50 {run.percentile(50):6.1f} ms",
                    file=sys.stderr,
                )
    return results


def table(results: list[Measurement]) -> str:
    lines = [
        "| run | mode | messages | msg/s (connects/s) | ratio SASL_SSL / PLAINTEXT "
        "| p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    plain = [r for r in results if r.mode == "PLAINTEXT"]
    secured = [r for r in results if r.mode == "SASL_SSL"]
    for kind in ("burst", "paced", "connect", "hop burst", "hop paced"):
        of_kind = [r for r in plain if r.kind == kind], [r for r in secured if r.kind == kind]
        pairs = list(zip(*of_kind, strict=True))
        if not pairs:
            continue
        for n, (p, s) in enumerate(pairs, 1):
            label = f"{kind} {n}" if len(pairs) > 1 else kind
            for r, ratio in ((p, "1 (baseline)"), (s, f"{s.per_second / p.per_second:.3f}")):
                lines.append(
                    f"| {label} | {r.mode} | {r.messages} | {r.per_second:,.0f} | {ratio} | "
                    f"{r.p50_ms:.1f} | {r.p99_ms:.1f} |"
                )
    return "\n".join(lines)


def summary(results: list[Measurement]) -> dict[str, float]:
    def ratio(kind: str, field: str) -> list[float]:
        plain = [getattr(r, field) for r in results if r.mode == "PLAINTEXT" and r.kind == kind]
        secured = [getattr(r, field) for r in results if r.mode == "SASL_SSL" and r.kind == kind]
        return [s / p for p, s in zip(plain, secured, strict=True)]

    hops = {}
    if any(r.kind == "hop burst" for r in results):
        hops = {
            "hop_burst_throughput_ratio_median": statistics.median(
                ratio("hop burst", "per_second")
            ),
            "hop_paced_p50_ratio_median": statistics.median(ratio("hop paced", "p50_ms")),
            "hop_paced_p99_ratio_median": statistics.median(ratio("hop paced", "p99_ms")),
        }
    return hops | {
        "burst_throughput_ratio_median": statistics.median(ratio("burst", "per_second")),
        "paced_p50_ratio_median": statistics.median(ratio("paced", "p50_ms")),
        "paced_p99_ratio_median": statistics.median(ratio("paced", "p99_ms")),
        "connect_ms_p50_plaintext": next(
            r.p50_ms for r in results if r.mode == "PLAINTEXT" and r.kind == "connect"
        ),
        "connect_ms_p50_sasl_ssl": next(
            r.p50_ms for r in results if r.mode == "SASL_SSL" and r.kind == "connect"
        ),
    }


async def with_benchmark_topics(
    operator: KafkaSettings, run: Callable[[str, str], Awaitable[list[Measurement]]]
) -> list[Measurement]:
    """A topic per mode; ANONYMOUS may use only the plaintext one, only for this run."""
    suffix = uuid.uuid4().hex[:8]
    plain, secured = f"{BENCH_PREFIX}plaintext.{suffix}", f"{BENCH_PREFIX}sasl-ssl.{suffix}"
    checkpoint = TopicPlan(BENCH_PREFIX + CHECKPOINT_TOPIC, 1, {"cleanup.policy": "compact"})
    await ensure_topics(
        operator, [TopicPlan(plain, PARTITIONS), TopicPlan(secured, PARTITIONS), checkpoint]
    )
    anonymous = frozenset(
        Grant("User:ANONYMOUS", kind, BENCH_PREFIX, PatternType.PREFIXED, Operation.ALL)
        for kind in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
    )
    async with KafkaAdmin(operator) as admin:
        await admin.create_acls(anonymous)
    try:
        await asyncio.sleep(1.0)  # ACLs and leaders settle before the first run
        return await run(plain, secured)
    finally:
        async with KafkaAdmin(operator) as admin:
            await admin.delete_acls(anonymous)
        client = AIOKafkaAdminClient(**aiokafka_options(operator))
        await client.start()
        try:
            await client.delete_topics([plain, secured])
        finally:
            await client.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_security")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="records/s of the paced run")
    parser.add_argument("--hop-messages", type=int, default=4000, help="0: no hop runs")
    parser.add_argument("--hop-rate", type=float, default=200.0, help="records/s, paced hop")
    args = parser.parse_args(argv[1:])
    plaintext = os.environ.get("FR_KAFKA_PLAINTEXT_BOOTSTRAP")
    operator_file = os.environ.get("FR_KAFKA_OPERATOR_CREDENTIALS_FILE")
    if not plaintext or not operator_file:
        print(
            "needs the stack with a plaintext listener: "
            'eval "$(FR_KAFKA_PLAINTEXT_PORT=29094 bash deploy/stack.sh up)" (down first)',
            file=sys.stderr,
        )
        return 2
    secured = KafkaSettings()  # the shell's principal: the test harness
    operator = secured.model_copy(update={"kafka_credentials_file": Path(operator_file)})
    anonymous = KafkaSettings(
        kafka_bootstrap=plaintext,
        kafka_security_protocol="PLAINTEXT",
        kafka_credentials_file=None,
        kafka_username=None,
        kafka_password=None,
    )

    async def run(plain_topic: str, secured_topic: str) -> list[Measurement]:
        modes = {"PLAINTEXT": (anonymous, plain_topic), "SASL_SSL": (secured, secured_topic)}
        results = await measure(modes, args.messages, args.rounds, args.rate)
        if args.hop_messages:
            runtime = RuntimeSettings(
                relay_poll_interval_s=1.0, log_level="WARNING", topic_prefix=BENCH_PREFIX
            )
            hop_modes = {
                "PLAINTEXT": runtime.model_copy(update=dict(anonymous.model_dump())),
                "SASL_SSL": runtime,
            }
            results += await measure_hops(hop_modes, args.hop_messages, args.rounds, args.hop_rate)
        return results

    results = asyncio.run(with_benchmark_topics(operator, run))
    figures = summary(results)
    print(f"**Machine:** {machine()}\n")
    print(table(results))
    print()
    for key, value in figures.items():
        print(f"- {key}: {value:.3f}")
    RESULTS_JSON.write_text(
        json.dumps(
            {"machine": machine(), "figures": figures, "runs": [asdict(r) for r in results]},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
