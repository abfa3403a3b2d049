"""The topics: who writes them, what the record key is, which events travel on them.

One topic per producing context. The record key (= CloudEvent ``subject``) is
the submission id, or the model id on lab.compliance and the access topics, so
each submission's (model's) events stay in order on one partition. ``Topic.key``
names the data field that holds it; ``subject_for(data)`` reads it.
"""

from __future__ import annotations

from contracts.envelope import Event
from contracts.events import (
    AccessPolicyPublished,
    AuditCheckpoint,
    ComplianceAcknowledged,
    ComplianceOverdue,
    ComplianceRejected,
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
    FindingShared,
    Rejection,
    RestrictionLifted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewerDecisionRejected,
    ReviewerDecisionSubmitted,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionFiled,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
    WithdrawalRequested,
)
from contracts.topic import DAY_MS, Topic

SUBMISSION_ID = "submission_id"
MODEL_ID = "model_id"
LOG_ID = "log_id"

# Input topics only need to outlive a consumer outage: their consumer persists
# what it accepts. Pipeline topics outlive a whole review window (30 days) with
# margin, so a rebuilt consumer can replay a submission's history. The feed and
# access events are kept for 90 days; access.policies is compacted, kept forever.
INPUT_RETENTION_MS = 14 * DAY_MS
PIPELINE_RETENTION_MS = 45 * DAY_MS
RECORD_RETENTION_MS = 90 * DAY_MS

TOPICS: tuple[Topic, ...] = (
    Topic(
        name="lab.submissions",
        producer="lab",
        key=SUBMISSION_ID,
        events=(SubmissionFiled, WithdrawalRequested),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed submissions and withdrawals from labs. Consumer: intake.",
    ),
    Topic(
        name="lab.compliance",
        producer="lab",
        key=MODEL_ID,
        events=(ComplianceAcknowledged,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed acknowledgements that a lab enforces a policy. Consumer: access.",
    ),
    Topic(
        name="evaluators.findings",
        producer="evaluators",
        key=SUBMISSION_ID,
        events=(ExternalFindingSubmitted,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed manual findings from external evaluators. Consumer: evaluation.",
    ),
    Topic(
        name="reviewers.decisions",
        producer="reviewers",
        key=SUBMISSION_ID,
        events=(ReviewerDecisionSubmitted,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed decisions of the agency's reviewers on escalations. Consumer: risk "
        "(answers on risk.events).",
    ),
    Topic(
        name="intake.events",
        producer="intake",
        key=SUBMISSION_ID,
        events=(
            SubmissionAccepted,
            SubmissionRejected,
            SubmissionWithdrawn,
            WithdrawalRejected,
            ReviewWindowClosed,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Intake decisions and the review-window clock. "
        "Consumers: evaluation, risk, labs (outcome of their submissions).",
    ),
    Topic(
        name="evaluation.events",
        producer="evaluation",
        key=SUBMISSION_ID,
        events=(
            EvaluationStarted,
            FindingRecorded,
            EvaluationCompleted,
            EvaluationFailed,
            ExternalFindingRejected,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Evaluation progress and findings. Consumers: risk, external evaluators "
        "(their rejections).",
    ),
    Topic(
        name="risk.events",
        producer="risk",
        key=SUBMISSION_ID,
        events=(
            RiskAssessed,
            EscalationRaised,
            EscalationDecided,
            RestrictionOrdered,
            RestrictionLiftOrdered,
            ReviewerDecisionRejected,
            EscalationOverdue,
            ReviewConcluded,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Assessments, escalations, reviewer decisions and orders. Consumer: access.",
    ),
    Topic(
        name="gov.findings",
        producer="risk",
        key=SUBMISSION_ID,
        events=(FindingShared,),
        retention_ms=RECORD_RETENTION_MS,
        description="Redacted findings feed. Consumers: other government systems.",
    ),
    Topic(
        name="gov.audit",
        producer="risk",
        key=LOG_ID,
        events=(AuditCheckpoint,),
        partitions=1,
        retention_ms=-1,
        description="Signed checkpoints of the risk service's hash-chained audit log, one "
        "ordered partition kept forever. Consumers: other government systems, auditors.",
    ),
    Topic(
        name="access.events",
        producer="access",
        key=MODEL_ID,
        events=(RestrictionLifted, ComplianceOverdue, ComplianceRejected),
        retention_ms=RECORD_RETENTION_MS,
        description="Restriction lifecycle and compliance. Consumers: labs, risk, ops.",
    ),
    Topic(
        name="access.policies",
        producer="access",
        key=MODEL_ID,
        events=(AccessPolicyPublished,),
        partitions=3,
        compacted=True,
        description="Current Cedar policy per model (compacted). Consumers: enforcement "
        "points (decision API, embeddable enforcer), labs.",
    ),
)

TOPIC_BY_NAME: dict[str, Topic] = {topic.name: topic for topic in TOPICS}

EVENTS: tuple[type[Event], ...] = tuple(event for topic in TOPICS for event in topic.events)
EVENT_BY_TYPE: dict[str, type[Event]] = {event.TYPE: event for event in EVENTS}

_TOPIC_BY_EVENT: dict[type[Event], Topic] = {
    event: topic for topic in TOPICS for event in topic.events
}


def topic_for(event_type: type[Event]) -> Topic:
    """The one topic an event type travels on (KeyError for an unregistered type)."""
    try:
        return _TOPIC_BY_EVENT[event_type]
    except KeyError:
        raise KeyError(f"{event_type.__name__} is on no topic of contracts.registry") from None


def subject_for(data: Event) -> str:
    """The record key / CloudEvent subject of ``data``: its topic's key field.

    A rejection whose input was too broken to name the submission (model) is
    keyed by the refused input's CloudEvent id instead.
    """
    topic = topic_for(type(data))
    value = getattr(data, topic.key, None)
    if value is None and isinstance(data, Rejection):
        value = data.rejected_event_id
    if value is None:
        raise ValueError(f"{type(data).__name__} has no {topic.key} to key it by")
    return str(value)
