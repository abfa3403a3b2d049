"""The risk service as its own process (``python -m services.risk``), killed with SIGKILL
and started again: the escalation, its interim restriction and the decision deadline's
one reminder each happen exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from contracts.events import EscalationRaised, RestrictionOrdered, RiskAssessed
from contracts.events.risk import EscalationOverdue
from services.risk import keys
from services.risk.settings import RiskSettings
from services.runtime import RuntimeSettings
from tests.kit import Producer, TopicWatcher, drop_schema, wait_for
from tests.risk.rig import (
    create_risk_topics,
    deliver,
    environment,
    make_finding,
    risk_settings,
    submission_accepted,
)

SECONDS_PER_DAY = 4.0  # the policy's P2D decision deadline lasts 8 s


class Process:
    """``python -m services.risk`` with the rig's settings; SIGKILL or SIGTERM to stop."""

    def __init__(self, settings: RiskSettings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.risk"],
            env=environment(self.settings, FR_LOG_LEVEL="WARNING"),
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


async def applied(config: RiskSettings, findings: int) -> bool:
    """The service applied ``findings`` records of evaluation.events (its inbox)."""
    conn = await asyncpg.connect(config.database_url)
    try:
        count = await conn.fetchval(
            f'SELECT count(*) FROM "{config.db_schema}".inbox WHERE topic = $1',
            config.topic("evaluation.events"),
        )
    finally:
        await conn.close()
    return bool(count == findings)


@pytest.fixture
def process(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path: Path
) -> Iterator[Process]:
    config = risk_settings(
        settings,
        tmp_path,
        risk_seconds_per_day=SECONDS_PER_DAY,
        risk_checkpoint_interval_s=3600.0,
    )
    keys.generate(config.risk_service_key_file)
    running = Process(config)
    yield running
    running.stop()


async def test_escalation_interim_order_and_reminder_happen_once_across_sigkill(
    process: Process,
) -> None:
    config = process.settings
    await create_risk_topics(config)
    process.start()
    accepted, sub = submission_accepted(datetime.now(UTC))
    try:
        async with (
            Producer(config) as producer,
            TopicWatcher(config, config.topic("risk.events")) as events,
        ):

            def count(kind: type) -> int:
                return len(events.of(sub.submission_id, kind))

            finding = make_finding(sub, "cyber", 1.0)
            await deliver(producer, config, accepted)
            await deliver(producer, config, finding)
            await events.wait(lambda: count(EscalationRaised) == 1, timeout=60, what="escalation")
            process.kill()  # the interim order may or may not have left: same transaction

            process.start()
            await events.wait(lambda: count(RestrictionOrdered) == 1, timeout=60, what="interim")
            (raised,) = events.of(sub.submission_id, EscalationRaised)
            assert raised.decide_by is not None
            await events.wait(lambda: count(EscalationOverdue) == 1, timeout=60, what="reminder")
            process.kill()  # right after the reminder: its timer fired, exactly once

            process.start()
            await deliver(producer, config, finding)  # the finding again (a re-publication)
            await wait_for(lambda: applied(config, 2), timeout=60, what="the redelivery applied")
            await events.linger(2.0)
            assert count(RiskAssessed) == 1
            assert count(EscalationRaised) == 1
            assert count(RestrictionOrdered) == 1
            assert count(EscalationOverdue) == 1
            (reminder,) = events.of(sub.submission_id, EscalationOverdue)
            assert reminder.escalation_id == raised.escalation_id
            assert reminder.reminded_at >= raised.decide_by
    finally:
        process.stop()
        await drop_schema(config)
