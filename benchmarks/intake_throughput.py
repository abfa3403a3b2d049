"""Intake throughput: signed submissions verified, stored, decided and published.

    .venv/bin/python -m benchmarks.intake_throughput [--messages 2000] [--rate 100]
        [--paced-seconds 10] [--in-process]

Needs the local stack (deploy/stack.sh up). Three runs on one broker, in one
invocation:

1. raw: the platform's baseline (benchmarks.common.raw_baseline), aiokafka
   produce -> consume of records as large as a signed submission;
2. intake, burst: N pre-signed SubmissionFiled produced at once to a fresh
   lab.submissions stand-in; intake (``python -m services.intake``, its own
   process as deployed, or ``--in-process``) verifies each Ed25519 signature
   over the RFC 8785 form, checks key, skew and nonce, stores the submission
   and its review window, decides, and its relay publishes SubmissionAccepted;
   throughput = N / (first send -> last decision received);
3. intake, paced: ``--rate`` submissions/s for ``--paced-seconds``: the
   publish -> decision latency when intake is not saturated.

Latency is publish (send call) -> the decision received by a read_committed
consumer. Signing is the lab's cost and happens before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.common import BENCH_PREFIX, HEADER, Run, machine, raw_baseline
from contracts import encode
from services.intake.app import SCHEMA, build_service
from services.intake.settings import IntakeSettings
from services.labclient import LabClient, generate_key
from services.runtime.database import connect
from services.runtime.topics import ensure_topics, planned_topics
from services.trust import registry
from services.trust.principals import LAB, PrincipalKey

MANIFEST = Path(__file__).resolve().parents[1] / "services/labclient/examples/submission.yaml"
LAB_ID, KEY_ID = "bench-lab", "bench-key"


def signed_batch(client: LabClient, count: int) -> list[tuple[str, bytes]]:
    """``count`` signed SubmissionFiled records (key, value), each with its own id."""
    template = yaml.safe_load(MANIFEST.read_text()) | {"lab_id": LAB_ID}
    # A lab may only name its own secrets (intake refuses others: credential_not_owned).
    template["evaluation_access"]["credential_ref"] = f"labs/{LAB_ID}/eval-api-key"
    records = []
    for _ in range(count):
        event = client.envelope(client.submission(template | {"submission_id": str(uuid.uuid4())}))
        records.append((event.subject, encode(event)))
    return records


async def prepare(settings: IntakeSettings, client: LabClient) -> None:
    now = datetime.now(UTC)
    async with connect(settings, SCHEMA) as conn:
        assert await registry.register(conn, LAB, LAB_ID, "Benchmark Lab", now) is None
        assert client.key is not None
        public = client.key.public_key().public_bytes_raw()
        key = PrincipalKey(LAB.name, LAB_ID, KEY_ID, public, now, None, None)
        assert await registry.add_key(conn, LAB, key, now) is None


@contextlib.asynccontextmanager
async def running_intake(settings: IntakeSettings, in_process: bool) -> AsyncIterator[None]:
    if in_process:
        service = build_service(settings)
        await service.start()
        try:
            yield
        finally:
            await service.stop()
        return
    env = os.environ | {
        "FR_SERVICE_NAME": settings.service_name,
        "FR_DB_SCHEMA": settings.db_schema,
        "FR_TOPIC_PREFIX": settings.topic_prefix,
        "FR_HTTP_PORT": "none",
        "FR_INTAKE_ENDPOINT_ALLOWLIST": json.dumps(settings.intake_endpoint_allowlist),
        "FR_LOG_LEVEL": "WARNING",
        "FR_OTEL_EXPORTER": "none",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.intake", env=env)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


class Decisions:
    """Receive times of the decisions on the events topic, by submission id."""

    def __init__(self, settings: IntakeSettings, topic: str) -> None:
        self.received: dict[str, float] = {}
        self.consumer = AIOKafkaConsumer(
            topic,
            **settings.kafka_options(),
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value or b"{}")
                    if not str(event.get("type", "")).endswith(".SubmissionAccepted"):
                        # A benchmark that measured refusals would measure the wrong thing.
                        raise RuntimeError(f"intake did not accept: {event.get('data')}")
                    self.received.setdefault(str(event["data"]["submission_id"]), now)

    async def wait_for(self, ids: list[str], timeout: float = 600.0) -> float:
        """Wait until every id has a decision; returns the last receive time."""
        deadline = time.monotonic() + timeout
        while not all(i in self.received for i in ids):
            if self._task is not None and self._task.done():
                self._task.result()  # surfaces why the reader stopped
            if time.monotonic() > deadline:
                missing = sum(i not in self.received for i in ids)
                raise TimeoutError(f"{missing} of {len(ids)} decisions missing")
            await asyncio.sleep(0.05)
        return max(self.received[i] for i in ids)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def produce(
    producer: AIOKafkaProducer, topic: str, records: list[tuple[str, bytes]], rate: float | None
) -> dict[str, float]:
    """Send ``records`` (as fast as possible, or at ``rate`` per second); returns send times."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n, (key, value) in enumerate(records):
        if rate is not None:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        sent[key] = time.time()
        await producer.send(topic, value=value, key=key.encode())
    await producer.flush()
    return sent


