"""A running risk service (real Kafka + PostgreSQL) with its own topics, schema, audit key
and registered reviewers, and the one way its tests feed it what other services publish.

``Rig.deliver(data)`` produces an event of another service (SubmissionAccepted,
FindingRecorded, ReviewWindowClosed, RestrictionLifted ...) onto the rig's prefixed
registry topic, keyed and enveloped as that service's outbox would; reviewers' decisions
go through ``services.risk.reviewer`` (what the reviewer's CLI runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import CloudEvent, Event, encode, make_event
from contracts.events import (
    EvaluationCompleted,
    FindingRecorded,
    ReviewWindowClosed,
    SubmissionAccepted,
)
from contracts.events.common import RiskDomain
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from contracts.events.risk import EscalationDecision
from contracts.principals import Role
from contracts.registry import LAB_FEED_BY_SUFFIX, subject_for, topic_for
from services.risk import keys
from services.risk.app import SCHEMA, build_service
from services.risk.reviewer import Answer, build_decision, submit
from services.risk.settings import RiskSettings
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from services.trust import registry
from services.trust.principals import REVIEWER, PrincipalKey
from tests.contracts.examples import example
from tests.kit import (
    MovableClock,
    Producer,
    TopicWatcher,
    create_feeds,
    create_registry_topics,
    drop_schema,
    lab_settings,
    process_env,
)
from tests.kit import isolated as isolated_settings
from tests.risk.support import PROXY_SUITES, completed_event, finding

E = TypeVar("E", bound=Event)

TOPICS = (
    "intake.events",
    "evaluation.events",
    "reviewers.decisions",
    "access.events",
    "risk.events",
    "gov.findings",
    "gov.audit",
)
REVIEWER_IDS = ("r1", "r2", "r3")


def risk_settings(base: RuntimeSettings, key_dir: Path, **extra: Any) -> RiskSettings:
    """Settings for one rig: its own name, schema, topics and audit key."""
    values: dict[str, Any] = {
        "http_port": None,
        "risk_service_key_file": key_dir / f"audit-{uuid.uuid4().hex[:6]}.pem",
        "risk_service_key_id": "risk-test-1",
        "risk_nonce_purge_interval_s": 3600.0,
    }
    return isolated_settings(base, RiskSettings, "risk", **(values | extra))


def environment(settings: RiskSettings, **extra: str) -> dict[str, str]:
    """The settings as FR_* variables, for ``python -m services.risk`` and its CLI."""
    return process_env(settings, FR_HTTP_PORT="none", **extra)


@dataclass(frozen=True)
class Ran:
    """What a CLI run printed and how it exited."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def cli(settings: RiskSettings, *args: str, timeout: float = 90.0) -> Ran:
    """``python -m services.risk.cli *args`` as an operator or reviewer runs it (in a
    process of its own, while the rig's service keeps running in this event loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.risk.cli",
        *args,
        env=environment(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


@dataclass(frozen=True)
class Reviewer:
    reviewer_id: str
    key_id: str
    key: Ed25519PrivateKey
    key_file: Path


@dataclass(frozen=True)
class Submission:
    submission_id: UUID
    lab_id: str
    model_id: str
    deadline: datetime


async def register_reviewers(settings: RiskSettings, key_dir: Path) -> dict[str, Reviewer]:
    reviewers: dict[str, Reviewer] = {}
    await create_feeds(settings, Role.REVIEWER, *REVIEWER_IDS)  # as registering provisions
    async with connect(settings, SCHEMA) as conn:
        for reviewer_id in REVIEWER_IDS:
            path = key_dir / f"{reviewer_id}-{uuid.uuid4().hex[:6]}.key"
            key = keys.generate(path)
            now = datetime.now().astimezone()
            assert await registry.register(conn, REVIEWER, reviewer_id, reviewer_id, now) is None
            public = key.public_key().public_bytes_raw()
            key_id = f"{reviewer_id}-k1"  # a key id belongs to one reviewer for ever
            record = PrincipalKey("reviewer", reviewer_id, key_id, public, now, None, None)
            assert await registry.add_key(conn, REVIEWER, record, now) is None
            reviewers[reviewer_id] = Reviewer(reviewer_id, key_id, key, path)
    return reviewers


@dataclass
class Rig:
    settings: RiskSettings
    service: Service
    clock: MovableClock
    producer: Producer
    events: TopicWatcher  # risk.events
    feed: TopicWatcher  # gov.findings
    checkpoints: TopicWatcher  # gov.audit
    reviewers: dict[str, Reviewer]
    key_dir: Path

    # --- what other services publish ----------------------------------------------------

    async def deliver(
        self, data: Event, *, event_id: str | None = None, source: str | None = None
    ) -> CloudEvent[Event]:
        """``data`` on its registry topic under the rig's prefix, as its producer sends it."""
        return await deliver(self.producer, self.settings, data, event_id=event_id, source=source)

    async def submission(self, *, days: int = 14) -> Submission:
        """A new accepted submission (intake's SubmissionAccepted) of a new lab, whose
        feeds exist as registering the lab provisions them: its copies are delivered,
        not parked."""
        accepted, sub = submission_accepted(self.clock.now(), days=days)
        await create_feeds(self.settings, Role.LAB, sub.lab_id)
        await self.deliver(accepted)
        return sub

    def finding(
        self,
        sub: Submission,
        domain: RiskDomain | str = RiskDomain.CYBER,
        score: float = 1.0,
        **options: Any,
    ) -> FindingRecorded:
        """A FindingRecorded of the proxy suite of ``domain`` (see ``make_finding``)."""
        return make_finding(sub, domain, score, **({"recorded_at": self.clock.now()} | options))

    def completed(
        self, sub: Submission, statuses: Mapping[RiskDomain, SuiteStatus] | None = None
    ) -> EvaluationCompleted:
        return evaluation_completed(sub, self.clock.now(), statuses)

    def window_closed(self, sub: Submission) -> ReviewWindowClosed:
        return window_closed(sub, self.clock.now())

    # --- reviewers ----------------------------------------------------------------------

    def order(self, **scope: Any) -> dict[str, Any]:
        """An order reviewers sign: effective now, compliance within a day (rig clock)."""
        now = self.clock.now()
        return {
            "scope": scope or {"nationality_rule": "any", "country_groups": ["arms-embargoed"]},
            "effective_at": now.isoformat(),
            "expires_at": (now + timedelta(days=180)).isoformat(),
            "compliance_deadline": (now + timedelta(days=1)).isoformat(),
        }

    async def decide(
        self,
        reviewer: str | Reviewer,
        escalation_id: UUID,
        submission_id: UUID,
        decision: EscalationDecision,
        *,
        order: Mapping[str, Any] | None = None,
        interim_order_id: UUID | None = None,
        key: Ed25519PrivateKey | None = None,
        key_id: str | None = None,
    ) -> Answer:
        """Sign and submit a decision as the reviewer's CLI does; the service's answer."""
        who = self.reviewers[reviewer] if isinstance(reviewer, str) else reviewer
        signed = build_decision(
            escalation_id=escalation_id,
            submission_id=submission_id,
            reviewer_id=who.reviewer_id,
            key_id=key_id or who.key_id,
            key=key or who.key,
            decision=decision,
            justification=f"{who.reviewer_id} checked the evidence.",
            order=order,
            interim_order_id=interim_order_id,
        )
        return await submit(self.settings, signed, within_s=30)

    # --- looking -------------------------------------------------------------------------

    def lab_answers(self, lab_id: str) -> TopicWatcher:
        """A watcher of the lab's own feed, ``labs.<lab>.answers`` under the rig's prefix
        (enter it with ``async with``)."""
        types = {event.TYPE: event for event in LAB_FEED_BY_SUFFIX["answers"].events}
        feed = lab_settings(self.settings, lab_id).feed("answers")
        return TopicWatcher(self.settings, feed, types)

    def of(self, sub: Submission | UUID, kind: type[E]) -> list[E]:
        sid = sub.submission_id if isinstance(sub, Submission) else sub
        return [e for e in self.events.of(sid, kind)]

    def envelopes(self, subject: object, kind: type[Event]) -> list[CloudEvent[Event]]:
        """The CloudEvents on risk.events keyed by ``subject`` of type ``kind``."""
        return [
            e
            for e in self.events.events()
            if e.subject == str(subject) and isinstance(e.data, kind)
        ]

    async def one(self, sub: Submission | UUID, kind: type[E], *, timeout: float = 30.0) -> E:
        """Wait for the first ``kind`` about ``sub`` on risk.events."""
        await self.events.wait(
            lambda: bool(self.of(sub, kind)), timeout=timeout, what=kind.__name__
        )
        return self.of(sub, kind)[0]

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(
            self.settings.database_url, server_settings={"search_path": self.settings.db_schema}
        )
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


