"""The risk pipeline: FindingRecorded -> RiskAssessed -> EscalationRaised -> interim
RestrictionOrdered, and assessments per second for a burst of findings.

    .venv/bin/python -m benchmarks.risk_pipeline [--escalations 200] [--rate 20]
        [--burst 2000] [--in-process]

Needs the local stack (deploy/stack.sh up). In one invocation, on one broker:

1. raw, paced: the platform's baseline (benchmarks.common.raw_baseline), aiokafka
   produce -> consume of records as large as a FindingRecorded, at ``--rate``/s;
2. risk, paced (latency): ``--escalations`` submissions, each sent one critical cyber
   finding at ``--rate``/s; the risk service (``python -m services.risk``, its own
   process as deployed, or ``--in-process``) stores it, assesses the submission
   (critical), raises the escalation, orders the interim restriction, appends four
   signed audit entries and publishes the three events through its outbox in one
   transaction. Latency = the finding's send -> each event received by a
   read_committed consumer of risk.events;
3. raw, burst: ``--burst`` records at once;
4. risk, burst (throughput): ``--burst`` findings at once, one per submission, each a
   moderate cyber finding (an assessment that changes, no escalation): assessments/s =
   findings / (first send -> last RiskAssessed received).

Submissions are accepted (intake's SubmissionAccepted) before the clocks start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.common import BENCH_PREFIX, HEADER, Run, machine, raw_baseline, record_results
from contracts import encode, make_event
from contracts.events import FindingRecorded, SubmissionAccepted
from contracts.events.common import EvaluationMethod, RiskDomain
from contracts.registry import subject_for, topic_for
from services.risk import keys
from services.risk.app import build_service
from services.risk.settings import RiskSettings
from services.runtime.relay import CHECKPOINT_TOPIC
from services.runtime.topics import ensure_topics, planned_topics

RISK_TOPICS = (
    "intake.events",
    "evaluation.events",
    "reviewers.decisions",
    "access.events",
    "risk.events",
    "gov.findings",
    "gov.audit",
)
STAGES = ("RiskAssessed", "EscalationRaised", "RestrictionOrdered")


def accepted(submission_id: uuid.UUID) -> SubmissionAccepted:
    now = datetime.now(UTC)
    return SubmissionAccepted.model_validate(
        {
            "submission_id": submission_id,
            "lab_id": "bench-lab",
            "model_id": f"bench-lab/model-{submission_id.hex[:8]}@1.0.0",
            "model": {
                "name": "model",
                "version": "1.0.0",
                "family": "bench",
                "modalities": ["text"],
                "training_compute_flop": 3.2e26,
                "planned_release_date": "2027-01-01",
                "deployment_channels": ["api"],
            },
            "evaluation_access": {
                "endpoint": "https://models.bench-lab.example/v1",
                "api_model": "model",
                "credential_ref": "labs/bench-lab/eval-api-key",
            },
            "reason": "covered_by_compute",
            "detail": "training compute 3.2e26 FLOP >= 1e26 FLOP",
            "criteria_version": "2026-01",
            "requested_review_days": 30,
            "review_days": 30,
            "accepted_at": now,
            "deadline": now + timedelta(days=30),
            "filed_event_id": str(uuid.uuid4()),
        }
    )


def finding(submission_id: uuid.UUID, score: float) -> FindingRecorded:
    return FindingRecorded(
        finding_id=uuid.uuid4(),
        submission_id=submission_id,
        model_id=f"bench-lab/model-{submission_id.hex[:8]}@1.0.0",
        suite_id="cyber-ctf-proxy",
        suite_version="1.0.0",
        domain=RiskDomain.CYBER,
        capability="vulnerability-discovery",
        score=score,
        metric="accuracy",
        stderr=0.1,
        samples_total=3,
        samples_scored=3,
        method=EvaluationMethod.AUTOMATED,
        evaluator="agency",
        evidence_ref=f"inspect-logs/{submission_id}/cyber-ctf-proxy@1.0.0/attempt-1.eval",
        evidence_sha256="ab" * 32,
        recorded_at=datetime.now(UTC),
    )


def record(settings: RiskSettings, data: Any) -> tuple[str, bytes, bytes]:
    topic = topic_for(type(data))
    event = make_event(data, source=f"/frontier-review/{topic.producer}", subject=subject_for(data))
    return settings.topic(topic.name), event.subject.encode(), encode(event)


class Arrivals:
    """When each event type first arrived on risk.events, per submission."""

    def __init__(self, settings: RiskSettings) -> None:
        self.times: dict[tuple[str, str], float] = {}
        self.consumer = AIOKafkaConsumer(
            settings.topic("risk.events"),
            **settings.kafka_options(),
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self._task: asyncio.Task[None] | None = None
        self.exited: asyncio.Future[int] | None = None  # the service's process, if its own

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value or b"{}")
                    kind = str(event.get("type", "")).rsplit(".", 1)[-1]
                    self.times.setdefault((str(event.get("subject")), kind), now)

    async def wait(self, subjects: list[str], kind: str, timeout: float = 900.0) -> float:
        deadline = time.monotonic() + timeout
        while not all((s, kind) in self.times for s in subjects):
            if self._task is not None and self._task.done():
                self._task.result()
            if self.exited is not None and self.exited.done():
                raise RuntimeError(f"the risk service exited ({self.exited.result()})")
            if time.monotonic() > deadline:
                missing = sum((s, kind) not in self.times for s in subjects)
                raise TimeoutError(f"{missing} of {len(subjects)} {kind} missing")
            await asyncio.sleep(0.05)
        return max(self.times[(s, kind)] for s in subjects)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


@contextlib.asynccontextmanager
async def running_risk(
    settings: RiskSettings, in_process: bool
) -> AsyncIterator[asyncio.Future[int] | None]:
    """The service for the runs; yields a future that ends if its process exits."""
    if in_process:
        service = build_service(settings)
        await service.start()
        try:
            yield None
        finally:
            await service.stop()
        return
    env = os.environ | {
        "FR_SERVICE_NAME": settings.service_name,
        "FR_DB_SCHEMA": settings.db_schema,
        "FR_TOPIC_PREFIX": settings.topic_prefix,
        "FR_RISK_SERVICE_KEY_FILE": str(settings.risk_service_key_file),
        "FR_RISK_CHECKPOINT_INTERVAL_S": str(settings.risk_checkpoint_interval_s),
        "FR_LOG_LEVEL": "WARNING",
    }
    env.pop("FR_OTEL_EXPORTER", None)  # "none" would read as None (env_parse_none_str)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.risk", env=env)
    exited = asyncio.create_task(process.wait())
    try:
        yield exited
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await exited


async def reviews(settings: RiskSettings, count: int, timeout: float = 600.0) -> None:
    """Wait until the service has opened ``count`` reviews (SubmissionAccepted applied)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exists = await conn.fetchval("SELECT to_regclass($1)", f"{settings.db_schema}.reviews")
            if (
                exists
                and await conn.fetchval(f'SELECT count(*) FROM "{settings.db_schema}".reviews')
                >= count
            ):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the service did not open {count} reviews")
    finally:
        await conn.close()


