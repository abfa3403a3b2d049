"""Evaluation's /metrics after real work: the job queue fills while no worker runs and
empties once one does; poison on intake.events is counted by reason."""

from __future__ import annotations

from contracts.events import EvaluationCompleted, EvaluationStarted, SubmissionAccepted
from tests.evaluation.rig import EvalRig, filing
from tests.kit import Scrape, get_json, read_topic, scrape_until

DURATION_COUNT = "frontier_review_handler_duration_seconds_count"
DEAD_LETTERS = "frontier_review_dead_letters_total"
JOBS = "frontier_review_evaluation_jobs"
SUITE = "cyber-ctf-proxy"


async def test_the_job_queue_depth_rises_without_a_worker_and_falls_once_one_runs(
    rig: EvalRig,
) -> None:
    settings = rig.configure(only={SUITE}, worker=False, http_port=0, metrics_refresh_s=0.1)
    service = await rig.start_service(settings)
    assert service.http_port is not None
    intake_events = rig.topic("intake.events")
    submission = filing(rig.demo_url, "capable")
    await rig.file(submission)
    await rig.producer.send(intake_events, b"\x00\xff not json", "k")
    sid = submission.submission_id
    await rig.events.wait(lambda: bool(rig.events.of(sid, EvaluationStarted)), what="planning")

    def queued(now: Scrape) -> bool:
        return (
            now.value(JOBS, state="pending") == 1
            and now.total(DEAD_LETTERS) == 1
            and now.total("frontier_review_consumer_lag_records", topic=intake_events) == 0
        )

    waiting = await scrape_until(service.http_port, queued, what="one job pending")
    assert waiting.value(JOBS, state="running") == 0
    waited = waiting.value("frontier_review_evaluation_oldest_due_job_wait_seconds")
    assert waited is not None and waited > 0
    planned = waiting.value(
        DURATION_COUNT,
        topic=intake_events,
        event_type=SubmissionAccepted.TYPE,
        outcome="applied",
    )
    assert planned == 1
    [dead] = await read_topic(settings, f"{intake_events}.dlq", expected=1)
    reason = dict(dead.headers)["dlq.reason"].decode()
    assert waiting.value(DEAD_LETTERS, topic=intake_events, reason=reason) == 1

    worker = await rig.start_worker(settings)  # a worker process of its own, its own port
    assert worker.http_port is not None and worker.http_port != service.http_port
    await rig.events.wait(
        lambda: bool(rig.events.of(sid, EvaluationCompleted)), timeout=120, what="the run"
    )

    def drained(now: Scrape) -> bool:
        return now.value(JOBS, state="pending") == 0 and now.value(JOBS, state="running") == 0

    for port in (service.http_port, worker.http_port):  # the same queue, seen from both
        status, body = await get_json(port, "/readyz")
        assert (status, body["status"]) == (200, "ready"), body
        done = await scrape_until(port, drained, what="the queue drained")
        assert done.value("frontier_review_evaluation_oldest_due_job_wait_seconds") == 0
        assert done.value("frontier_review_evaluation_jobs_lease_expired") == 0
