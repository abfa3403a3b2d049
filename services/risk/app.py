"""Risk: turns a submission's findings into risk levels under a versioned thresholds
policy, escalates national-security risks to human reviewers (with an interim
restriction at once where the policy says so), applies the reviewers' quorum-signed
decisions, concludes each review once, shares redacted findings with government
systems and keeps a hash-chained, signed audit log whose head it publishes.

Consumes evaluation.events, intake.events, reviewers.decisions (signed; answered) and
access.events; publishes risk.events, gov.findings and gov.audit through the outbox;
durable timers for decision deadlines, review conclusions and audit checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contracts.events import (
    ComplianceOverdue,
    ComplianceRejected,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    ExternalFindingRejected,
    FindingRecorded,
    RestrictionLifted,
    ReviewerDecisionSubmitted,
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME
from services.risk import keys, queries, repository
from services.risk.handlers import (
    AUDIT_CHECKPOINT,
    DECISION_DEADLINE,
    REVIEW_CONCLUSION,
    RiskHandlers,
    schedule_checkpoint,
)
from services.risk.policy import ThresholdsPolicy, load_active
from services.risk.settings import RiskSettings
from services.runtime import Clock, Service
from services.trust import TRUST_SQL
from services.trust.nonces import NoncePurge

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.metrics import Samples

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = (TRUST_SQL, MIGRATIONS)  # the trust tables first: reviewers' keys and nonces


class StartupError(Exception):
    """The service must not start (no audit key, a policy changed under its version)."""


class RiskService(Service):
    """The runtime's Service, with the risk service's checks between migrating the
    schema and doing anything: the audit key loads, and the policy version is recorded
    (refused if its content changed under a version assessments already name).

    Subclassed because the runtime has no hook that runs after the migrations and
    before the consumers, timers and jobs start; a background job would race them.
    """

    def __init__(
        self,
        settings: RiskSettings,
        handlers: RiskHandlers,
        policy_text: str,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            settings, migrations=SCHEMA, clock=clock, description=__doc__, role=Role.RISK
        )
        self.risk_settings = settings
        self.handlers = handlers
        self.policy_text = policy_text

    @property
    def policy(self) -> ThresholdsPolicy:
        return self.handlers.policy

    async def open_database(self) -> None:
        settings = self.risk_settings
        try:
            key = keys.service_key(settings.risk_service_key_file, settings.risk_service_key_id)
        except keys.KeyFileError as exc:
            raise StartupError(str(exc)) from None
        await super().open_database()
        async with self.pool.acquire() as conn:
            problem = await repository.record_policy(
                conn, self.policy, self.policy_text, self.clock.now()
            )
        if problem is not None:
            raise StartupError(problem)
        self.handlers.service_key = key
        async with self.transaction() as ctx:
            await schedule_checkpoint(ctx, settings.risk_checkpoint_interval_s)


def build_service(settings: RiskSettings | None = None, *, clock: Clock | None = None) -> Service:
    """The risk service; raises ``PolicyError`` (naming line and field) for a bad policy."""
    settings = settings or RiskSettings()
    policy_file = settings.risk_policy_dir / f"{settings.risk_policy_version}.yaml"
    policy = load_active(settings.risk_policy_dir, settings.risk_policy_version)
    h = RiskHandlers(settings, policy)
    service = RiskService(settings, h, policy_file.read_text(), clock=clock)
    service.consume(
        TOPIC_BY_NAME["evaluation.events"],
        {
            EvaluationStarted: h.started,
            FindingRecorded: h.finding,
            EvaluationFailed: h.failed,
            EvaluationCompleted: h.completed,
        },
        ignore=[ExternalFindingRejected],  # the evaluator's answer, not a finding
    )
    service.consume(
        TOPIC_BY_NAME["intake.events"],
        {
            SubmissionAccepted: h.accepted,
            SubmissionWithdrawn: h.withdrawn,
            ReviewWindowClosed: h.window_closed,
        },
        ignore=[SubmissionRejected, WithdrawalRejected],  # nothing under review
    )
    service.consume(
        TOPIC_BY_NAME["reviewers.decisions"],
        {ReviewerDecisionSubmitted: h.decision},
        on_invalid=h.invalid,
    )
    service.consume(
        TOPIC_BY_NAME["access.events"],
        {RestrictionLifted: h.restriction_lifted, ComplianceOverdue: h.compliance_overdue},
        ignore=[ComplianceRejected],  # the lab's answer from access, no fact about an order
    )
    for produced in ("risk.events", "gov.findings", "gov.audit"):
        service.publishes(TOPIC_BY_NAME[produced])
    service.timer(DECISION_DEADLINE, h.decision_overdue)
    service.timer(REVIEW_CONCLUSION, h.conclusion_due)
    service.timer(AUDIT_CHECKPOINT, h.checkpoint_due)
    service.background(
        NoncePurge(
            lambda: service.pool,
            service.clock.now,
            settings.freshness,
            interval_s=settings.risk_nonce_purge_interval_s,
        )
    )
    review_metrics(service)
    return service


def review_metrics(service: Service) -> None:
    """Escalations, assessments and reviewers' decisions on /metrics (read at scrape time;
    the same on every replica)."""

    async def escalations(conn: Connection) -> Samples:
        found = await queries.open_escalations(conn, service.clock.now())
        return {(level, "true" if late else "false"): n for (level, late), n in found.items()}

    async def assessments(conn: Connection) -> Samples:
        return {(level,): n for level, n in (await queries.assessments_by_level(conn)).items()}

    async def decisions(conn: Connection) -> Samples:
        return {key: n for key, n in (await queries.reviewer_decisions(conn)).items()}

    service.metrics.query(
        "risk_escalations_open",
        "Open escalations awaiting the reviewers, by level and whether past their deadline.",
        escalations,
        ("level", "overdue"),
    )
    service.metrics.query(
        "risk_assessments",
        "Risk assessments published, by overall level.",
        assessments,
        ("level",),
        counter=True,
    )
    service.metrics.query(
        "risk_reviewer_decisions",
        "Reviewers' accepted decisions, by question (outcome, interim) and decision.",
        decisions,
        ("question", "decision"),
        counter=True,
    )
