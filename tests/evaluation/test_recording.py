"""A database error while a finished run is recorded loses nothing: the record is retried,
the lease kept alive meanwhile, and the attempt counts once (issue: results thrown away)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import SuiteStatus
from tests.evaluation.rig import EvalRig, filing
from tests.kit import wait_for


async def test_sessions_killed_while_a_result_is_recorded_lose_nothing(
    rig: EvalRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.evaluation")
    settings = rig.configure(only={"cyber-ctf-proxy"}, worker=False)
    await rig.start_service(settings)
    worker = await rig.start_worker(settings)
    application = worker.settings.service_name  # the worker's sessions, and only those
    submission = filing(rig.demo_url, "capable")
    sid = submission.submission_id
    holder = await rig.connect()
    try:

        async def running() -> bool:
            return bool(await rig.fetchval("SELECT state FROM jobs") == "running")

        await rig.file(submission)
        await wait_for(running, timeout=60, what="the job to run")
        # Recording locks the evaluation row first: hold it, so the record waits there.
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM evaluations WHERE submission_id = $1 FOR UPDATE", sid)
        first_expiry = await rig.fetchval("SELECT lease_expires_at FROM jobs")

        async def recording_waits() -> bool:
            waiting = await rig.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = $1 AND wait_event_type = 'Lock'""",
                application,
            )
            return bool(waiting)

        await wait_for(recording_waits, timeout=60, what="the result to be recorded")

        async def lease_outlived_its_first_expiry() -> bool:
            expires = await rig.fetchval("SELECT lease_expires_at FROM jobs")
            return bool(datetime.now(UTC) > first_expiry and expires > datetime.now(UTC))

        await wait_for(lease_outlived_its_first_expiry, timeout=30, what="heartbeats")
        killed = await rig.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = $1""",
            application,
        )
        assert killed >= 1
        await wait_for(recording_waits, timeout=30, what="the record to be tried again")
        await hold.rollback()
    finally:
        await holder.close()

    await rig.events.wait(lambda: bool(rig.events.of(sid, EvaluationCompleted)), what="the end")
    await rig.events.linger()
    [finding] = rig.events.of(sid, FindingRecorded)
    [completed] = rig.events.of(sid, EvaluationCompleted)
    assert [(s.status, s.attempts, s.finding_ids) for s in completed.suites] == [
        (SuiteStatus.COMPLETED, 1, [finding.finding_id])
    ]
    attempts = await rig.fetch("SELECT attempt, outcome FROM job_attempts")
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "succeeded")]
    assert "recording the result failed" in caplog.text
