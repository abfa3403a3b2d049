"""Evaluation job queue: claim throughput, job throughput, and per-job overhead beyond Inspect.

    .venv/bin/python -m benchmarks.evaluation_queue [--jobs 2000] [--inspect-jobs 8]

Needs the local stack (deploy/stack.sh up). Each run uses a fresh Postgres schema
(dropped at the end). Three measurements:

1. claims/s: concurrent claimers lease jobs one at a time (FOR UPDATE SKIP LOCKED),
   nothing else - the raw queue.
2. jobs/s: the real Worker with a no-op runner: claim, lease heartbeat task,
   finding + outbox row + completion check, per job.
3. overhead: the real Worker + InspectRunner on a one-sample Inspect task against
   the demo model server over HTTP; per job, attempt wall time (claim -> result
   committed) minus the time eval_async itself took inside the Inspect process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import generate

from benchmarks.common import BENCH_PREFIX, machine
from contracts.events import SubmissionAccepted
from services.evaluation import repository as repo
from services.evaluation.app import SCHEMA, inspect_runner
from services.evaluation.credentials import env_name
from services.evaluation.model import Failure
from services.evaluation.planning import plan_evaluation
from services.evaluation.runner import Runner
from services.evaluation.runs import MetricResult, RunRequest, RunResult
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import SuiteRegistry
from services.evaluation.worker import Worker
from services.runtime import SYSTEM_CLOCK
from services.runtime.database import create_pool, migrate_schema
from tests.contracts.examples import example
from tests.evaluation.rig import demo_model_server, endpoint_of

if TYPE_CHECKING:
    from services.runtime.database import Pool

BENCH_LAB = "bench"  # letters only: its secret may come from the environment (credentials.py)
CREDENTIAL_REF = f"labs/{BENCH_LAB}/demo-key"
API_KEY = "bench-demo-key"


@task
def trivial_task() -> Task:
    """One sample, one generation: the smallest real Inspect run."""
    return Task(
        dataset=[Sample(input="Molar mass of NaCl is 58.5 g/mol. Mass of 2 mol?", target="117")],
        solver=generate(),
        scorer=match(numeric=True),
    )


class NoopRunner:
    """Succeeds at once with one metric: measures everything but Inspect."""

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult | Failure:
        return RunResult(
            status="success",
            log_sha256="0" * 64,
            samples_total=1,
            metrics=[MetricResult(scorer="noop", metric="accuracy", value=1.0, samples_scored=1)],
        )


def registry(suites: int, task_ref: str) -> SuiteRegistry:
    return SuiteRegistry.model_validate(
        {
            "registry_version": "bench",
            "suites": [
                {
                    "id": f"bench-{i}",
                    "version": "1",
                    "domain": "cyber",
                    "capability": "benchmark",
                    "task": task_ref,
                    "timeout_seconds": 120,
                    "max_attempts": 3,
                }
                for i in range(suites)
            ],
        }
    )


async def plan_jobs(pool: Pool, submissions: int, reg: SuiteRegistry, endpoint: str) -> int:
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(submissions):
            accepted = SubmissionAccepted.model_validate(
                example(SubmissionAccepted).model_dump(mode="json")
                | {
                    "submission_id": str(uuid.uuid4()),
                    "lab_id": BENCH_LAB,
                    "evaluation_access": {
                        "endpoint": endpoint,
                        "api_model": "capable",
                        "credential_ref": CREDENTIAL_REF,
                    },
                    "accepted_at": now,
                    "deadline": now + timedelta(days=14),
                }
            )
            plan = plan_evaluation(accepted, reg)
            await repo.insert_evaluation(conn, accepted, plan, now)
            await repo.insert_jobs(conn, plan, None, now)
    return submissions * len(reg.suites)


async def fresh_pool(settings: EvaluationSettings) -> Pool:
    await migrate_schema(settings, SCHEMA)
    return await create_pool(settings)


async def drop_schema(settings: EvaluationSettings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
    finally:
        await conn.close()


async def bench_claims(settings: EvaluationSettings, jobs: int, claimers: int) -> float:
    """claims/s of ``claimers`` concurrent connections leasing one job per transaction."""
    pool = await fresh_pool(settings)
    try:
        await plan_jobs(pool, jobs // 10, registry(10, "m:t"), "http://127.0.0.1:1/v1")

        async def claimer(n: int) -> int:
            claimed = 0
            while True:
                async with pool.acquire() as conn, conn.transaction():
                    got = await repo.claim_jobs(conn, f"bench-{n}", 1, 60, SYSTEM_CLOCK.now())
                if not got:
                    return claimed
                claimed += 1

        started = time.perf_counter()
        counts = await asyncio.gather(*(claimer(n) for n in range(claimers)))
        elapsed = time.perf_counter() - started
        assert sum(counts) == jobs, (sum(counts), jobs)
        return jobs / elapsed
    finally:
        await pool.close()
        await drop_schema(settings)


async def run_workers(
    settings: EvaluationSettings, pool: Pool, runner: Runner, workers: int, total: int
) -> float:
    """Run ``workers`` Worker loops until ``total`` jobs completed; returns elapsed seconds."""
    loops = [
        Worker(
            pool=lambda: pool,
            settings=settings,
            clock=SYSTEM_CLOCK,
            runner=runner,
            secrets={env_name(settings.evaluation_secret_env_prefix, CREDENTIAL_REF): API_KEY},
            worker_id=f"bench-worker-{n}",
        )
        for n in range(workers)
    ]
    started = time.perf_counter()
    tasks = [asyncio.create_task(w.run()) for w in loops]
    try:
        while True:
            async with pool.acquire() as conn:
                done = await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE state IN ('completed', 'failed')"
                )
            if done >= total:
                return time.perf_counter() - started
            if any(t.done() for t in tasks):
                raise RuntimeError("a worker stopped")
            await asyncio.sleep(0.02)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def bench_noop_jobs(
    settings: EvaluationSettings, jobs: int, workers: int, concurrency: int
) -> float:
    pool = await fresh_pool(settings)
    try:
        total = await plan_jobs(pool, jobs // 10, registry(10, "m:t"), "http://127.0.0.1:1/v1")
        tuned = settings.model_copy(
            update={
                "evaluation_worker_concurrency": concurrency,
                "evaluation_endpoint_allowlist": ["127.0.0.1:1"],  # never called: no-op runs
            }
        )
        elapsed = await run_workers(tuned, pool, NoopRunner(), workers, total)
        return total / elapsed
    finally:
        await pool.close()
        await drop_schema(settings)


async def bench_inspect_overhead(settings: EvaluationSettings, jobs: int) -> dict[str, float]:
    with demo_model_server(API_KEY) as url:
        pool = await fresh_pool(settings)
        try:
            reg = registry(1, "benchmarks.evaluation_queue:trivial_task")
            total = await plan_jobs(pool, jobs, reg, url)
            tuned = settings.model_copy(
                update={
                    "evaluation_worker_concurrency": 1,
                    "evaluation_endpoint_allowlist": [endpoint_of(url)],  # the demo server
                }
            )
            await run_workers(tuned, pool, inspect_runner(tuned), 1, total)
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT extract(epoch FROM ended_at - started_at) AS total,
                              inspect_seconds, outcome
                       FROM job_attempts ORDER BY started_at"""
                )
        finally:
            await pool.close()
            await drop_schema(settings)
            shutil.rmtree(settings.evaluation_inspect_log_dir, ignore_errors=True)
            shutil.rmtree(settings.evaluation_run_dir, ignore_errors=True)
    assert all(r["outcome"] == "succeeded" for r in rows), [r["outcome"] for r in rows]
    totals = [float(r["total"]) for r in rows]
    inspect = [float(r["inspect_seconds"]) for r in rows]
    overheads = [t - i for t, i in zip(totals, inspect, strict=True)]
    return {
        "jobs": len(rows),
        "total_median": statistics.median(totals),
        "inspect_median": statistics.median(inspect),
        "overhead_median": statistics.median(overheads),
        "overhead_min": min(overheads),
        "overhead_max": max(overheads),
    }


