"""Access: restriction orders become versioned Cedar policies the labs enforce.

Consumes risk.events (RestrictionOrdered, RestrictionLiftOrdered) and
lab.compliance (signed ComplianceAcknowledged); publishes each model's policy
versions on the compacted access.policies (keyed by model id) and
RestrictionLifted, ComplianceOverdue and ComplianceRejected on access.events,
all through the outbox; fires the order-effective, order-expiry and
compliance-overdue timers exactly once; serves the agency API (impact preview).
"""

from __future__ import annotations

from pathlib import Path

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
from services.access.api import agency_api
from services.access.country_groups import load_country_groups
from services.access.handlers import AccessHandlers
from services.access.policies import COMPLIANCE_OVERDUE, ORDER_EFFECTIVE, ORDER_EXPIRY
from services.access.settings import AccessSettings
from services.runtime import Clock, Service
from services.trust import TRUST_SQL
from services.trust.freshness import FreshnessPolicy
from services.trust.nonces import NoncePurge

MIGRATIONS = Path(__file__).parent / "migrations"
RISK_EVENTS = TOPIC_BY_NAME["risk.events"]
POLICIES = TOPIC_BY_NAME["access.policies"]
EVENTS = TOPIC_BY_NAME["access.events"]
COMPLIANCE = TOPIC_BY_NAME["lab.compliance"]


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
    service.publishes(POLICIES)
    service.publishes(EVENTS)
    service.timer(ORDER_EFFECTIVE, handlers.order_effective)
    service.timer(ORDER_EXPIRY, handlers.order_expired)
    service.timer(COMPLIANCE_OVERDUE, handlers.compliance_overdue)
    service.background(NoncePurge(lambda: service.pool, service.clock.now, freshness))
    service.http(agency_api(settings, lambda: service.pool, groups, service.clock))
    return service