def latency_row(run: Run, baseline: Run, rate: float) -> str:
    """A paced run's row: latency, with its ratio to the raw baseline's (p50, p99)."""
    p50, p99 = run.percentile(50), run.percentile(99)
    slower = (p50 / baseline.percentile(50), p99 / baseline.percentile(99))
    ratio = f"latency x{slower[0]:.0f} (p50), x{slower[1]:.0f} (p99)"
    return f"| {run.name} | {run.messages} | {rate:g} (paced) | {ratio} | {p50:.1f} | {p99:.1f} |"


async def send_all(
    producer: AIOKafkaProducer, records: list[tuple[str, bytes, bytes]], rate: float | None
) -> dict[str, float]:
    """Send ``records`` (at once, or ``rate``/s); returns each key's send time."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n, (topic, key, value) in enumerate(records):
        if rate is not None:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        sent[key.decode()] = time.time()
        await producer.send(topic, value=value, key=key)
    await producer.flush()
    return sent


async def main(escalations: int, rate: float, burst: int, in_process: bool) -> None:
    suffix = uuid.uuid4().hex[:8]
    # Every name under test.bench.: what the test principal of a secured stack may use.
    base = RiskSettings(otel_exporter="none", log_level="WARNING", topic_prefix=BENCH_PREFIX)
    key_dir = Path(tempfile.mkdtemp(prefix="risk-bench-"))
    settings = base.model_copy(
        update={
            "service_name": f"bench-risk-{suffix}",
            "db_schema": f"bench_risk_{suffix}",
            "topic_prefix": f"{BENCH_PREFIX}risk-{suffix}.",
            "risk_service_key_file": key_dir / "audit.pem",
            "risk_checkpoint_interval_s": 3600.0,
        }
    )
    keys.generate(settings.risk_service_key_file)
    size = len(record(settings, finding(uuid.uuid4(), 1.0))[2])

    def raw_record(i: int) -> tuple[bytes, bytes]:
        value = json.dumps({"data": {"sent": time.time(), "padding": "x" * (size - 60)}})
        return f"submission-{i}".encode(), value.encode()

    print(f"machine: {machine()}")
    where = "in-process" if in_process else "as its own process"
    print(f"FindingRecorded record: {size} bytes; risk {where}\n")
    raw_paced = await raw_baseline(base, raw_record, escalations, rate)

    wanted = {settings.topic_prefix + name for name in RISK_TOPICS}
    await ensure_topics(
        settings,
        [
            p
            for p in planned_topics(settings.topic_prefix)
            if p.name.removesuffix(".dlq") in wanted
            or p.name == settings.topic_prefix + CHECKPOINT_TOPIC
        ],
    )
    arrivals = Arrivals(settings)
    producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True, acks="all")
    await arrivals.start()
    await producer.start()
    try:
        async with running_risk(settings, in_process) as exited:
            arrivals.exited = exited
            warm = [uuid.uuid4() for _ in range(10)]
            paced_subs = [uuid.uuid4() for _ in range(escalations)]
            burst_subs = [uuid.uuid4() for _ in range(burst)]
            everyone = warm + paced_subs + burst_subs
            await send_all(producer, [record(settings, accepted(s)) for s in everyone], None)
            await reviews(settings, len(everyone))
            await send_all(producer, [record(settings, finding(s, 1.0)) for s in warm], None)
            await arrivals.wait([str(s) for s in warm], "RestrictionOrdered")

            sent = await send_all(
                producer, [record(settings, finding(s, 1.0)) for s in paced_subs], rate
            )
            subjects = list(sent)
            await arrivals.wait(subjects, "RestrictionOrdered")
            stages = {
                stage: Run(
                    f"risk paced at {rate:g}/s: finding -> {stage}",
                    len(subjects),
                    1.0,
                    [(arrivals.times[(s, stage)] - sent[s]) * 1000 for s in subjects],
                )
                for stage in STAGES
            }

            raw_burst = await raw_baseline(base, raw_record, burst)
            sent = await send_all(
                producer, [record(settings, finding(s, 0.34)) for s in burst_subs], None
            )
            last = await arrivals.wait(list(sent), "RiskAssessed")
            burst_run = Run(
                "risk burst: findings -> RiskAssessed",
                len(sent),
                last - min(sent.values()),
                [(arrivals.times[(s, "RiskAssessed")] - t) * 1000 for s, t in sent.items()],
            )
    finally:
        await producer.stop()
        await arrivals.stop()
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        await conn.close()

    print(HEADER)
    print(raw_paced.row())
    for stage_run in stages.values():
        print(latency_row(stage_run, raw_paced, rate))
    print(raw_burst.row())
    print(burst_run.row(raw_burst))
    final = stages["RestrictionOrdered"]
    figures: dict[str, Any] = {
        "risk_in_process": in_process,
        "paced_rate_per_s": rate,
        "paced_escalations": escalations,
        "paced_raw_p50_ms": round(raw_paced.percentile(50), 2),
        "paced_raw_p99_ms": round(raw_paced.percentile(99), 2),
        "burst_findings": burst,
        "burst_raw_msgs_per_s": round(raw_burst.throughput),
        "burst_assessments_per_s": round(burst_run.throughput, 1),
        "burst_assessments_to_raw_ratio": round(burst_run.throughput / raw_burst.throughput, 4),
    }
    for stage, stage_run in stages.items():
        figures[f"paced_{stage}_p50_ms"] = round(stage_run.percentile(50), 2)
        figures[f"paced_{stage}_p99_ms"] = round(stage_run.percentile(99), 2)
    figures["paced_interim_order_p50_to_raw_ratio"] = round(
        final.percentile(50) / raw_paced.percentile(50), 1
    )
    figures["paced_interim_order_p99_to_raw_ratio"] = round(
        final.percentile(99) / raw_paced.percentile(99), 1
    )
    record_results("risk_pipeline", figures)
    print(f"\nrecorded in benchmarks/results.json: {json.dumps(figures, sort_keys=True)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--escalations", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="paced run: findings/s")
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--in-process", action="store_true", help="run risk in this process")
    args = parser.parse_args()
    asyncio.run(main(args.escalations, args.rate, args.burst, args.in_process))