def settings_for(schema: str) -> EvaluationSettings:
    return EvaluationSettings(
        topic_prefix=BENCH_PREFIX,
        db_schema=schema,
        service_name=f"bench-{schema}",
        evaluation_inspect_log_dir=Path(f".local/bench-inspect-logs/{schema}"),
        evaluation_run_dir=Path(f".local/bench-inspect-runs/{schema}"),
        evaluation_heartbeat_s=5.0,
        evaluation_lease_s=30.0,
        evaluation_job_poll_interval_s=0.05,
        evaluation_model_max_retries=0,
        db_pool_max=40,
    )


async def main(args: argparse.Namespace) -> None:
    rows: list[tuple[str, str, str]] = []

    def schema() -> Any:
        return settings_for(f"bench_eval_{uuid.uuid4().hex[:8]}")

    for claimers in (1, 4, 16):
        rate = await bench_claims(schema(), args.jobs, claimers)
        rows.append(
            (f"raw claims, {claimers} concurrent claimers", f"{args.jobs}", f"{rate:,.0f} claims/s")
        )
    for workers, concurrency in ((1, 1), (1, 8), (4, 8)):
        rate = await bench_noop_jobs(schema(), args.jobs, workers, concurrency)
        rows.append(
            (
                f"no-op jobs end to end, {workers} worker(s) x concurrency {concurrency}",
                f"{args.jobs}",
                f"{rate:,.0f} jobs/s",
            )
        )
    overhead = await bench_inspect_overhead(schema(), args.inspect_jobs)
    print(f"\nMachine: {machine()}\n")
    print("| measurement | jobs | result |\n|---|---|---|")
    for name, jobs, result in rows:
        print(f"| {name} | {jobs} | {result} |")
    n = int(overhead["jobs"])
    print(
        f"| Inspect job (1 sample, demo model over HTTP): attempt wall time, median | {n} | "
        f"{overhead['total_median']:.2f} s |"
    )
    print(f"| ... of which eval_async itself, median | {n} | {overhead['inspect_median']:.2f} s |")
    print(
        f"| ... overhead beyond Inspect (process start + imports + queue + DB), median "
        f"(min-max) | {n} | {overhead['overhead_median']:.2f} s "
        f"({overhead['overhead_min']:.2f}-{overhead['overhead_max']:.2f}) |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--inspect-jobs", type=int, default=8)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
