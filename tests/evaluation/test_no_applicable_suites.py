"""A covered model no suite applies to gets an answer: EvaluationCompleted with no suites."""

from __future__ import annotations

import asyncpg

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import EvaluationEnd
from services.evaluation.settings import EvaluationSettings
from tests.conftest import read_topic
from tests.evaluation.conftest import StartService, Topics
from tests.evaluation.support import EventReader, accepted, publish, publish_events, window_closed
from tests.evaluation.test_external_findings import as_record as finding_record
from tests.evaluation.test_external_findings import register_example_key, submitted


async def test_a_model_no_suite_applies_to_is_answered_with_an_evaluation_of_no_suites(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
) -> None:
    settings = eval_settings.model_copy(update={"worker_enabled": False})
    await start_service(settings)
    await register_example_key(database, schema)
    images_only = accepted(demo_url, "capable", modalities=["image"])  # every suite needs text
    sid = images_only.submission_id
    # Sent twice (e.g. intake re-published it), then the window closes.
    await publish_events(settings.kafka_bootstrap, topics.intake, images_only, images_only)
    await publish_events(settings.kafka_bootstrap, topics.intake, window_closed(images_only))
    async with EventReader(settings.kafka_bootstrap, topics.evaluation) as reader:
        await reader.wait_until(lambda: bool(reader.of(sid, EvaluationCompleted)), what="an end")
        # A red team may still report on the model by hand.
        finding = finding_record(submitted(sid))
        await publish(settings.kafka_bootstrap, topics.findings, (str(sid), finding))
        await reader.wait_until(lambda: bool(reader.of(sid, FindingRecorded)), what="a finding")
        await reader.linger()

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.NO_APPLICABLE_SUITES
    assert completed.suites == [] and completed.incomplete
    assert completed.detail is not None and completed.detail.endswith("modalities: image")
    assert [type(e).__name__ for e in reader.of(sid)] == ["EvaluationCompleted", "FindingRecorded"]
    conn = await asyncpg.connect(database)
    try:
        ended_by = await conn.fetchval(
            f'SELECT ended_by FROM "{schema}".evaluations WHERE submission_id = $1', sid
        )
        jobs = await conn.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    finally:
        await conn.close()
    assert (ended_by, jobs) == ("no_applicable_suites", 0)
    dead = await read_topic(settings.kafka_bootstrap, f"{topics.intake}.dlq", expected=0, timeout=1)
    assert dead == [], "nothing was dead-lettered"
