"""Platform benchmark: the runtime's hop against raw aiokafka and the fair loop, one run.

    .venv/bin/python -m benchmarks.platform_hop [--write] [--messages 1000 4000 8000]
        [--rate 200] [--paced-messages 2000] [--profile out.prof]

Three kinds of run on one broker, in one process, in the same invocation:

- raw: aiokafka, idempotent producer (acks=all) -> plain consumer: the physics;
- fair: benchmarks/fair_loop.py, a hand-written loop with the runtime's guarantees
  (one transaction of three set-based statements per batch, offsets after it, a
  Kafka transaction with a checkpoint): the fair ceiling;
- hop: a runtime Service consumes the records (decode, inbox claim, one state row
  written by a handler with ``ctx.defer``, the outbox row from ``ctx.publish_to``, in
  one transaction per run), its relay publishes them in Kafka transactions, and a
  read_committed consumer receives them; with tracing on (spans exported as JSON
  lines, like ``FR_OTEL_EXPORTER=jsonl``) and off (not sampled); at the largest burst
  also with the handler's write executed at once (``ctx.conn.execute``).

Paced runs below capacity (raw, fair loop and hop; first, while the machine is
quiet) show what one record pays; bursts show throughput as the backlog grows;
benchmarks/hop_legs.py times each leg of the guarantees on its own. Latency is
send -> arrival at the final consumer. ``--write`` puts the figures into
benchmarks/results.json (``platform_hop``) and the generated block of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from benchmarks.common import (
    BENCH_PREFIX,
    HEADER,
    RESULTS_JSON,
    Run,
    drain,
    fresh_topic,
    machine,
    percentile,
    produce_paced,
    raw_baseline,
    record_results,
)
from benchmarks.fair_loop import main_loop
from benchmarks.hop_legs import measure_legs, p99_key
from contracts import Event, Topic, encode, make_event
from services.runtime import Context, RuntimeSettings, Service
from services.runtime.relay import CHECKPOINT_TOPIC, OutboxRelay
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
        cpu = time.process_time()
        started = await produce_paced(settings, source, tick, messages, rate)
        latencies, ended = await consumer
        cpu = time.process_time() - cpu
    finally:
        await stop()
        await drop(settings, schema)
    pace = f" at {rate:.0f}/s" if rate else ""
    return Run(f"{name}{pace}", messages, ended - started, latencies, cpu), schema


class PacedTimings:
    """Where a paced record's time goes on the hop: from its send to its handler, and
    the relay's claims and transactions (the real methods, timed around)."""

    def __init__(self) -> None:
        self.to_handler_ms: list[float] = []
        self.claims_ms: list[float] = []
        self.transactions: list[tuple[float, int]] = []  # (ms, rows)

    @contextlib.contextmanager
    def timing_relay(self) -> Iterator[None]:
        send, claim = OutboxRelay._send, OutboxRelay._claim
        timings = self

        async def timed_send(
            relay: OutboxRelay, producer: Any, batch: int, rows: Any, lead: Any
        ) -> None:
            started = time.perf_counter()
            await send(relay, producer, batch, rows, lead)
            timings.transactions.append(((time.perf_counter() - started) * 1000, len(rows)))

        async def timed_claim(relay: OutboxRelay, lead: Any, pending: Any) -> Any:
            started = time.perf_counter()
            claimed = await claim(relay, lead, pending)
            timings.claims_ms.append((time.perf_counter() - started) * 1000)
            return claimed

        OutboxRelay._send, OutboxRelay._claim = timed_send, timed_claim  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            OutboxRelay._send, OutboxRelay._claim = send, claim  # type: ignore[method-assign]

    def figures(self) -> dict[str, float]:
        def pct(values: list[float], p: float) -> float:
            return round(percentile(values or [0.0], p), 2)

        txn = [ms for ms, _ in self.transactions]
        rows = [n for _, n in self.transactions]
        return {
            "paced_hop_to_handler_p50_ms": pct(self.to_handler_ms, 50),
            "paced_hop_to_handler_p99_ms": pct(self.to_handler_ms, 99),
            "paced_relay_claim_p50_ms": pct(self.claims_ms, 50),
            "paced_relay_txn_p50_ms": pct(txn, 50),
            "paced_relay_txn_p99_ms": pct(txn, 99),
            "paced_relay_rows_per_txn": round(sum(rows) / max(1, len(rows)), 2),
        }


