"""The evaluation service: plans evaluations of accepted submissions, runs them from a
leased job queue with inspect_ai, and records findings (automated and external)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from contracts.registry import TOPIC_BY_NAME
from services.evaluation.handlers import Handlers
from services.evaluation.housekeeping import NoncePurger
from services.evaluation.runner import InspectRunner, Runner
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import load_registry
from services.evaluation.worker import Worker
from services.runtime.service import Service
from services.runtime.telemetry import configure_logging

MIGRATIONS = Path(__file__).parent / "migrations"
NAME = "evaluation"


def build_service(
    settings: EvaluationSettings | None = None,
    *,
    name: str = NAME,
    runner: Runner | None = None,
) -> Service:
    """Consumers of intake.events and evaluators.findings, the relay, the nonce purge,
    and (unless ``worker_enabled`` is off) a worker in the same process."""
    settings = settings or EvaluationSettings()
    service = Service(name, settings=settings, schema=settings.db_schema, migrations=MIGRATIONS)
    handlers = Handlers(settings, load_registry(settings.suite_registry))
    service.consume(
        settings.intake_topic,
        handlers.intake_event,
        event_types=TOPIC_BY_NAME["intake.events"].event_types,
    )
    service.consume(
        settings.external_findings_topic,
        handlers.external_finding,
        event_types=TOPIC_BY_NAME["evaluators.findings"].event_types,
        on_invalid=handlers.invalid_external_finding,
    )
    service.publishes(TOPIC_BY_NAME["evaluation.events"])
    service.background(NoncePurger(lambda: service.pool, settings).run)
    if settings.worker_enabled:
        service.background(attach_worker(service, settings, runner).run)
    return service


def build_worker(
    settings: EvaluationSettings | None = None, *, name: str = NAME, runner: Runner | None = None
) -> Service:
    """A worker-only process: no consumers and no relay (the service's relay publishes
    what workers write to the outbox; the NOTIFY trigger wakes it)."""
    settings = settings or EvaluationSettings()
    service = Service(
        name, settings=settings, schema=settings.db_schema, migrations=MIGRATIONS, relay=False
    )
    service.background(attach_worker(service, settings, runner).run)
    return service


def attach_worker(
    service: Service, settings: EvaluationSettings, runner: Runner | None = None
) -> Worker:
    return Worker(
        pool=lambda: service.pool,
        settings=settings,
        runner=runner
        or InspectRunner(
            secret_env_prefix=settings.secret_env_prefix,
            env_passthrough=settings.inspect_env_passthrough,
        ),
        source=service.source,
        schema=service.schema,
        tracer_provider=service.tracer_provider,
    )


async def serve_worker(service: Service) -> None:
    """Run until SIGTERM/SIGINT; running jobs are then given back (released)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.open_database()
    await service.start_relay()  # starts the background jobs (this service has no relay)
    try:
        await stop.wait()
    finally:
        await service.close()


def run_worker(settings: EvaluationSettings | None = None) -> None:
    service = build_worker(settings)
    configure_logging(service.settings)
    asyncio.run(serve_worker(service))
