"""Event payload models, one module per producing context.

lab (lab-published and external evaluators' signed input), reviewers (the
reviewers' signed decisions), intake, evaluation, risk, gov (the redacted feed and
the audit checkpoints) and access. Topics are in contracts.registry.
"""

from contracts.events.access import (
    AccessPolicyPublished,
    ComplianceOverdue,
    ComplianceRejected,
    RestrictionLifted,
)
from contracts.events.common import (
    Rejection,
    RejectionReason,
    RiskDomain,
    RiskLevel,
    SignedEvent,
    field_errors,
    make_model_id,
    signing_input,
)
from contracts.events.evaluation import (
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    ExternalFindingRejected,
    FindingRecorded,
)
from contracts.events.gov import AuditCheckpoint, FindingShared
from contracts.events.intake import (
    LabKeyEntry,
    LabRegistryChanged,
    LabStatus,
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.events.lab import (
    ComplianceAcknowledged,
    ExternalFindingSubmitted,
    SubmissionFiled,
    WithdrawalRequested,
)
from contracts.events.reviewers import ReviewerDecisionSubmitted
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

__all__ = [
    "AccessPolicyPublished",
    "AuditCheckpoint",
    "ComplianceAcknowledged",
    "ComplianceOverdue",
    "ComplianceRejected",
    "EscalationDecided",
    "EscalationOverdue",
    "EscalationRaised",
    "EvaluationCompleted",
    "EvaluationFailed",
    "EvaluationStarted",
    "ExternalFindingRejected",
    "ExternalFindingSubmitted",
    "FindingRecorded",
    "FindingShared",
    "LabKeyEntry",
    "LabRegistryChanged",
    "LabStatus",
    "Rejection",
    "RejectionReason",
    "RestrictionLiftOrdered",
    "RestrictionLifted",
    "RestrictionOrdered",
    "ReviewConcluded",
    "ReviewWindowClosed",
    "ReviewerDecisionRejected",
    "ReviewerDecisionSubmitted",
    "RiskAssessed",
    "RiskDomain",
    "RiskLevel",
    "SignedEvent",
    "SubmissionAccepted",
    "SubmissionFiled",
    "SubmissionRejected",
    "SubmissionWithdrawn",
    "WithdrawalRejected",
    "WithdrawalRequested",
    "field_errors",
    "make_model_id",
    "signing_input",
]
