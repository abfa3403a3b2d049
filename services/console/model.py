r"""The console's state: what it has heard of each submission, kept per source topic.

Every table has one writer, the consumer of one topic, and the rows of one key
(a submission, a model) come from one partition of that topic, so a row is
changed by one transaction at a time and the consumers never wait on each other.
A page composes its view from the facts of every source (``projection.compose``).

Facts only accumulate: each fold (``projection``) is a join, so the same events
in any order, or delivered twice, leave the same state, and a state never moves
back. A submission's lifecycle follows from which facts are known::

    (any later fact first) PENDING
    SubmissionRejected     REJECTED
    SubmissionAccepted     ACCEPTED ------------------------------+
    EvaluationStarted        EVALUATING                            |
    EvaluationCompleted        EVALUATED                           |  SubmissionWithdrawn
    ReviewWindowClosed           WINDOW_CLOSED                     +--> WITHDRAWN
    ReviewConcluded                CONCLUDED                       |
                                                                   +--(from any state)

The furthest stage whose fact is known is the state (withdrawn beats all): an
EvaluationCompleted applied before its EvaluationStarted still says EVALUATED.
Risk levels, escalations, orders and policies are shown beside the state, not in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from uuid import UUID


class Lifecycle(StrEnum):
    PENDING = "pending"  # only downstream facts so far (the intake decision is on its way)
    REJECTED = "rejected"
    ACCEPTED = "accepted"
    EVALUATING = "evaluating"
    EVALUATED = "evaluated"
    WINDOW_CLOSED = "window_closed"
    CONCLUDED = "concluded"
    WITHDRAWN = "withdrawn"


# --- intake.events ------------------------------------------------------------------


@dataclass(frozen=True)
class IntakeFacts:
    """What intake said of one submission."""

    submission_id: UUID
    lab_id: str | None = None
    model_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_family: str | None = None
    accepted_at: datetime | None = None
    deadline: datetime | None = None
    review_days: int | None = None
    acceptance: str | None = None  # AcceptanceReason
    traceparent: str | None = None  # the SubmissionAccepted's: the submission's trace
    rejected_at: datetime | None = None
    rejection: str | None = None  # reason code
    withdrawn_at: datetime | None = None
    window_closed_at: datetime | None = None


# --- evaluation.events --------------------------------------------------------------


class SuiteStage(IntEnum):
    """How much is known of a suite's end; a higher stage never gives way to a lower."""

    PLANNED = 0
    FAILED = 1  # EvaluationFailed: it exhausted its attempts
    ENDED = 2  # EvaluationCompleted reported its final status


@dataclass(frozen=True)
class Suite:
    suite_id: str
    suite_version: str | None = None
    domain: str | None = None
    capability: str | None = None
    timeout_seconds: int | None = None
    max_attempts: int | None = None
    stage: SuiteStage = SuiteStage.PLANNED
    status: str | None = None  # SuiteStatus once it ended ("failed" after EvaluationFailed)
    attempts: int | None = None
    failure: str | None = None  # FailureKind
    error: str | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class EvaluationFacts:
    """What evaluation said of one submission; findings are kept apart (``Finding``)."""

    submission_id: UUID
    model_id: str | None = None
    started_at: datetime | None = None
    registry_version: str | None = None
    completed_at: datetime | None = None
    ended_by: str | None = None
    detail: str | None = None
    suites: tuple[Suite, ...] = ()

    def suite(self, suite_id: str) -> Suite | None:
        return next((s for s in self.suites if s.suite_id == suite_id), None)


@dataclass(frozen=True)
class Finding:
    finding_id: UUID
    submission_id: UUID
    suite_id: str
    domain: str
    capability: str
    metric: str
    score: float
    method: str
    evaluator: str
    recorded_at: datetime


# --- risk.events --------------------------------------------------------------------


@dataclass(frozen=True)
class FindingBasis:
    finding_id: UUID
    suite_id: str
    score: float
    band: str
    role: str
    threshold: float | None = None


@dataclass(frozen=True)
class DomainLevel:
    domain: str
    level: str
    rationale: str
    early_warning: bool = False
    incomplete: bool = False
    escalation_bar: str | None = None
    findings: tuple[FindingBasis, ...] = ()


@dataclass(frozen=True)
class Assessment:
    assessment_id: UUID
    sequence: int
    assessed_at: datetime
    overall_level: str
    policy_version: str
    escalation_required: bool
    evaluation_incomplete: bool
    domains: tuple[DomainLevel, ...]

    @property
    def rank(self) -> tuple[int, datetime]:
        """Later assessments replace earlier ones: by sequence, then time."""
        return (self.sequence, self.assessed_at)


@dataclass(frozen=True)
class RiskFacts:
    """What risk said of one submission: its latest assessment and the conclusion."""

    submission_id: UUID
    model_id: str | None = None
    assessment: Assessment | None = None
    assessments: int = 0  # how many distinct assessments were published
    concluded_at: datetime | None = None
    outcome: str | None = None  # ReviewOutcome
    may_not: tuple[str, ...] = ()

    @property
    def overall_level(self) -> str | None:
        return self.assessment.overall_level if self.assessment else None


@dataclass(frozen=True)
class Tally:
    """The signatures for one candidate decision (for restrict: one order's hash)."""

    decision: str
    order_sha256: str | None
    signed_by: frozenset[str]


