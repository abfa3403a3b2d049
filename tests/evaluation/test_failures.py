"""Suites that time out or error are retried with backoff, then fail with EvaluationFailed."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg

from contracts.events import EvaluationCompleted, EvaluationFailed, FindingRecorded
from contracts.events.evaluation import EvaluationEnd, FailureKind, SuiteStatus
from services.evaluation.settings import EvaluationSettings
from tests.contracts.examples import LAB_ID
from tests.evaluation.conftest import EvalRig
from tests.evaluation.support import (
    DEMO_API_KEY,
    EventReader,
    accepted,
    free_port,
)

MAX_ATTEMPTS = 2


async def test_a_suite_that_times_out_is_retried_then_fails(rig: EvalRig) -> None:
    timeout_s = 3
    limits = {"timeout_seconds": timeout_s, "max_attempts": MAX_ATTEMPTS}
    settings = rig.configure(only={"cyber-ctf-proxy"}, suites=limits)
    stalling = accepted(rig.demo_url, "stalling")  # replies after 120 s: every attempt times out
    await rig.start_service(settings)
    await rig.send_intake(stalling)
    reader = await failed_evaluations(rig, settings, {stalling.submission_id: FailureKind.TIMEOUT})
    [timed_out] = reader.of(stalling.submission_id, EvaluationFailed)
    assert f"{timeout_s} s" in timed_out.error
    for attempt in await attempts_of(rig):
        elapsed = attempt["ended_at"] - attempt["started_at"]
        assert elapsed < timedelta(seconds=timeout_s + 3), "the run was stopped at its limit"


async def test_suites_that_error_are_retried_then_fail(rig: EvalRig) -> None:
    settings = rig.configure(only={"cyber-ctf-proxy"}, suites={"max_attempts": MAX_ATTEMPTS})
    broken = accepted(rig.demo_url, "broken")  # HTTP 500 on every call
    nobody_home = accepted(f"http://127.0.0.1:{free_port()}/v1", "capable")
    no_secret = accepted(rig.demo_url, "capable", credential_ref=f"labs/{LAB_ID}/missing-key")
    cases = {
        broken.submission_id: FailureKind.ERROR,
        nobody_home.submission_id: FailureKind.ENDPOINT_UNREACHABLE,
        no_secret.submission_id: FailureKind.CREDENTIAL_UNAVAILABLE,
    }
    await rig.start_service(settings)
    await rig.send_intake(broken, nobody_home, no_secret)
    reader = await failed_evaluations(rig, settings, cases)
    [errored] = reader.of(broken.submission_id, EvaluationFailed)
    assert "InternalServerError" in errored.error
    [missing] = reader.of(no_secret.submission_id, EvaluationFailed)
    assert f"labs/{LAB_ID}/missing-key" in missing.error


async def failed_evaluations(
    rig: EvalRig, settings: EvaluationSettings, cases: dict[UUID, FailureKind]
) -> EventReader:
    """Each submission's one suite failed with its kind after MAX_ATTEMPTS, with backoff."""

    async with rig.evaluation_reader() as reader:
        await reader.wait_until(
            lambda: all(reader.of(sid, EvaluationCompleted) for sid in cases),
            timeout=120,
            what="every evaluation to end",
        )
        await reader.linger()

    for sid, kind in cases.items():
        [failed] = reader.of(sid, EvaluationFailed)
        assert failed.failure is kind, (kind, failed.error)
        assert failed.attempts == MAX_ATTEMPTS
        assert failed.suite_id == "cyber-ctf-proxy"
        assert DEMO_API_KEY not in failed.error
        assert reader.of(sid, FindingRecorded) == []
        [completed] = reader.of(sid, EvaluationCompleted)
        assert completed.ended_by is EvaluationEnd.ALL_SUITES_ENDED
        assert [(s.status, s.attempts) for s in completed.suites] == [
            (SuiteStatus.FAILED, MAX_ATTEMPTS)
        ]
        kinds = [type(e).__name__ for e in reader.of(sid)]
        assert kinds == ["EvaluationStarted", "EvaluationFailed", "EvaluationCompleted"]

    attempts = await attempts_of(rig)
    for sid, kind in cases.items():
        mine = [a for a in attempts if a["submission_id"] == sid]
        assert [(a["attempt"], a["outcome"], a["failure"]) for a in mine] == [
            (1, "failed", kind.value),
            (2, "failed", kind.value),
        ]
        backoff = mine[1]["started_at"] - mine[0]["ended_at"]
        assert backoff >= timedelta(seconds=settings.retry_backoff_s), "retried after a backoff"
    return reader


async def attempts_of(rig: EvalRig) -> list[asyncpg.Record]:
    return await rig.fetch(
        f"""SELECT j.submission_id, a.attempt, a.outcome, a.failure, a.started_at, a.ended_at
            FROM "{rig.schema}".job_attempts a JOIN "{rig.schema}".jobs j USING (job_id)
            ORDER BY a.started_at"""
    )
