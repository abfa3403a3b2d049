"""Risk's /metrics after real work: a critical finding assessed and escalated, a
reviewer's decision accepted, poison on evaluation.events counted by reason."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.events import EscalationRaised, FindingRecorded, RestrictionOrdered
from contracts.events.risk import EscalationDecision
from services.runtime import RuntimeSettings
from tests.kit import Scrape, get_json, read_topic, scrape_until
from tests.risk.rig import Rig, running_rig

DURATION_COUNT = "frontier_review_handler_duration_seconds_count"
DEAD_LETTERS = "frontier_review_dead_letters_total"


@pytest.fixture(scope="module")
async def rig(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    directory = tmp_path_factory.mktemp("risk-metrics")
    async with running_rig(settings, directory, http_port=0, metrics_refresh_s=0.1) as started:
        yield started


async def test_risk_is_ready_once_started(rig: Rig) -> None:
    assert rig.service.http_port is not None
    status, body = await get_json(rig.service.http_port, "/readyz")
    assert (status, body["status"]) == (200, "ready"), body


async def test_risk_metrics_show_the_escalation_the_decision_and_the_poison(rig: Rig) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    await rig.one(sub, RestrictionOrdered)
    raised = await rig.one(sub, EscalationRaised)
    answer = await rig.decide(
        "r1",
        raised.escalation_id,
        sub.submission_id,
        EscalationDecision.RESTRICT,
        order=rig.order(),
    )
    assert answer.accepted
    evaluation_events = rig.settings.topic("evaluation.events")
    await rig.producer.send(evaluation_events, b"\x00\xff not json", str(sub.submission_id))
    port = rig.service.http_port
    assert port is not None

    def settled(now: Scrape) -> bool:
        return (
            now.value("frontier_review_risk_reviewer_decisions_total", decision="restrict") == 1
            and now.total(DEAD_LETTERS, topic=evaluation_events) == 1
            and now.value("frontier_review_outbox_backlog_rows") == 0
            and now.value("frontier_review_metrics_source_up", source="database") == 1
        )

    final = await scrape_until(port, settled, what="the decision recorded, the poison counted")
    assert final.value("frontier_review_risk_escalations_open", level="critical") == 1
    assert final.value("frontier_review_risk_assessments_total", level="critical") == 1
    assessed = final.value(
        DURATION_COUNT,
        topic=evaluation_events,
        event_type=FindingRecorded.TYPE,
        outcome="applied",
    )
    assert assessed == 1
    decisions = rig.settings.topic("reviewers.decisions")
    assert final.total(DURATION_COUNT, topic=decisions, outcome="applied") == 1
    [dead] = await read_topic(rig.settings, f"{evaluation_events}.dlq", expected=1)
    reason = dict(dead.headers)["dlq.reason"].decode()
    assert final.value(DEAD_LETTERS, topic=evaluation_events, reason=reason) == 1
    assert final.value("frontier_review_timers_pending", kind="decision-deadline") == 1
    lag = final.matching("frontier_review_consumer_lag_records", topic=evaluation_events)
    assert lag and all(sample.value == 0 for sample in lag)