class EscalationStatus(StrEnum):
    AWAITING = "awaiting_decision"
    DECIDED = "decided"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Escalation:
    escalation_id: UUID
    submission_id: UUID
    model_id: str | None = None
    raised_at: datetime | None = None
    level: str | None = None
    domains: tuple[str, ...] = ()
    decide_by: datetime | None = None
    reviewers_required: int | None = None
    interim_order_id: UUID | None = None
    supersedes: UUID | None = None
    rationale: str | None = None
    recommended_actions: tuple[str, ...] = ()
    tallies: tuple[Tally, ...] = ()
    decision: str | None = None  # the concluding decision, once its quorum was met
    decided_at: datetime | None = None
    interim_lifted_at: datetime | None = None
    superseded_by: UUID | None = None
    overdue_at: datetime | None = None

    @property
    def status(self) -> EscalationStatus:
        if self.decision is not None:
            return EscalationStatus.DECIDED
        if self.superseded_by is not None:
            return EscalationStatus.SUPERSEDED
        return EscalationStatus.AWAITING

    @property
    def signatures(self) -> int:
        """The most signatures any one candidate decision has: the quorum's progress."""
        return max((len(t.signed_by) for t in self.tallies), default=0)


@dataclass(frozen=True)
class Order:
    """A restriction order as risk ordered it (and lifted it, when it did)."""

    order_id: UUID
    submission_id: UUID
    model_id: str | None = None
    escalation_id: UUID | None = None
    interim: bool | None = None
    ordered_at: datetime | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    compliance_deadline: datetime | None = None
    reviewer_ids: tuple[str, ...] = ()
    supersedes: UUID | None = None
    superseded_by: UUID | None = None
    level: str | None = None
    domains: tuple[str, ...] = ()
    scope: str | None = None  # the scope in words
    lift_ordered_at: datetime | None = None
    lift_reason: str | None = None


# --- access.events / access.policies ------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """RestrictionLifted: the order is gone from the model's policy."""

    order_id: UUID
    model_id: str
    submission_id: UUID
    lifted_at: datetime
    reason: str
    reviewer_id: str | None = None
    policy_version: int | None = None


@dataclass(frozen=True)
class PolicyVersion:
    model_id: str
    version: int
    lab_id: str
    content_hash: str
    order_ids: tuple[UUID, ...]
    published_at: datetime
    acknowledge_by: datetime
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    policy_chars: int = 0


@dataclass(frozen=True)
class Overdue:
    """ComplianceOverdue: the lab did not acknowledge ``version`` by its deadline."""

    model_id: str
    version: int
    acknowledge_by: datetime
    detected_at: datetime


class Compliance(StrEnum):
    DUE = "due"  # before its deadline: the lab may still acknowledge
    CHECKING = "checking"  # deadline just passed; access's overdue check is still to run
    OVERDUE = "overdue"
    ACKNOWLEDGED = "acknowledged"  # deadline passed, access raised no overdue
    SUPERSEDED = "superseded"  # a later version replaced it before its deadline


# --- gov.audit and the DLQs --------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    log_id: str
    size: int
    head_sha256: str
    checkpointed_at: datetime
    key_id: str


@dataclass(frozen=True)
class DeadLetter:
    """One record of a ``<topic>.dlq``, as its headers describe it."""

    dlq_topic: str  # the registry name (no prefix)
    partition: int
    offset: int
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    reason: str
    error: str
    consumer: str | None
    attempts: int | None
    failed_at: datetime | None
    key: str | None
    event_type: str | None
    event_id: str | None
    submission_id: UUID | None
    model_id: str | None
    size: int
    preview: str


# --- the timeline -------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a submission's timeline (of its model's, for the access topics' events,
    which name the model only)."""

    event_id: str
    submission_id: UUID | None
    model_id: str | None
    at: datetime
    topic: str
    kind: str  # the event type's short name
    summary: str


@dataclass(frozen=True)
class Refusal:
    """A rejection the agency answered; tied to a submission when it names one."""

    event_id: str
    kind: str
    reason: str
    detail: str
    at: datetime
    submission_id: UUID | None = None
    model_id: str | None = None
    sender: str | None = None


# --- what a page shows --------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionView:
    """One submission, composed from every source's facts."""

    submission_id: UUID
    state: Lifecycle
    intake: IntakeFacts
    evaluation: EvaluationFacts
    risk: RiskFacts
    escalations: tuple[Escalation, ...] = ()
    orders: tuple[tuple[Order, Lift | None], ...] = ()
    policies: tuple[tuple[PolicyVersion, Compliance], ...] = ()
    dead_letters: int = 0
    findings: dict[str, int] = field(default_factory=dict)  # per suite

    @property
    def lab_id(self) -> str | None:
        return self.intake.lab_id or _lab_of(self.model_id)

    @property
    def model_id(self) -> str | None:
        return self.intake.model_id or self.evaluation.model_id or self.risk.model_id

    @property
    def level(self) -> str | None:
        return self.risk.assessment.overall_level if self.risk.assessment else None

    @property
    def open_escalations(self) -> tuple[Escalation, ...]:
        return tuple(e for e in self.escalations if e.status is EscalationStatus.AWAITING)

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.intake.traceparent)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<trace id>-<span id>-<flags>``)."""
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


def _lab_of(model_id: str | None) -> str | None:
    return model_id.partition("/")[0] if model_id and "/" in model_id else None