async def deliver(
    producer: Producer,
    settings: RuntimeSettings,
    data: Event,
    *,
    event_id: str | None = None,
    source: str | None = None,
) -> CloudEvent[Event]:
    """The one way tests feed the risk service what other services publish: ``data`` on
    its registry topic under the settings' prefix, keyed and enveloped as its producer's
    outbox would."""
    topic = topic_for(type(data))
    event = make_event(
        data,
        source=source or f"/frontier-review/{topic.producer}",
        subject=subject_for(data),
        event_id=event_id,
    )
    await producer.send(settings.topic(topic.name), encode(event), event.subject)
    return event


def submission_accepted(now: datetime, *, days: int = 14) -> tuple[SubmissionAccepted, Submission]:
    lab = f"lab-{uuid.uuid4().hex[:6]}"
    accepted = example(
        SubmissionAccepted,
        submission_id=uuid.uuid4(),
        lab_id=lab,
        model_id=f"{lab}/model@1.0.0",
        accepted_at=now,
        deadline=now + timedelta(days=days),
    )
    return accepted, Submission(accepted.submission_id, lab, accepted.model_id, accepted.deadline)


def make_finding(
    sub: Submission,
    domain: RiskDomain | str = RiskDomain.CYBER,
    score: float = 1.0,
    *,
    capability: str | None = None,
    method: str = "automated",
    evaluator: str = "agency",
    finding_id: UUID | None = None,
    recorded_at: datetime | None = None,
) -> FindingRecorded:
    """A FindingRecorded of the proxy suite of ``domain`` (or an external evaluator's)."""
    domain = RiskDomain(domain)
    suite, _, proxy_capability = next(s for s in PROXY_SUITES if s[1] is domain)
    return finding(
        domain,
        capability or proxy_capability,
        score,
        suite_id=suite,
        method=method,
        evaluator=evaluator,
        finding_id=finding_id,
        submission_id=sub.submission_id,
        model_id=sub.model_id,
        recorded_at=recorded_at or datetime.now().astimezone(),
    )


