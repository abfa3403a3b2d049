"""The review-window clock: exactly one ReviewWindowClosed per accepted submission,
with several replicas, across SIGKILL and restarts; withdrawal cancels it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.events.common import RejectionReason
from contracts.events.intake import (
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from services.intake.app import build_service
from services.intake.settings import IntakeSettings
from services.runtime import RuntimeSettings, Service
from tests.intake.rig import (
    IntakeWatcher,
    create_intake_topics,
    intake_settings,
    register_labs,
    resolve_test_hosts,
)
from tests.intake.support import Signer, envelope, raw
from tests.kit import MovableClock, Producer, drop_schema
from tests.kit.manifests import manifest

DAY_S = 86_400


def closes(watcher: IntakeWatcher) -> Counter[str]:
    return Counter(
        str(e.data.submission_id)
        for e in watcher.events()
        if isinstance(e.data, ReviewWindowClosed)
    )


def acceptances(watcher: IntakeWatcher) -> dict[str, SubmissionAccepted]:
    return {
        str(e.data.submission_id): e.data
        for e in watcher.events()
        if isinstance(e.data, SubmissionAccepted)
    }


@pytest.fixture
async def io(
    settings: RuntimeSettings, kafka: str, database: str
) -> AsyncIterator[tuple[IntakeSettings, Producer, IntakeWatcher]]:
    """A rig's settings (real 86 400-second days), topics, a producer and a watcher."""
    config = intake_settings(settings)
    await create_intake_topics(config)
    async with (
        Producer(config) as producer,
        IntakeWatcher(config, config.topic("intake.events")) as watcher,
    ):
        yield config, producer, watcher
    await drop_schema(config)


async def file_all(producer: Producer, topic: str, lab: Signer, days: list[int]) -> list[uuid.UUID]:
    ids = []
    for requested in days:
        filed = lab.filed(manifest(lab.lab_id, requested_review_days=requested))
        event = envelope(filed)
        await producer.send(topic, raw(event), event.subject)
        ids.append(filed.submission_id)
    return ids


async def test_two_replicas_close_each_window_exactly_once(
    io: tuple[IntakeSettings, Producer, IntakeWatcher],
) -> None:
    base, producer, watcher = io
    submissions = base.topic("lab.submissions")
    # Real 86 400-second days; the injected clock jumps over them.
    config = base.model_copy(update={"timer_batch": 1})
    clock = MovableClock()
    replicas: list[Service] = [
        build_service(config, clock=clock, resolver=resolve_test_hosts) for _ in range(2)
    ]
    lab = Signer("clock-lab", "c1")
    await register_labs(config, [lab])
    try:
        for replica in replicas:
            await replica.start()
        days = [1, 2, 3, 4, 5, 6, 25, 26, 27, 28, 29, 30]
        ids = await file_all(producer, submissions, lab, days)
        await watcher.wait(lambda: len(acceptances(watcher)) == len(ids), what="acceptances")
        withdrawn = [ids[2], ids[8]]
        for submission_id in withdrawn:
            await producer.send(
                submissions, raw(envelope(lab.withdrawal(submission_id))), str(submission_id)
            )
        await watcher.wait(
            lambda: sum(isinstance(e.data, SubmissionWithdrawn) for e in watcher.events()) == 2,
            what="withdrawals",
        )
        accepted = acceptances(watcher)
        assert [accepted[str(i)].review_days for i in ids] == days
        assert not closes(watcher), "nothing is due yet"

        clock.advance(6 * DAY_S + 60)
        first = {str(i) for i, d in zip(ids, days, strict=True) if d <= 6} - {str(ids[2])}
        await watcher.wait(lambda: set(closes(watcher)) == first, what="first windows closed")
        clock.advance(25 * DAY_S)
        due = {str(i) for i in ids} - {str(i) for i in withdrawn}
        await watcher.wait(lambda: set(closes(watcher)) == due, what="all windows closed")
        await asyncio.sleep(1.5)  # a second close would show up now
    finally:
        for replica in replicas:
            await replica.stop()

    counts = closes(watcher)
    assert set(counts) == due and set(counts.values()) == {1}, counts
    assert sum(r.scheduler.fired for r in replicas if r.scheduler) == len(due)
    for event in watcher.events():
        if isinstance(event.data, ReviewWindowClosed):
            decision = accepted[str(event.data.submission_id)]
            assert event.data.deadline == decision.deadline
            assert event.data.closed_at >= decision.deadline
            assert event.data.model_id == decision.model_id


