"""Intake: verifies signed lab submissions, decides, and runs the review-window clock.

Consumes lab.submissions (SubmissionFiled, WithdrawalRequested); publishes
every decision on intake.events through the outbox; closes each accepted
submission's review window exactly once at its deadline (a durable timer);
serves the status of a submission over HTTP.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from contracts.registry import TOPIC_BY_NAME
from services.intake import repository
from services.intake.criteria import load_criteria
from services.intake.decisions import REVIEW_WINDOW
from services.intake.handlers import IntakeHandlers
from services.intake.settings import IntakeSettings
from services.intake.status_http import status_app
from services.runtime import Clock, Service

MIGRATIONS = Path(__file__).parent / "migrations"
SUBMISSIONS = TOPIC_BY_NAME["lab.submissions"]
EVENTS = TOPIC_BY_NAME["intake.events"]
NONCE_PURGE_EVERY_S = 60.0


def build_service(settings: IntakeSettings | None = None, *, clock: Clock | None = None) -> Service:
    settings = settings or IntakeSettings()
    service = Service(settings, migrations=[MIGRATIONS], clock=clock, description=__doc__)
    handlers = IntakeHandlers(settings, load_criteria(settings.intake_criteria_file))
    service.consume(
        SUBMISSIONS,
        {SubmissionFiled: handlers.filed, WithdrawalRequested: handlers.withdrawal},
        on_invalid=handlers.invalid,
    )
    service.publishes(EVENTS)
    service.timer(REVIEW_WINDOW, handlers.window_due)

    async def purge_nonces() -> None:
        # Inputs issued before now - skew are refused as stale before their nonce is
        # checked; twice the skew leaves margin for clock steps.
        while True:
            cutoff = service.clock.now() - 2 * timedelta(seconds=settings.intake_max_clock_skew_s)
            async with service.pool.acquire() as conn:
                await repository.purge_nonces(conn, cutoff)
            await asyncio.sleep(NONCE_PURGE_EVERY_S)

    service.background(purge_nonces)
    service.http(status_app(lambda: service.pool))
    return service