def evaluation_completed(
    sub: Submission, now: datetime, statuses: Mapping[RiskDomain, SuiteStatus] | None = None
) -> EvaluationCompleted:
    """Every proxy suite ended (completed, unless ``statuses`` says otherwise)."""
    return completed_event(
        statuses or {},
        submission_id=sub.submission_id,
        model_id=sub.model_id,
        ended_by=EvaluationEnd.ALL_SUITES_ENDED,
        at=now,
    )


def window_closed(sub: Submission, now: datetime) -> ReviewWindowClosed:
    return ReviewWindowClosed(
        submission_id=sub.submission_id,
        lab_id=sub.lab_id,
        model_id=sub.model_id,
        deadline=sub.deadline,
        closed_at=now,
    )


async def create_risk_topics(settings: RuntimeSettings) -> None:
    await create_registry_topics(settings, *TOPICS)


@contextlib.asynccontextmanager
async def running_rig(base: RuntimeSettings, key_dir: Path, **extra: Any) -> AsyncIterator[Rig]:
    settings = risk_settings(base, key_dir, **extra)
    keys.generate(settings.risk_service_key_file)
    await create_risk_topics(settings)
    reviewers = await register_reviewers(settings, key_dir)
    clock = MovableClock()
    service = build_service(settings, clock=clock)
    await service.start()
    try:
        async with (
            Producer(settings) as producer,
            TopicWatcher(settings, settings.topic("risk.events")) as events,
            TopicWatcher(settings, settings.topic("gov.findings")) as feed,
            TopicWatcher(settings, settings.topic("gov.audit")) as checkpoints,
        ):
            yield Rig(
                settings, service, clock, producer, events, feed, checkpoints, reviewers, key_dir
            )
    finally:
        await service.stop()
        await drop_schema(settings)
