"""Two replicas of the risk service on one schema and one consumer group (real Kafka +
PostgreSQL), fed a submission's events on three topics at once: each submission's writes
stay serialised (its events leave in the order they were decided, one conclusion), and
the audit log, appended by both, is one chain that verifies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from contracts.events import EscalationRaised, RestrictionOrdered, RiskAssessed
from contracts.events.risk import ReviewConcluded, ReviewOutcome
from services.risk import keys
from services.risk.app import build_service
from services.risk.settings import RiskSettings
from services.runtime import RuntimeSettings, Service
from tests.kit import MovableClock, Producer, TopicWatcher, drop_schema
from tests.risk.rig import Submission as Sub
from tests.risk.rig import (
    cli,
    create_risk_topics,
    deliver,
    evaluation_completed,
    make_finding,
    risk_settings,
    submission_accepted,
    window_closed,
)

SUBMISSIONS = 12


async def checkpoint_counts(config: RiskSettings) -> tuple[int, int]:
    """(checkpoints stored, checkpoint timers fired), read in one snapshot."""
    conn = await asyncpg.connect(
        config.database_url, server_settings={"search_path": config.db_schema}
    )
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM audit_checkpoints) AS stored,
                      (SELECT count(*) FROM timers
                       WHERE kind = 'audit-checkpoint' AND state = 'fired') AS fired"""
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["stored"]), int(row["fired"])


@pytest.fixture
async def replicas(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path: Path
) -> AsyncIterator[tuple[RiskSettings, list[Service]]]:
    config = risk_settings(
        settings, tmp_path, consumer_batch_size=20, risk_checkpoint_interval_s=1.0
    )
    keys.generate(config.risk_service_key_file)
    await create_risk_topics(config)
    clock = MovableClock()
    services = [build_service(config, clock=clock) for _ in range(2)]
    await asyncio.gather(*(s.start() for s in services))
    try:
        yield config, services
    finally:
        await asyncio.gather(*(s.stop() for s in services))
        await drop_schema(config)


async def test_replicas_keep_each_submissions_events_in_order_and_one_audit_chain(
    replicas: tuple[RiskSettings, list[Service]],
) -> None:
    config, services = replicas
    async with (
        Producer(config) as producer,
        TopicWatcher(config, config.topic("risk.events")) as events,
        TopicWatcher(config, config.topic("gov.audit")) as checkpoints,
    ):
        subs: list[Sub] = []
        for _ in range(SUBMISSIONS):
            accepted, sub = submission_accepted(datetime.now(UTC))
            subs.append(sub)
            await deliver(producer, config, accepted)
        for sub in subs:  # everything at once: findings, the evaluation's end, the close
            for score in (0.34, 0.67, 1.0):
                await deliver(producer, config, make_finding(sub, "cyber", score))
            await deliver(producer, config, evaluation_completed(sub, datetime.now(UTC)))
            await deliver(producer, config, window_closed(sub, datetime.now(UTC)))

        def concluded() -> bool:
            return all(events.of(s.submission_id, ReviewConcluded) for s in subs)

        await events.wait(concluded, timeout=120, what="every conclusion")
        await events.linger(2.0)
        for sub in subs:
            about = events.of(sub.submission_id)
            kinds = [type(e).__name__ for e in about]
            assessed = [e for e in about if isinstance(e, RiskAssessed)]
            assert [a.sequence for a in assessed] == [1, 2, 3], kinds
            assert [a.overall_level for a in assessed] == ["moderate", "high", "critical"]
            raised = [e for e in about if isinstance(e, EscalationRaised)]
            assert [r.level for r in raised] == ["high", "critical"]
            assert raised[1].supersedes == raised[0].escalation_id
            assert len([e for e in about if isinstance(e, RestrictionOrdered)]) == 1
            (conclusion,) = [e for e in about if isinstance(e, ReviewConcluded)]
            assert conclusion.outcome is ReviewOutcome.PENDING_REVIEW
            assert conclusion.pending_escalation_ids == [raised[1].escalation_id]
            # Events leave in the order they were decided: each escalation right after
            # the assessment that raised it, the conclusion last.
            for escalation in raised:
                before = about[about.index(escalation) - 1]
                assert isinstance(before, RiskAssessed), kinds
                assert before.assessment_id == escalation.assessment_id
            assert kinds[-1] == "ReviewConcluded", kinds
        # One checkpoint per interval, whichever replica's scheduler fired its timer: in
        # one snapshot, as many checkpoints as fired checkpoint timers (the checkpoint
        # and the timer's state commit together), each published once.
        stored, fired = await checkpoint_counts(config)
        assert fired >= 5, "the run lasted several intervals"
        assert stored == fired, f"{stored} checkpoints for {fired} intervals"
        await checkpoints.wait(lambda: len(checkpoints.records) >= stored)
        ids = [e.id for e in checkpoints.events()]
        assert len(ids) == len(set(ids)), "a checkpoint was published twice"
    applied = [sum(c.applied for c in service.consumers) for service in services]
    assert all(applied), f"both replicas applied records: {applied}"
    verified = await cli(config, "audit", "verify")
    assert verified.code == 0, verified.output
    # per submission: 2 for the high escalation, 4 for the critical one that supersedes
    # it with an interim order, 1 for the conclusion
    assert f"{SUBMISSIONS * 7} entries" in verified.stdout
