"""Intake: verifies signed lab submissions, decides, and runs the review-window clock.

Consumes lab.submissions (SubmissionFiled, WithdrawalRequested); publishes
every decision on intake.events through the outbox; closes each accepted
submission's review window exactly once at its deadline; serves the status
of a submission over HTTP.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from contracts.registry import TOPIC_BY_NAME
from services.intake.clock import Clock, SystemClock
from services.intake.criteria import load_criteria
from services.intake.handlers import IntakeHandlers
from services.intake.settings import IntakeSettings
from services.intake.status_http import serve, status_app
from services.intake.window_clock import ReviewWindowClock
from services.runtime.service import Service

MIGRATIONS = Path(__file__).parent / "migrations"
SUBMISSIONS = TOPIC_BY_NAME["lab.submissions"]
EVENTS = TOPIC_BY_NAME["intake.events"]


def build_service(settings: IntakeSettings | None = None, *, clock: Clock | None = None) -> Service:
    settings = settings or IntakeSettings()
    clock = clock or SystemClock()
    service = Service(
        settings.intake_name,
        settings=settings,
        schema=settings.intake_schema,
        migrations=MIGRATIONS,
    )
    service.__doc__ = __doc__
    handlers = IntakeHandlers(settings, load_criteria(settings.intake_criteria_file), clock)
    service.consume(
        settings.intake_submissions_topic,
        handlers.handle,
        event_types=SUBMISSIONS.event_types,
        on_invalid=handlers.on_invalid,
        group=f"{settings.intake_name}.{SUBMISSIONS.name}",
    )
    service.publishes(dataclasses.replace(EVENTS, name=settings.intake_events_topic))
    service.background(ReviewWindowClock(service, settings, clock).run)
    if settings.intake_status_enabled:
        app = status_app(lambda: service.pool)

        async def serve_status() -> None:
            await serve(app, settings.intake_status_host, settings.intake_status_port)

        service.background(serve_status)
    return service
