"""Intake: verifies signed lab submissions, decides, and runs the review-window clock.

Consumes lab.submissions (SubmissionFiled, WithdrawalRequested); publishes
every decision on intake.events through the outbox (and, from its CLI's
registry commands, every change of a lab's registry entry on the compacted
intake.registry: services/intake/lab_registry.py); closes each accepted
submission's review window exactly once at its deadline (a durable timer);
serves the status of a submission over HTTP.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME
from services.intake import queries, repository
from services.intake.criteria import load_criteria
from services.intake.decisions import REVIEW_WINDOW
from services.intake.handlers import IntakeHandlers
from services.intake.settings import IntakeSettings
from services.intake.status_http import status_app
from services.runtime import Clock, Service
from services.trust import TRUST_SQL
from services.trust.answers import RefusalCountPurge
from services.trust.endpoints import Resolver, system_resolver
from services.trust.nonces import NoncePurge

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.metrics import Samples

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = (TRUST_SQL, MIGRATIONS)  # the trust library's tables, then intake's
SUBMISSIONS = TOPIC_BY_NAME["lab.submissions"]
EVENTS = TOPIC_BY_NAME["intake.events"]
REGISTRY = TOPIC_BY_NAME["intake.registry"]


def build_service(
    settings: IntakeSettings | None = None,
    *,
    clock: Clock | None = None,
    resolver: Resolver | None = None,
) -> Service:
    """``resolver`` answers the endpoint policy's DNS lookups (tests give a fixed one)."""
    settings = settings or IntakeSettings()
    service = Service(
        settings, migrations=SCHEMA, clock=clock, description=__doc__, role=Role.INTAKE
    )
    handlers = IntakeHandlers(
        settings, load_criteria(settings.intake_criteria_file), resolver or system_resolver
    )
    service.consume(
        SUBMISSIONS,
        {SubmissionFiled: handlers.filed, WithdrawalRequested: handlers.withdrawal},
        on_invalid=handlers.invalid,
    )
    service.publishes(EVENTS)
    service.publishes(REGISTRY)  # rows the registry commands wrote; this relay sends them
    service.timer(REVIEW_WINDOW, handlers.window_due)

    service.background(NoncePurge(lambda: service.pool, service.clock.now, settings.freshness()))

    async def prune() -> None:
        while True:
            now = service.clock.now()
            async with service.pool.acquire() as conn:
                await repository.prune(
                    conn, history_before=now - timedelta(days=settings.intake_history_keep_days)
                )
            await asyncio.sleep(settings.intake_prune_every_s)

    service.background(prune)
    service.background(
        RefusalCountPurge(
            lambda: service.pool,
            service.clock.now,
            timedelta(days=settings.intake_refusal_counts_keep_days),
            settings.intake_prune_every_s,
        )
    )
    service.http(status_app(lambda: service.pool))
    submission_metrics(service)
    return service


def submission_metrics(service: Service) -> None:
    """Intake's decisions and refusals on /metrics (read at scrape time; the same on
    every replica).
    Open review windows are the runtime's ``timers_pending{kind="review-window"}``."""

    async def by_state(conn: Connection) -> Samples:
        return {key: n for key, n in (await queries.submissions_by_state(conn)).items()}

    async def refusals(conn: Connection) -> Samples:
        found = await queries.recent_refusals(conn, service.clock.now())
        return {(reason,): n for reason, n in found.items()}

    service.metrics.query(
        "intake_refusals_recent",
        "Refused input that could not speak for a submission (unauthenticated, stale, "
        "about another lab's id), by reason, in the current and the previous clock hour.",
        refusals,
        ("reason",),
    )
    service.metrics.query(
        "intake_submissions",
        "Submissions by state (accepted, rejected, withdrawn, closed) and the reason code "
        "of intake's decision.",
        by_state,
        ("state", "reason"),
    )