def run_of(name: str, sent: dict[str, float], decided: Decisions, last: float) -> Run:
    latencies = [(decided.received[key] - at) * 1000 for key, at in sent.items()]
    return Run(name, len(sent), last - min(sent.values()), latencies)


async def main(messages: int, rate: float, paced_seconds: float, in_process: bool) -> None:
    suffix = uuid.uuid4().hex[:8]
    base = IntakeSettings(otel_exporter="none", log_level="WARNING", topic_prefix=BENCH_PREFIX)
    client = LabClient(lab_id=LAB_ID, key_id=KEY_ID, key=generate_key())
    burst = signed_batch(client, messages)
    size = len(burst[0][1])

    def raw_record(i: int) -> tuple[bytes, bytes]:
        key = f"submission-{i % 64}"
        value = json.dumps({"data": {"sent": time.time(), "padding": "x" * (size - 60)}})
        return key.encode(), value.encode()

    print(f"machine: {machine()}")
    where = "in-process" if in_process else "as its own process"
    print(f"signed SubmissionFiled record: {size} bytes; intake {where}\n")
    baseline = await raw_baseline(base, raw_record, messages)

    settings = base.model_copy(
        update={
            "service_name": f"bench-intake-{suffix}",
            "db_schema": f"bench_intake_{suffix}",
            "topic_prefix": f"{BENCH_PREFIX}{suffix}.",
            "http_port": None,
            # The example manifest's endpoint is not a real host: exempt from resolution.
            "intake_endpoint_allowlist": ["eval.example-lab.test:443"],
        }
    )
    await ensure_topics(
        settings,
        [
            p
            for p in planned_topics(settings.topic_prefix)
            if "submissions" in p.name or "intake.events" in p.name
        ],
    )
    await prepare(settings, client)
    decisions = Decisions(settings, settings.topic("intake.events"))
    producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True, acks="all")
    await decisions.start()
    await producer.start()
    topic = settings.topic("lab.submissions")
    try:
        async with running_intake(settings, in_process):
            warmup = signed_batch(client, 20)  # group joined, relay elected, caches warm
            await produce(producer, topic, warmup, None)
            await decisions.wait_for([k for k, _ in warmup], timeout=120)

            sent = await produce(producer, topic, burst, None)
            last = await decisions.wait_for(list(sent))
            burst_run = run_of(
                "intake burst: verify, store, decide, publish", sent, decisions, last
            )

            paced = signed_batch(client, int(rate * paced_seconds))
            sent = await produce(producer, topic, paced, rate)
            last = await decisions.wait_for(list(sent))
            paced_run = run_of(f"intake paced at {rate:g}/s", sent, decisions, last)
    finally:
        await producer.stop()
        await decisions.stop()
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        await conn.close()

    print(HEADER)
    print(baseline.row())
    print(burst_run.row(baseline))
    print(paced_run.row(baseline))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="paced run: submissions/s")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--in-process", action="store_true", help="run intake in this process")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rate, args.paced_seconds, args.in_process))
