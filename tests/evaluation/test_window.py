"""The window rules: closing stops running and pending jobs; withdrawal cancels them."""

from __future__ import annotations

import asyncio

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from tests.evaluation.rig import EvalRig, filing, request_counts
from tests.kit import wait_for


async def job_states(rig: EvalRig) -> dict[str, str]:
    rows = await rig.fetch("SELECT suite_id, state FROM jobs")
    return {r["suite_id"]: r["state"] for r in rows}


async def test_window_closing_mid_evaluation_stops_jobs_and_reports_incomplete_suites(
    rig: EvalRig,
) -> None:
    # One job at a time, each ~2 s: the window closes with suites done, running and pending.
    submission = filing(rig.demo_url, "capable-slow")
    settings = await rig.start(evaluation_worker_concurrency=1)
    await rig.file(submission)
    sid = submission.submission_id

    reader = rig.events
    await reader.wait(lambda: bool(reader.of(sid, FindingRecorded)), what="a finding")

    async def one_running() -> bool:
        return "running" in (await job_states(rig)).values()

    await wait_for(one_running, what="the next suite to be running")
    await rig.close_window(submission)
    await reader.wait(lambda: bool(reader.of(sid, EvaluationCompleted)), what="end")
    await asyncio.sleep(2 * settings.evaluation_heartbeat_s + 0.5)  # the running attempt dies
    calls = request_counts(rig.demo_url).get("capable-slow", 0)
    await reader.linger(3.0)
    assert request_counts(rig.demo_url).get("capable-slow", 0) == calls, "the model is left alone"

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.WINDOW_CLOSED
    assert completed.incomplete
    status = {s.suite_id: s.status for s in completed.suites}
    done = {f.suite_id for f in reader.of(sid, FindingRecorded)}
    assert done and set(status.values()) <= {SuiteStatus.COMPLETED, SuiteStatus.INCOMPLETE}
    assert {s for s, v in status.items() if v is SuiteStatus.COMPLETED} == done
    assert len(done) < len(status), "some suites were stopped"
    assert reader.of(sid)[-1] == completed, "nothing is recorded after the window closed"
    states = await job_states(rig)
    assert set(states.values()) <= {"completed", "incomplete"}
    stopped = await rig.fetchval("""SELECT count(*) FROM job_attempts WHERE outcome = 'stopped'""")
    assert stopped == 1, "the attempt running at the close was stopped"


async def test_withdrawn_submission_cancels_its_jobs(rig: EvalRig) -> None:
    submission = filing(rig.demo_url, "stalling")  # nothing finishes on its own
    settings = await rig.start()
    await rig.file(submission)

    async def running() -> bool:
        return "running" in (await job_states(rig)).values()

    await wait_for(running, what="jobs to run")
    await rig.withdraw(submission)
    # Intake's clock passing the deadline afterwards changes nothing: the window of a
    # withdrawn submission does not close, and the evaluation has ended.
    await rig.pass_deadline(submission)
    sid = submission.submission_id
    reader = rig.events
    await reader.wait(lambda: bool(reader.of(sid, EvaluationCompleted)), what="end")
    await reader.linger(2 * settings.evaluation_heartbeat_s + 1.0)

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.WITHDRAWN
    assert {s.status for s in completed.suites} == {SuiteStatus.CANCELLED}
    assert reader.of(sid, FindingRecorded) == []
    assert set((await job_states(rig)).values()) == {"cancelled"}

    async def no_running_attempt() -> bool:
        return not await rig.fetchval(
            """SELECT count(*) FROM job_attempts WHERE outcome = 'running'"""
        )

    await wait_for(no_running_attempt, what="running attempts to be closed")
