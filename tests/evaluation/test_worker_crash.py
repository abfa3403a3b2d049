"""Workers that die (SIGKILL), stop (SIGTERM) or freeze (SIGSTOP) lose nothing and record no
finding twice, and a result from a lost lease never counts."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import asyncpg

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import SuiteStatus
from services.evaluation.app import attach_worker
from services.evaluation.settings import EvaluationSettings
from tests.evaluation.rig import (
    EvalRig,
    alive,
    filing,
    inspect_children,
    process_state,
    request_counts,
)
from tests.kit import process_env, wait_for

PROFILE = "capable-slow"  # 1.5 s per reply: the run is still going when the worker dies


def start_worker(settings: EvaluationSettings) -> subprocess.Popen[bytes]:
    """``python -m services.evaluation worker``: a worker process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.evaluation", "worker"], env=process_env(settings)
    )


async def job_rows(rig: EvalRig) -> list[asyncpg.Record]:
    return await rig.fetch("SELECT * FROM jobs")


async def attempt_rows(rig: EvalRig) -> list[asyncpg.Record]:
    return await rig.fetch("SELECT * FROM job_attempts ORDER BY started_at")


async def test_sigkilled_worker_loses_nothing_and_records_no_finding_twice(rig: EvalRig) -> None:
    # worker=False: only the worker processes below run jobs
    settings = await rig.start(only={"cyber-ctf-proxy"}, worker=False)
    submission = filing(rig.demo_url, PROFILE)
    calls_before = request_counts(rig.demo_url).get(PROFILE, 0)

    first = start_worker(settings)
    try:
        await rig.file(submission)

        async def mid_run() -> bool:
            jobs = await job_rows(rig)
            running = bool(jobs) and jobs[0]["state"] == "running"
            reached = request_counts(rig.demo_url).get(PROFILE, 0) > calls_before
            return running and reached and bool(inspect_children(first.pid))

        await wait_for(mid_run, timeout=60, what="the first worker's run to reach the model")
        orphans = inspect_children(first.pid)
    finally:
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL

    async def orphans_gone() -> bool:
        return not alive(orphans)

    await wait_for(orphans_gone, timeout=10, what="the killed worker's Inspect run to stop")
    [job] = await job_rows(rig)
    assert job["state"] == "running" and job["attempts"] == 1, "the lease outlives its worker"

    second = start_worker(settings)
    try:
        reader = rig.events
        await reader.wait(
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

    [job] = await job_rows(rig)
    assert job["state"] == "completed" and job["attempts"] == 2
    attempts = await attempt_rows(rig)
    assert [(a["attempt"], a["outcome"], a["failure"]) for a in attempts] == [
        (1, "lease_lost", "worker_lost"),
        (2, "succeeded", None),
    ]
    assert attempts[0]["worker"] != attempts[1]["worker"]


async def test_sigterm_gives_running_jobs_back_without_counting_the_attempt(rig: EvalRig) -> None:
    settings = await rig.start(only={"cyber-ctf-proxy"}, worker=False)
    submission = filing(rig.demo_url, "stalling")
    worker = start_worker(settings)
    try:
        await rig.file(submission)

        async def running() -> bool:
            jobs = await job_rows(rig)
            running = bool(jobs) and jobs[0]["state"] == "running"
            return running and bool(inspect_children(worker.pid))

        await wait_for(running, timeout=60, what="the job to run")
        runs = inspect_children(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

    [job] = await job_rows(rig)
    assert (job["state"], job["attempts"], job["lease_token"]) == ("pending", 0, None)
    [attempt] = await attempt_rows(rig)
    assert attempt["outcome"] == "released"

    async def orphans_gone() -> bool:
        return not alive(runs)

    await wait_for(orphans_gone, timeout=10, what="the released run to stop")


async def test_a_paused_worker_whose_lease_expired_has_its_late_result_discarded(
    rig: EvalRig,
) -> None:
    """A worker frozen mid-job (SIGSTOP: no heartbeat) loses its lease; the job is re-run by
    another worker, and the frozen worker's result, arriving late, counts for nothing."""
    # worker=False: the paused worker claims first; the other one comes later
    settings = rig.configure(only={"cyber-ctf-proxy"}, worker=False)
    service = await rig.start_service(settings)
    submission = filing(rig.demo_url, "capable")
    sid = submission.submission_id
    # One slot, a 2 s lease, and a heartbeat that never comes: as if paused for good from
    # the claim on (SIGSTOP below keeps it from recording before the re-run has started).
    paused_settings = settings.model_copy(
        update={
            "evaluation_worker_concurrency": 1,
            "evaluation_lease_s": 2.0,
            "evaluation_heartbeat_s": 3600.0,
        }
    )
    paused_log = rig.directory / "paused-worker.log"
    with paused_log.open("wb") as log:
        paused = subprocess.Popen(
            [sys.executable, "-m", "services.evaluation", "worker"],
            env=process_env(paused_settings),
            stderr=log,
        )
    rerun: asyncio.Task[None] | None = None
    try:
        await rig.file(submission)

        async def run_started() -> bool:
            return bool(inspect_children(paused.pid))

        await wait_for(run_started, timeout=60, what="the first worker's Inspect run")
        [late_run] = inspect_children(paused.pid)
        paused.send_signal(signal.SIGSTOP)

        async def late_result_ready() -> bool:
            state = process_state(late_run)
            return state is not None and state[1] == "Z"  # done; the frozen worker can't reap

        await wait_for(late_result_ready, timeout=60, what="the paused worker's run to finish")
        [job] = await job_rows(rig)
        assert job["state"] == "running" and job["attempts"] == 1

        rerun = asyncio.create_task(attach_worker(service, settings).run())

        async def rerun_running() -> bool:
            return [(a["attempt"], a["outcome"]) for a in await attempt_rows(rig)] == [
                (1, "lease_lost"),
                (2, "running"),
            ]

        await wait_for(rerun_running, timeout=30, what="the other worker to take the job over")
        paused.send_signal(signal.SIGCONT)  # the late result arrives during the re-run
        reader = rig.events
        await reader.wait(
            lambda: bool(reader.of(sid, EvaluationCompleted)), what="the re-run to complete"
        )
        await reader.linger(2.0)
    finally:
        paused.send_signal(signal.SIGCONT)
        paused.send_signal(signal.SIGTERM)
        assert paused.wait(timeout=30) == 0
        if rerun is not None:
            rerun.cancel()
            await asyncio.gather(rerun, return_exceptions=True)

    assert "(discarded: lease lost)" in paused_log.read_text(), "the late result did arrive"
    late_log = (
        settings.evaluation_inspect_log_dir / str(sid) / "cyber-ctf-proxy@1.0.0" / "attempt-1.eval"
    )
    assert late_log.is_file(), "the paused worker's run did finish"
    [finding] = reader.of(sid, FindingRecorded)
    assert finding.evidence_ref.endswith("attempt-2.eval"), "recorded from the live lease only"
    [completed] = reader.of(sid, EvaluationCompleted)
    assert [(s.status, s.attempts, s.finding_ids) for s in completed.suites] == [
        (SuiteStatus.COMPLETED, 2, [finding.finding_id])
    ]
    [job] = await job_rows(rig)
    assert job["state"] == "completed" and job["attempts"] == 2
    attempts = await attempt_rows(rig)
    assert [(a["attempt"], a["outcome"], a["failure"]) for a in attempts] == [
        (1, "lease_lost", "worker_lost"),
        (2, "succeeded", None),
    ]
    assert attempts[0]["worker"] != attempts[1]["worker"]
    findings = await rig.fetch("SELECT job_id, evidence_ref FROM findings")
    assert [f["evidence_ref"] for f in findings] == [finding.evidence_ref]