def hop_starter(
    settings: RuntimeSettings,
    traced: bool,
    trace_file: Path,
    deferred: bool = True,
    timings: PacedTimings | None = None,
) -> object:
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
            if timings is not None:
                timings.to_handler_ms.append((time.time() - data.sent) * 1000)
            write = ctx.defer if deferred else ctx.conn.execute
            await write("INSERT INTO ticks (event_id, seq) VALUES ($1, $2)", ctx.event.id, data.seq)
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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


async def main(
    sizes: list[int], rate: float, paced_messages: int, profile: Path | None, write: bool
) -> None:
    settings = RuntimeSettings(
        relay_poll_interval_s=1.0, log_level="WARNING", topic_prefix=BENCH_PREFIX
    )
    trace_file = Path(tempfile.mkdtemp()) / "bench-traces.jsonl"
    # The relays' and the fair loop's checkpoint partition (a fresh stack has none).
    checkpoint = TopicPlan(settings.topic(CHECKPOINT_TOPIC), 1, {"cleanup.policy": "compact"})
    await ensure_topics(settings, [checkpoint])
    load_before = load()
    print(f"machine: {machine()}; load average (1/5/15 min) {load_before}\n")
    print(HEADER.replace("|\n", "| ratio to fair | CPU ms/record |\n", 1) + "---|---|")
    figures: dict[str, float | int | str] = {"load_average_before": load_before}
    rows: list[str] = []
    largest = max(sizes)

    paced_rows: list[str] = []

    def show(run: Run, baseline: Run | None, fair: Run | None, into: list[str] = rows) -> None:
        ratio = f" {run.throughput / fair.throughput:.2f} |" if fair else " |"
        ratio += f" {run.cpu_ms_per_record:.3f} |"
        into.append(run.row(baseline) + ratio)
        print(into[-1])

    # Paced below capacity first, on the machine as quiet as it gets: the latency one
    # event pays, with and without the guarantees, and the floor's legs right after.
    # (Measured after the bursts, the paced figures carried their aftermath: the fair
    # loop's p99 was 32 ms run alone and 237 ms after them, in the same hour.)
    raw = await raw_baseline(settings, tick, paced_messages, rate)
    fair, _ = await measure(
        settings, "fair loop", paced_messages, rate, fair_starter(settings, paced_messages)
    )
    timings = PacedTimings()
    with timings.timing_relay():
        hop, _ = await measure(
            settings,
            "runtime hop, tracing on",
            paced_messages,
            rate,
            hop_starter(settings, True, trace_file, timings=timings),
        )
    for run in (raw, fair, hop):
        show(run, raw if run is not raw else None, None, paced_rows)
    legs = await measure_legs(settings)
    crossing = round(raw.percentile(50), 2)
    legs["floor_raw_crossing_ms"] = crossing
    legs["floor_raw_crossing_p99_ms"] = round(raw.percentile(99), 2)
    legs["floor_total_ms"] = round(legs["floor_legs_ms"] + crossing, 2)
    figures |= timings.figures() | {
        "paced_rate_per_s": rate,
        "paced_raw_p50_ms": round(raw.percentile(50), 2),
        "paced_raw_p99_ms": round(raw.percentile(99), 2),
        "paced_fair_p50_ms": round(fair.percentile(50), 2),
        "paced_fair_p99_ms": round(fair.percentile(99), 2),
        "paced_hop_p50_ms": round(hop.percentile(50), 2),
        "paced_hop_p99_ms": round(hop.percentile(99), 2),
        "paced_hop_max_ms": round(max(hop.latencies_ms), 2),
        "paced_p50_ms": round(hop.percentile(50), 2),
        "paced_p99_ms": round(hop.percentile(99), 2),
        **legs,
    }
    print("\nwhere a paced record's time goes on the hop (ms):")
    for name, value in timings.figures().items():
        print(f"  {name}: {value}")
    print("\nthe floor, leg by leg (medians, and p99 where named, ms):")
    for name, value in legs.items():
        print(f"  {name}: {value}")
    for messages in sizes:
        raw = await raw_baseline(settings, tick, messages)
        fair, _ = await measure(
            settings, "fair loop", messages, None, fair_starter(settings, messages)
        )
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
            show(run, raw if run is not raw else None, fair)
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
            f"burst_{messages}_raw_cpu_ms_per_record": round(raw.cpu_ms_per_record, 3),
            f"burst_{messages}_fair_cpu_ms_per_record": round(fair.cpu_ms_per_record, 3),
            f"burst_{messages}_hop_traced_cpu_ms_per_record": round(hop.cpu_ms_per_record, 3),
            f"burst_{messages}_hop_untraced_cpu_ms_per_record": round(hop_off.cpu_ms_per_record, 3),
        }
        if messages == largest:
            # The handler's state write at once, not deferred: what ctx.defer is worth.
            immediate, _ = await measure(
                settings,
                "runtime hop, tracing on, handler writes at once",
                messages,
                None,
                hop_starter(settings, True, trace_file, deferred=False),
            )
            show(immediate, raw, fair)
            figures[f"burst_{messages}_hop_traced_immediate_msgs_per_s"] = round(
                immediate.throughput
            )
            figures[f"burst_{messages}_hop_traced_immediate_to_fair_ratio"] = round(
                immediate.throughput / fair.throughput, 3
            )
            figures[f"burst_{messages}_hop_traced_immediate_cpu_ms_per_record"] = round(
                immediate.cpu_ms_per_record, 3
            )
    figures |= {
        "hop_to_fair_ratio": figures[f"burst_{largest}_hop_to_fair_ratio"],
        "hop_untraced_to_fair_ratio": figures[f"burst_{largest}_hop_untraced_to_fair_ratio"],
        "hop_to_fair_ratio_min": min(float(figures[f"burst_{m}_hop_to_fair_ratio"]) for m in sizes),
        "load_average_after": load(),
    }
    print(f"\nload average (1/5/15 min) after: {figures['load_average_after']}")
    if profile is not None:  # an extra run, not counted: cProfile slows what it watches
        with profiled(profile):
            await measure(
                settings,
                "profiled",
                largest,
                None,
                hop_starter(settings, True, trace_file),
            )
    if write:
        record_results("platform_hop", figures)
        write_block(rows + paced_rows, figures)
        print(f"written: {RESULTS_JSON} (platform_hop) and {RESULTS_MD}")


