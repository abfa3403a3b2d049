"""A worker process SIGKILLed mid-job loses nothing, and no finding is recorded twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import SuiteStatus
from services.evaluation.settings import EvaluationSettings
from tests.conftest import wait_for
from tests.evaluation.conftest import StartService, Topics, registry_file
from tests.evaluation.support import EventReader, accepted, publish_events, request_counts

PROFILE = "capable-slow"  # 1.5 s per reply: the run is still going when the worker dies


def worker_env(settings: EvaluationSettings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"FR_{name.upper()}"] = str(value)
    env["FR_LOG_JSON"] = "false"
    return env


def start_worker(settings: EvaluationSettings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.evaluation", "worker"], env=worker_env(settings)
    )


def inspect_processes_of(schema: str) -> list[int]:
    """Live Inspect child processes started by workers of this test (by their environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            status = (proc / "status").read_text()
        except OSError:
            continue
        ours = f"FR_DB_SCHEMA={schema}".encode() in environ
        alive = "State:\tZ" not in status
        if b"services.evaluation.inspect_process" in cmdline and ours and alive:
            found.append(int(proc.name))
    return found


async def job_rows(database: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetch(f'SELECT * FROM "{schema}".jobs')
    finally:
        await conn.close()


async def attempt_rows(database: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetch(f'SELECT * FROM "{schema}".job_attempts ORDER BY started_at')
    finally:
        await conn.close()


async def test_sigkilled_worker_loses_nothing_and_records_no_finding_twice(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
    tmp_path: Path,
) -> None:
    settings = eval_settings.model_copy(
        update={
            "suite_registry": registry_file(tmp_path, only={"cyber-ctf-proxy"}),
            "worker_enabled": False,  # only the worker processes below run jobs
        }
    )
    await start_service(settings)
    submission = accepted(demo_url, PROFILE)
    calls_before = request_counts(demo_url).get(PROFILE, 0)

    first = start_worker(settings)
    try:
        await publish_events(settings.kafka_bootstrap, topics.intake, submission)

        async def mid_run() -> bool:
            jobs = await job_rows(database, schema)
            running = bool(jobs) and jobs[0]["state"] == "running"
            return running and request_counts(demo_url).get(PROFILE, 0) > calls_before

        await wait_for(mid_run, timeout=60, what="the first worker's run to reach the model")
    finally:
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL

    async def orphans_gone() -> bool:
        return not inspect_processes_of(schema)

    await wait_for(orphans_gone, timeout=10, what="the killed worker's Inspect run to stop")
    [job] = await job_rows(database, schema)
    assert job["state"] == "running" and job["attempts"] == 1, "the lease outlives its worker"

    second = start_worker(settings)
    try:
        async with EventReader(settings.kafka_bootstrap, topics.evaluation) as reader:
            await reader.wait_until(
                lambda: bool(reader.of(submission.submission_id, EvaluationCompleted)),
                timeout=90,
                what="the evaluation to complete on the second worker",
            )
            await reader.linger(3.0)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, "a worker stops cleanly on SIGTERM"

    findings = reader.of(submission.submission_id, FindingRecorded)
    assert len(findings) == 1, "exactly one finding for the one metric of the one suite"
    assert findings[0].score == 1.0
    assert findings[0].evidence_ref.endswith("attempt-2.eval")
    [completed] = reader.of(submission.submission_id, EvaluationCompleted)
    [outcome] = completed.suites
    assert outcome.status is SuiteStatus.COMPLETED and outcome.attempts == 2
    assert outcome.finding_ids == [findings[0].finding_id]

    [job] = await job_rows(database, schema)
    assert job["state"] == "completed" and job["attempts"] == 2
    attempts = await attempt_rows(database, schema)
    assert [(a["attempt"], a["outcome"], a["failure"]) for a in attempts] == [
        (1, "lease_lost", "worker_lost"),
        (2, "succeeded", None),
    ]
    assert attempts[0]["worker"] != attempts[1]["worker"]


async def test_sigterm_gives_running_jobs_back_without_counting_the_attempt(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
    tmp_path: Path,
) -> None:
    settings = eval_settings.model_copy(
        update={
            "suite_registry": registry_file(tmp_path, only={"cyber-ctf-proxy"}),
            "worker_enabled": False,
        }
    )
    await start_service(settings)
    submission = accepted(demo_url, "stalling")
    worker = start_worker(settings)
    try:
        await publish_events(settings.kafka_bootstrap, topics.intake, submission)

        async def running() -> bool:
            jobs = await job_rows(database, schema)
            return bool(jobs) and jobs[0]["state"] == "running"

        await wait_for(running, timeout=60, what="the job to run")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

    [job] = await job_rows(database, schema)
    assert (job["state"], job["attempts"], job["lease_token"]) == ("pending", 0, None)
    [attempt] = await attempt_rows(database, schema)
    assert attempt["outcome"] == "released"

    async def orphans_gone() -> bool:
        return not inspect_processes_of(schema)

    await wait_for(orphans_gone, timeout=10, what="the released run to stop")