async def test_withdrawal_after_the_deadline_is_refused_before_the_clock_polls(
    io: tuple[IntakeSettings, Producer, IntakeWatcher],
) -> None:
    base, producer, watcher = io
    submissions = base.topic("lab.submissions")
    # The scheduler polls once at start, then sleeps for an hour: the deadline passes
    # while it sleeps, as it may between two polls.
    config = base.model_copy(update={"timer_poll_s": 3600.0})
    clock = MovableClock()
    service = build_service(config, clock=clock, resolver=resolve_test_hosts)
    lab = Signer("late-lab", "l1")
    await register_labs(config, [lab])
    try:
        await service.start()
        [submission_id] = await file_all(producer, submissions, lab, [1])
        await watcher.wait(lambda: str(submission_id) in acceptances(watcher), what="acceptance")
        deadline = acceptances(watcher)[str(submission_id)].deadline

        clock.advance(DAY_S)  # past the deadline; the clock has not closed the window
        # Signed now: freshness is judged against the broker's append time, the
        # deadline against intake's (moved) clock.
        request = envelope(lab.withdrawal(submission_id))
        await producer.send(submissions, raw(request), request.subject)
        answer = await watcher.answer(request.id)
        assert isinstance(answer.data, WithdrawalRejected), answer.data
        assert answer.data.reason is RejectionReason.INVALID_STATE
        assert f"window closed at {deadline.isoformat()}" in answer.data.detail
        async with service.pool.acquire() as conn:
            window = await conn.fetchval(
                "SELECT state FROM timers WHERE kind = 'review-window' AND key = $1",
                str(submission_id),
            )
        assert window == "pending", "the refused withdrawal did not cancel the close"

        # The next poll closes the window as scheduled.
        assert service.scheduler is not None
        assert await service.scheduler.fire_due() == 1
        await watcher.wait(lambda: closes(watcher) == {str(submission_id): 1}, what="the close")
    finally:
        await service.stop()


def replica_env(config: IntakeSettings) -> dict[str, str]:
    return os.environ | {
        "FR_KAFKA_BOOTSTRAP": config.kafka_bootstrap,
        "FR_DATABASE_URL": config.database_url,
        "FR_SERVICE_NAME": config.service_name,
        "FR_DB_SCHEMA": config.db_schema,
        "FR_TOPIC_PREFIX": config.topic_prefix,
        "FR_INTAKE_SECONDS_PER_DAY": str(config.intake_seconds_per_day),
        "FR_TIMER_POLL_S": "0.1",
        "FR_HTTP_PORT": "none",
        # The example manifest's endpoint, exempt from resolution (it is not a real host).
        "FR_INTAKE_ENDPOINT_ALLOWLIST": '["eval.example-lab.test:443"]',
        "FR_RELAY_POLL_INTERVAL_S": "0.2",
        "FR_GRACEFUL_TIMEOUT_S": "5",
        "FR_LOG_JSON": "false",
        "FR_LOG_LEVEL": "WARNING",
    }


class Replica:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "services.intake"], env=self.env)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_window_closes_exactly_once_when_replicas_are_killed_around_the_deadline(
    io: tuple[IntakeSettings, Producer, IntakeWatcher],
) -> None:
    base, producer, watcher = io
    submissions = base.topic("lab.submissions")
    config = base.model_copy(update={"intake_seconds_per_day": 5.0})
    lab = Signer("kill-lab", "k1")
    await register_labs(config, [lab])

    a, b = Replica(replica_env(config)), Replica(replica_env(config))
    started = time.monotonic()
    try:
        a.start()
        b.start()
        days = [1, 1, 1, 2, 2, 2, 3, 3, 3]  # windows of 5, 10 and 15 seconds
        ids = await file_all(producer, submissions, lab, days)
        await watcher.wait(lambda: len(acceptances(watcher)) == 9, timeout=60, what="acceptances")
        withdrawn = ids[8]
        await producer.send(submissions, raw(envelope(lab.withdrawal(withdrawn))), str(withdrawn))
        await watcher.wait(
            lambda: any(isinstance(e.data, SubmissionWithdrawn) for e in watcher.events()),
            what="withdrawal",
        )
        accepted = acceptances(watcher)
        deadlines = {
            n: max(accepted[str(i)].deadline for i, d in zip(ids, days, strict=True) if d == n)
            for n in (1, 2, 3)
        }
        first = min(accepted[str(i)].deadline for i, d in zip(ids, days, strict=True) if d == 1)
        assert datetime.now(UTC) < first, "too slow to kill before the first deadline"

        # Both replicas die around the first deadline; nobody runs when it passes.
        await sleep_until(first - (first - datetime.now(UTC)) / 2)
        a.kill()
        await sleep_until(deadlines[1])
        b.kill()
        await asyncio.sleep(1.0)
        a.start()
        b.start()
        # The second deadline passes with both running; one dies before the third.
        await sleep_until(deadlines[3] - (deadlines[3] - deadlines[2]) / 2)
        b.kill()
        due = {str(i) for i in ids} - {str(withdrawn)}
        await watcher.wait(lambda: set(closes(watcher)) == due, timeout=60, what="all closes")
        await asyncio.sleep(2.0)  # a duplicate would arrive now
    finally:
        a.stop()
        b.stop()

    counts = closes(watcher)
    assert set(counts) == due and set(counts.values()) == {1}, counts
    for event in watcher.events():
        data: Any = event.data
        if isinstance(data, ReviewWindowClosed):
            assert data.closed_at >= accepted[str(data.submission_id)].deadline
    assert time.monotonic() - started < 120