RESULTS_MD = Path(__file__).parent / "RESULTS.md"
BEGIN = "<!-- platform_hop: generated by python -m benchmarks.platform_hop --write -->"
END = "<!-- platform_hop: end -->"
LEGS = [
    ("floor_raw_crossing_ms", "the record into the service (raw produce -> consume, paced)"),
    ("floor_pg_commit_ms", "the service's transaction commit (fsync, synchronous_commit=on)"),
    ("floor_notify_wakeup_ms", "NOTIFY -> the relay's listener (beyond its round trip)"),
    ("floor_pg_round_trip_ms", "the relay's claim (one Postgres round trip)"),
    ("floor_kafka_first_produce_ms", "first produce of a transaction (AddPartitionsToTxn)"),
    ("floor_kafka_txn_offsets_ms", "the checkpoint (AddOffsetsToTxn + TxnOffsetCommit)"),
    ("floor_kafka_end_txn_ms", "EndTxn"),
    ("floor_kafka_commit_to_read_committed_ms", "commit -> a read_committed fetch has it"),
    ("floor_total_ms", "**one record alone, the legs summed (medians)**"),
    ("floor_group_offset_commit_ms", "(off the path) a consumer group's offset commit"),
    ("floor_kafka_txn_back_to_back_ms", "a whole relay transaction begun right after another"),
]
PACED = [
    ("paced_hop_to_handler_p50_ms", "send -> the service's handler, p50"),
    ("paced_hop_to_handler_p99_ms", "send -> the service's handler, p99"),
    ("paced_relay_claim_p50_ms", "the relay's claim, p50"),
    ("paced_relay_txn_p50_ms", "the relay's Kafka transaction, p50"),
    ("paced_relay_txn_p99_ms", "the relay's Kafka transaction, p99"),
    ("paced_relay_rows_per_txn", "records per relay transaction (mean)"),
]


