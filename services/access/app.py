"""Access: restriction orders become versioned Cedar policies the labs enforce.

Consumes risk.events (RestrictionOrdered, RestrictionLiftOrdered),
lab.compliance (signed ComplianceAcknowledged) and intake.registry (the labs'
keys, LabRegistryChanged: one registry, intake's); publishes each model's policy
versions on the compacted access.policies (keyed by model id) and
RestrictionLifted, ComplianceOverdue and ComplianceRejected on access.events,
all through the outbox; fires the order-effective, order-expiry and
compliance-overdue timers exactly once; serves the agency API (impact preview).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.events.intake import LabRegistryChanged
from contracts.events.lab import ComplianceAcknowledged
from contracts.events.risk import (
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewerDecisionRejected,
    RiskAssessed,
)
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME
from services.access import queries
from services.access.api import agency_api
from services.access.country_groups import load_country_groups
from services.access.handlers import AccessHandlers
from services.access.policies import COMPLIANCE_OVERDUE, ORDER_EFFECTIVE, ORDER_EXPIRY
from services.access.settings import AccessSettings
from services.runtime import Clock, Service
from services.trust import TRUST_SQL
from services.trust.answers import RefusalCountPurge
from services.trust.freshness import FreshnessPolicy
from services.trust.nonces import NoncePurge

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.metrics import Samples

MIGRATIONS = Path(__file__).parent / "migrations"
RISK_EVENTS = TOPIC_BY_NAME["risk.events"]
POLICIES = TOPIC_BY_NAME["access.policies"]
EVENTS = TOPIC_BY_NAME["access.events"]
COMPLIANCE = TOPIC_BY_NAME["lab.compliance"]
LAB_REGISTRY = TOPIC_BY_NAME["intake.registry"]


def build_service(settings: AccessSettings | None = None, *, clock: Clock | None = None) -> Service:
    settings = settings or AccessSettings()
    service = Service(
        settings,
        migrations=[TRUST_SQL, MIGRATIONS],
        clock=clock,
        description=__doc__,
        role=Role.ACCESS,
    )
    groups = load_country_groups(settings.access_country_groups_file)
    freshness = FreshnessPolicy()
    handlers = AccessHandlers(settings, groups, freshness)
    service.consume(
        RISK_EVENTS,
        {RestrictionOrdered: handlers.ordered, RestrictionLiftOrdered: handlers.lift_ordered},
        ignore=[
            RiskAssessed,
            EscalationRaised,
            EscalationDecided,
            ReviewerDecisionRejected,
            EscalationOverdue,
            ReviewConcluded,
        ],
    )
    service.consume(
        COMPLIANCE,
        {ComplianceAcknowledged: handlers.acknowledged},
        on_invalid=handlers.invalid_acknowledgement,
    )
    service.consume(LAB_REGISTRY, {LabRegistryChanged: handlers.lab_registry_changed})
    service.publishes(POLICIES)
    service.publishes(EVENTS)
    service.timer(ORDER_EFFECTIVE, handlers.order_effective)
    service.timer(ORDER_EXPIRY, handlers.order_expired)
    service.timer(COMPLIANCE_OVERDUE, handlers.compliance_overdue)
    service.background(NoncePurge(lambda: service.pool, service.clock.now, freshness))
    service.background(
        RefusalCountPurge(
            lambda: service.pool,
            service.clock.now,
            timedelta(days=settings.access_refusal_counts_keep_days),
        )
    )
    service.http(agency_api(settings, lambda: service.pool, groups, service.clock))
    policy_metrics(service)
    return service


def policy_metrics(service: Service) -> None:
    """Policy versions and compliance on /metrics (read at scrape time; the same on
    every replica)."""

    async def published(conn: Connection) -> Samples:
        return {(): await queries.policy_versions_published(conn)}

    async def overdue(conn: Connection) -> Samples:
        return {(): await queries.compliance_overdue_now(conn)}

    async def failing_closed(conn: Connection) -> Samples:
        return {(): await queries.models_failing_closed(conn)}

    async def point_versions(conn: Connection) -> Samples:
        return {key: v for key, v in (await queries.enforcement_point_versions(conn)).items()}

    async def points_behind(conn: Connection) -> Samples:
        return {(lab,): n for lab, n in (await queries.enforcement_points_behind(conn)).items()}

    service.metrics.query(
        "access_policy_versions_published",
        "Policy versions published, over every model.",
        published,
        counter=True,
    )
    service.metrics.query(
        "access_compliance_overdue",
        "Models whose current policy version is past its deadline and still unacknowledged.",
        overdue,
    )
    service.metrics.query(
        "access_models_failing_closed",
        "Models whose current policy version compiled an order fail closed (see cli models).",
        failing_closed,
    )
    service.metrics.query(
        "access_enforcement_point_policy_version",
        "The highest policy version each of a lab's enforcement points acknowledged "
        f"enforcing, per model (at most {queries.MAX_ENFORCEMENT_POINT_SERIES} series).",
        point_versions,
        ("lab", "model", "enforcement_point"),
    )
    service.metrics.query(
        "access_enforcement_points_behind",
        "Enforcement points whose last acknowledged version of a model is older than its "
        "current version, per lab.",
        points_behind,
        ("lab",),
    )
