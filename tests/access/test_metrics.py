"""Access's /metrics and the lab's decision API's /metrics after real work: an order
published as a policy version, the decision API (its own process, following the lab's
feed) answering under it, the lab acknowledging it from one enforcement point, a newer
version that point has not acknowledged, poison on lab.compliance counted by reason."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from contracts import encode, make_event
from contracts.events import AccessPolicyPublished, RestrictionOrdered
from contracts.events.lab import ComplianceAcknowledged
from services.runtime import RuntimeSettings
from tests.access.rig import Rig, applied, model_id, running_rig
from tests.access.support import order, person, ties
from tests.kit import Scrape, free_port, get_json, read_topic, scrape_until, wait_for

TOKEN = "gateway-caller-token-0123456789"
DURATION_COUNT = "frontier_review_handler_duration_seconds_count"
DEAD_LETTERS = "frontier_review_dead_letters_total"
POINT_VERSION = "frontier_review_access_enforcement_point_policy_version"
LAB = "example-lab"


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings, http_port=0, metrics_refresh_s=0.1) as started:
        yield started


@pytest.fixture(scope="module")
def decision_api(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The lab's decision API as the lab runs it (``labclient.cli decision-api``)."""
    tokens = tmp_path_factory.mktemp("gateway") / "callers.txt"
    tokens.write_text(f"{TOKEN}\n")
    port = free_port()
    command = [
        sys.executable, "-m", "services.labclient.cli", "--lab-id", LAB,
        "--bootstrap", rig.settings.kafka_bootstrap,
        "decision-api", "--tokens", str(tokens), "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"FR_TOPIC_PREFIX": rig.settings.topic_prefix},
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(30)


async def test_access_is_ready_once_started(rig: Rig) -> None:
    assert rig.service is not None and rig.service.http_port is not None
    status, body = await get_json(rig.service.http_port, "/readyz")
    assert (status, body["status"]) == (200, "ready"), body


async def test_the_decision_api_counts_its_decisions_and_shows_the_applied_version(
    rig: Rig, decision_api: int
) -> None:
    model = model_id(LAB)
    await rig.send(order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC)))
    await rig.version(model, 1)
    chinese = {"principal": person(citizenships=ties("CN")).model_dump(mode="json")}
    american = {"principal": person().model_dump(mode="json")}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{decision_api}", timeout=5) as api:

        async def applied_v1() -> bool:
            try:
                status = await api.get("/v1/status", headers=auth)
            except httpx.TransportError:
                return False  # not serving yet
            return status.status_code == 200 and model in status.json()["models"]

        await wait_for(applied_v1, timeout=60, what="the decision API applying version 1")
        batch = {"items": [{**chinese, "model_id": model}, {**american, "model_id": model}]}
        answers = (await api.post("/v1/decisions", json=batch, headers=auth)).json()
        assert [d["allowed"] for d in answers["decisions"]] == [False, True]
        one = await api.post("/v1/decision", json={**chinese, "model_id": model}, headers=auth)
        assert one.json()["allowed"] is False

    def counted(now: Scrape) -> bool:
        return now.total("frontier_review_enforcer_decisions_total", outcome="allow") == 1

    final = await scrape_until(decision_api, counted, what="the decisions counted")
    decisions = "frontier_review_enforcer_decisions_total"
    assert final.value(decisions, outcome="deny", basis="policy") == 2
    assert final.value(decisions, outcome="allow", basis="policy") == 1
    assert final.total(decisions) == 3  # every other outcome and basis at 0
    assert final.value("frontier_review_enforcer_policy_version", model=model) == 1
    assert final.value("frontier_review_enforcer_policy_usable", model=model) == 1
    assert final.value("frontier_review_enforcer_ready") == 1
    applied_records = final.value("frontier_review_enforcer_policy_records_total", result="applied")
    assert applied_records is not None and applied_records >= 1
    lag = final.matching("frontier_review_enforcer_feed_lag_records")
    assert lag and all(sample.value == 0 for sample in lag)


async def test_access_metrics_show_versions_acknowledged_per_enforcement_point_and_poison(
    rig: Rig,
) -> None:
    assert rig.service is not None and rig.service.http_port is not None
    port = rig.service.http_port
    model = model_id(LAB)
    await rig.send(order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC)))
    await rig.version(model, 1)
    async with rig.enforcer(LAB) as enforcer:
        await applied(enforcer, model, 1)
        version_1 = enforcer.applied(model)
    assert version_1 is not None
    ack = rig.labs[LAB].acknowledgement(version_1)  # from its enforcement point "gateway-1"
    event = make_event(ack, source=f"/labs/{LAB}", subject=model)
    await rig.send_raw("lab.compliance", encode(event), event.subject)

    def acknowledged(now: Scrape) -> bool:
        point = now.value(POINT_VERSION, model=model, enforcement_point="gateway-1")
        return point == 1 and now.value("frontier_review_metrics_source_up", source="database") == 1

    await scrape_until(port, acknowledged, what="gateway-1 on version 1")

    await rig.send(order(model_id=model, nationalities=["RU"], effective_at=datetime.now(UTC)))
    await rig.version(model, 2)
    await rig.send_raw("lab.compliance", b"\x00\xff not json", model)
    compliance = rig.settings.topic("lab.compliance")

    def behind(now: Scrape) -> bool:
        return (
            now.value("frontier_review_access_enforcement_points_behind", lab=LAB) == 1
            and now.total(DEAD_LETTERS, topic=compliance) == 1
            and now.value("frontier_review_outbox_backlog_rows") == 0
        )

    final = await scrape_until(port, behind, what="gateway-1 behind version 2, the poison")
    assert final.value(POINT_VERSION, lab=LAB, model=model, enforcement_point="gateway-1") == 1
    published = final.value("frontier_review_access_policy_versions_published_total")
    versions = [e for e in rig.policies.events() if isinstance(e.data, AccessPolicyPublished)]
    assert published == len(versions)  # of every model the rig restricted
    [dead] = await read_topic(rig.settings, f"{compliance}.dlq", expected=1)
    reason = dict(dead.headers)["dlq.reason"].decode()
    assert final.value(DEAD_LETTERS, topic=compliance, reason=reason) == 1
    risk_events = rig.settings.topic("risk.events")
    ordered = final.value(
        DURATION_COUNT, topic=risk_events, event_type=RestrictionOrdered.TYPE, outcome="applied"
    )
    assert ordered is not None and ordered >= 2
    acks = final.value(
        DURATION_COUNT, topic=compliance, event_type=ComplianceAcknowledged.TYPE, outcome="applied"
    )
    assert acks == 1
    lag = final.matching("frontier_review_consumer_lag_records", topic=compliance)
    assert lag and all(sample.value == 0 for sample in lag)
