"""Evaluation: plans an evaluation for every accepted submission, runs its suites with
inspect_ai from a leased job queue, and records findings (automated and external).

Consumes intake.events (SubmissionAccepted, ReviewWindowClosed, SubmissionWithdrawn)
and evaluators.findings (signed ExternalFindingSubmitted from assigned external
evaluators); publishes evaluation.events through the outbox. Workers (in the
service process, or worker processes of their own) run the jobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.events import (
    ExternalFindingSubmitted,
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME
from services.evaluation import isolation, queries
from services.evaluation.handlers import EvaluationHandlers
from services.evaluation.runner import InspectRunner, Runner
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suite_registry import load_registry
from services.evaluation.worker import Worker
from services.runtime import Clock, Service
from services.trust import TRUST_SQL
from services.trust.endpoints import Resolver, system_resolver
from services.trust.nonces import NoncePurge

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.metrics import Samples

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = (TRUST_SQL, MIGRATIONS)  # the trust library's tables, then evaluation's
INTAKE_EVENTS = TOPIC_BY_NAME["intake.events"]
EXTERNAL_FINDINGS = TOPIC_BY_NAME["evaluators.findings"]
EVALUATION_EVENTS = TOPIC_BY_NAME["evaluation.events"]


def build_service(
    settings: EvaluationSettings | None = None,
    *,
    clock: Clock | None = None,
    runner: Runner | None = None,
    secrets: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> Service:
    """Consumers, the relay, the nonce purge, and (unless ``evaluation_worker_enabled``
    is off) a worker in the same process. ``resolver`` answers the worker's endpoint
    checks (tests give a fixed one)."""
    settings = settings or EvaluationSettings()
    service = Service(
        settings, migrations=SCHEMA, clock=clock, description=__doc__, role=Role.EVALUATION
    )
    handlers = EvaluationHandlers(settings, load_registry(settings.evaluation_suite_registry))
    service.consume(
        INTAKE_EVENTS,
        {
            SubmissionAccepted: handlers.accepted,
            ReviewWindowClosed: handlers.window_closed,
            SubmissionWithdrawn: handlers.withdrawn,
        },
        ignore=[SubmissionRejected, WithdrawalRejected],  # nothing to evaluate
    )
    service.consume(
        EXTERNAL_FINDINGS,
        {ExternalFindingSubmitted: handlers.external_finding},
        on_invalid=handlers.invalid_external_finding,
    )
    service.publishes(EVALUATION_EVENTS)
    service.background(
        NoncePurge(
            lambda: service.pool,
            service.clock.now,
            settings.evaluation_freshness,
            interval_s=settings.evaluation_nonce_purge_interval_s,
        )
    )
    if settings.evaluation_worker_enabled:
        service.background(attach_worker(service, settings, runner, secrets, resolver).run)
    queue_metrics(service)
    return service


def build_worker(
    settings: EvaluationSettings | None = None,
    *,
    clock: Clock | None = None,
    runner: Runner | None = None,
    secrets: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> Service:
    """A worker-only process: no consumers and no relay (the service's relay, or the
    standalone one, publishes what workers write to the outbox; its NOTIFY trigger
    wakes it), so a worker needs PostgreSQL, not Kafka."""
    settings = settings or EvaluationSettings()
    service = Service(settings, migrations=SCHEMA, clock=clock, relay=False, description=__doc__)
    service.background(attach_worker(service, settings, runner, secrets, resolver).run)
    queue_metrics(service)
    return service


def queue_metrics(service: Service) -> None:
    """The job queue on /metrics (read at scrape time; the same on every replica)."""

    async def by_state(conn: Connection) -> Samples:
        return {(state,): n for state, n in (await queries.jobs_by_state(conn)).items()}

    async def oldest_wait(conn: Connection) -> Samples:
        return {(): await queries.oldest_due_job_wait(conn, service.clock.now())}

    async def expired(conn: Connection) -> Samples:
        return {(): await queries.expired_leases(conn, service.clock.now())}

    service.metrics.query(
        "evaluation_jobs",
        "Jobs in the queue by state: pending (due, or backing off) and running.",
        by_state,
        ("state",),
    )
    service.metrics.query(
        "evaluation_oldest_due_job_wait_seconds",
        "How long the longest-waiting due job has waited for a worker.",
        oldest_wait,
    )
    service.metrics.query(
        "evaluation_jobs_lease_expired",
        "Running jobs whose worker stopped renewing its lease (not yet taken back).",
        expired,
    )


def attach_worker(
    service: Service,
    settings: EvaluationSettings,
    runner: Runner | None = None,
    secrets: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> Worker:
    """A worker on ``service``'s pool and clock; ``secrets`` defaults to the ``$<prefix>*``
    variables of the environment now (the process entry point takes them out of it)."""
    if secrets is None:
        prefix = settings.evaluation_secret_env_prefix
        secrets = {name: value for name, value in os.environ.items() if name.startswith(prefix)}
    return Worker(
        pool=lambda: service.pool,
        settings=settings,
        clock=service.clock,
        runner=runner or inspect_runner(settings),
        secrets=secrets,
        tracer_provider=service.tracer_provider,
        resolver=resolver,
    )


def inspect_runner(
    settings: EvaluationSettings, *, hosts: Mapping[str, Iterable[str]] | None = None
) -> InspectRunner:
    """The runner of real Inspect processes, isolated (isolation.py), or an error saying
    which mechanism is missing. ``hosts``: names its processes resolve without DNS (tests)."""
    isolation.require_isolation()
    isolation.prepare_secrets_dir(settings.evaluation_secrets_dir)
    return InspectRunner(
        run_dir=settings.evaluation_run_dir,
        hidden=[settings.evaluation_secrets_dir, settings.evaluation_inspect_log_dir],
        secret_env_prefix=settings.evaluation_secret_env_prefix,
        env_passthrough=settings.evaluation_inspect_env_passthrough,
        connect_ports=settings.evaluation_child_connect_ports,
        hosts=hosts,
    )


def main(argv: list[str]) -> None:
    """``python -m services.evaluation [worker]``: the secrets leave the environment
    before anything else runs (they are kept in memory), then the process runs until
    SIGTERM/SIGINT (running jobs are then given back)."""
    settings = EvaluationSettings()
    secrets = isolation.take_secrets_from_environment(
        os.environ, settings.evaluation_secret_env_prefix
    )
    build = build_worker if argv == ["worker"] else build_service
    build(settings, secrets=secrets).run()
