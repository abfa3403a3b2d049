"""Intake's /metrics after real work: a filing accepted, poison dead-lettered, a
forgery refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.events.intake import SubmissionAccepted, SubmissionRejected
from contracts.events.lab import SubmissionFiled
from services.runtime import RuntimeSettings
from tests.intake.rig import Rig, running_rig
from tests.intake.support import Signer
from tests.kit import Scrape, get_json, scrape_until

DURATION_COUNT = "frontier_review_handler_duration_seconds_count"
DEAD_LETTERS = "frontier_review_dead_letters_total"


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, metrics_refresh_s=0.1) as started:
        yield started


async def test_intake_is_live_and_ready_once_started(rig: Rig) -> None:
    assert rig.service.http_port is not None
    assert await get_json(rig.service.http_port, "/healthz") == (200, {"status": "ok"})
    status, body = await get_json(rig.service.http_port, "/readyz")
    assert (status, body["status"]) == (200, "ready"), body


async def test_intake_metrics_count_the_filing_it_accepted_and_the_poison_it_dead_lettered(
    rig: Rig,
) -> None:
    answer = await rig.answer(rig.signers["a1"].filed())
    assert isinstance(answer.data, SubmissionAccepted)
    for poison in (b"\x00\xff not json", b"[1, 2, 3]"):
        await rig.send(poison, "k")
    await rig.dlq.wait(lambda: len(rig.dlq.records) >= 2, what="both poison records")
    topic = rig.submissions_topic
    port = rig.service.http_port
    assert port is not None

    def settled(now: Scrape) -> bool:
        return (
            now.value("frontier_review_outbox_backlog_rows") == 0
            and now.value("frontier_review_metrics_source_up", source="database") == 1
            and now.value("intake_submissions", state="accepted") is None  # the prefix applies
            and now.total("frontier_review_intake_submissions", state="accepted") == 1
            and now.total(DEAD_LETTERS) == 2
            and now.total("frontier_review_consumer_lag_records", topic=topic) == 0
        )

    final = await scrape_until(port, settled, what="the filing applied and published")
    filed = final.value(
        DURATION_COUNT, topic=topic, event_type=SubmissionFiled.TYPE, outcome="applied"
    )
    assert filed == 1
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in rig.dlq.records)
    assert reasons == ["invalid_envelope", "malformed_json"]
    for reason in reasons:  # the metric is what the DLQ holds
        assert final.value(DEAD_LETTERS, topic=topic, reason=reason) == 1
    assert final.value("frontier_review_timers_pending", kind="review-window") == 1
    published = final.value("frontier_review_outbox_published_total")
    assert published == 4  # the answer, its copy on the lab's feed, two DLQ records
    assert final.value("frontier_review_metrics_source_up", source="database") == 1


async def test_refused_forgeries_are_counted_by_reason_never_by_whom_they_claim(rig: Rig) -> None:
    victim, forger = rig.signers["a1"], rig.signers["b1"]
    posing = Signer(victim.lab_id, victim.key_id, forger.key).filed()  # lab-b signs as lab-a
    assert isinstance((await rig.answer(posing)).data, SubmissionRejected)
    port = rig.service.http_port
    assert port is not None

    def counted(now: Scrape) -> bool:
        return now.value("frontier_review_intake_refusals_recent", reason="bad_signature") == 1

    final = await scrape_until(port, counted, what="the forgery counted")
    refusals = final.matching("frontier_review_intake_refusals_recent")
    assert all(set(s.labels) == {"reason"} for s in refusals)  # no claimed sender