def write_block(rows: list[str], f: dict[str, float | int | str]) -> None:
    """Replace the generated block of RESULTS.md with this run's tables."""
    header = HEADER.replace("|\n", "| ratio to fair | CPU ms/record |\n", 1) + "---|---|"
    floor = float(f["floor_total_ms"])
    lines = [
        BEGIN,
        f"Run of {machine()}; load average "
        f"(1/5/15 min) {f['load_average_before']} before, {f['load_average_after']} after.",
        "",
        header,
        *rows,
        "",
        "| leg of one record (benchmarks/hop_legs.py), timed alone | p50 ms | p99 ms |",
        "|---|---|---|",
        *(f"| {text} | {f[key]} | {f.get(p99_key(key), '')} |" for key, text in LEGS),
        "",
        f"| the paced hop ({f['paced_rate_per_s']:.0f}/s), measured in it | ms |",
        "|---|---|",
        *(f"| {text} | {f[key]} |" for key, text in PACED),
        "",
        "| target | figure | verdict |",
        "|---|---|---|",
        f"| burst >= 0.5x the fair loop, tracing on | {f['hop_to_fair_ratio_min']}x at worst, "
        f"{f['hop_to_fair_ratio']}x at {max(_sizes(f))} (off: "
        f"{f['hop_untraced_to_fair_ratio']}x) | "
        f"{'reached' if float(f['hop_to_fair_ratio_min']) >= 0.5 else 'not reached'} |",
        f"| paced p50 <= 5 ms | {f['paced_hop_p50_ms']} ms (fair loop "
        f"{f['paced_fair_p50_ms']}, raw {f['paced_raw_p50_ms']}; the legs alone "
        f"{floor}) | {_paced_verdict(f, 'p50', 5)} |",
        f"| paced p99 <= 25 ms | {f['paced_hop_p99_ms']} ms (fair loop "
        f"{f['paced_fair_p99_ms']}, raw {f['paced_raw_p99_ms']}) | "
        f"{_paced_verdict(f, 'p99', 25)} |",
        END,
    ]
    text = RESULTS_MD.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    RESULTS_MD.write_text(head + "\n".join(lines) + tail)


def _paced_verdict(f: dict[str, float | int | str], percentile: str, target: float) -> str:
    """A paced target is out of reach on this machine when the fair loop, the same
    guarantees hand-written with nothing else (the fair ceiling), misses it in the same
    run: the runtime's hop cannot be asked to beat it."""
    if float(f[f"paced_hop_{percentile}_ms"]) <= target:
        return "reached"
    fair = float(f[f"paced_fair_{percentile}_ms"])
    if fair > target:
        return f"out of reach here: the fair loop's own {percentile} is {fair} ms"
    return "not reached"


def _sizes(f: dict[str, float | int | str]) -> list[int]:
    return [
        int(k.split("_")[1]) for k in f if k.startswith("burst_") and k.endswith("_raw_msgs_per_s")
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1000, 4000, 8000])
    parser.add_argument("--rate", type=float, default=200.0, help="paced runs: records/s")
    parser.add_argument("--paced-messages", type=int, default=2000)
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile of an extra largest traced hop"
    )
    parser.add_argument(
        "--write", action="store_true", help="write results.json and RESULTS.md's block"
    )
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rate, args.paced_messages, args.profile, args.write))
