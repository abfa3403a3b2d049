"""The window rules: closing stops running and pending jobs; withdrawal cancels them."""

from __future__ import annotations

import asyncio

import asyncpg

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from services.evaluation.settings import EvaluationSettings
from tests.conftest import wait_for
from tests.evaluation.conftest import StartService, Topics
from tests.evaluation.support import (
    EventReader,
    accepted,
    publish_events,
    request_counts,
    window_closed,
    withdrawn,
)


async def job_states(database: str, schema: str) -> dict[str, str]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(f'SELECT suite_id, state FROM "{schema}".jobs')
        return {r["suite_id"]: r["state"] for r in rows}
    finally:
        await conn.close()


async def test_window_closing_mid_evaluation_stops_jobs_and_reports_incomplete_suites(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
) -> None:
    # One job at a time, each ~2 s: the window closes with suites done, running and pending.
    settings = eval_settings.model_copy(update={"worker_concurrency": 1})
    submission = accepted(demo_url, "capable-slow")
    await start_service(settings)
    await publish_events(settings.kafka_bootstrap, topics.intake, submission)
    sid = submission.submission_id

    async with EventReader(settings.kafka_bootstrap, topics.evaluation) as reader:
        await reader.wait_until(lambda: bool(reader.of(sid, FindingRecorded)), what="a finding")

        async def one_running() -> bool:
            return "running" in (await job_states(database, schema)).values()

        await wait_for(one_running, what="the next suite to be running")
        await publish_events(settings.kafka_bootstrap, topics.intake, window_closed(submission))
        await reader.wait_until(lambda: bool(reader.of(sid, EvaluationCompleted)), what="end")
        await asyncio.sleep(2 * settings.heartbeat_s + 0.5)  # the running attempt is killed
        calls = request_counts(demo_url).get("capable-slow", 0)
        await reader.linger(3.0)
        assert request_counts(demo_url).get("capable-slow", 0) == calls, "the model is left alone"

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.WINDOW_CLOSED
    assert completed.incomplete
    status = {s.suite_id: s.status for s in completed.suites}
    done = {f.suite_id for f in reader.of(sid, FindingRecorded)}
    assert done and set(status.values()) <= {SuiteStatus.COMPLETED, SuiteStatus.INCOMPLETE}
    assert {s for s, v in status.items() if v is SuiteStatus.COMPLETED} == done
    assert len(done) < len(status), "some suites were stopped"
    assert reader.of(sid)[-1] == completed, "nothing is recorded after the window closed"
    states = await job_states(database, schema)
    assert set(states.values()) <= {"completed", "incomplete"}
    conn = await asyncpg.connect(database)
    try:
        stopped = await conn.fetchval(
            f"""SELECT count(*) FROM "{schema}".job_attempts WHERE outcome = 'stopped'"""
        )
    finally:
        await conn.close()
    assert stopped == 1, "the attempt running at the close was stopped"


async def test_withdrawn_submission_cancels_its_jobs(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
) -> None:
    submission = accepted(demo_url, "stalling")  # nothing finishes on its own
    await start_service(eval_settings)
    await publish_events(eval_settings.kafka_bootstrap, topics.intake, submission)

    async def running() -> bool:
        return "running" in (await job_states(database, schema)).values()

    await wait_for(running, what="jobs to run")
    await publish_events(eval_settings.kafka_bootstrap, topics.intake, withdrawn(submission))
    # The window closing afterwards changes nothing: the evaluation has ended.
    await publish_events(eval_settings.kafka_bootstrap, topics.intake, window_closed(submission))
    sid = submission.submission_id
    async with EventReader(eval_settings.kafka_bootstrap, topics.evaluation) as reader:
        await reader.wait_until(lambda: bool(reader.of(sid, EvaluationCompleted)), what="end")
        await reader.linger(2 * eval_settings.heartbeat_s + 1.0)

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.WITHDRAWN
    assert {s.status for s in completed.suites} == {SuiteStatus.CANCELLED}
    assert reader.of(sid, FindingRecorded) == []
    assert set((await job_states(database, schema)).values()) == {"cancelled"}

    async def no_running_attempt() -> bool:
        conn = await asyncpg.connect(database)
        try:
            return not await conn.fetchval(
                f"""SELECT count(*) FROM "{schema}".job_attempts WHERE outcome = 'running'"""
            )
        finally:
            await conn.close()

    await wait_for(no_running_attempt, what="running attempts to be closed")
