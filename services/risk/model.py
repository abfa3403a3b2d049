r"""The risk service's state: what it knows of a submission's evaluation, its
assessments, escalations with their reviewers' votes, orders, and the audit log.

An escalation (one at a time open per submission):

    (assessment at or above a domain's escalation bar)
          |  raise; interim order at once if the level's policy says so
          v
        OPEN --quorum signs the same order---------> RESTRICTED  (order supersedes the interim)
          |  --quorum signs no_restriction ---------> DISMISSED   (interim order lifted)
          |  --quorum signs monitor ----------------> MONITORING  (interim order lifted)
          |  --level rises / more domains cross----> SUPERSEDED  (a new OPEN escalation;
          |                                                       interim order carried over)
          |  --quorum signs lift_interim: the interim order is lifted, stays OPEN
          |  --decision deadline passes: one reminder (EscalationOverdue), stays OPEN
    RESTRICTED / DISMISSED / MONITORING / SUPERSEDED are final: decisions on them are
    refused. A later assessment above the decided level (or with more domains) raises a
    new escalation.

A review (one per submission): open from SubmissionAccepted; the window closes
(ReviewWindowClosed); it is concluded exactly once (ReviewConcluded) when the evaluation
has reported its end or the policy's grace after the close has passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from contracts.events import EvaluationCompleted, EvaluationFailed, EvaluationStarted
from contracts.events.common import RiskDomain, RiskLevel
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from contracts.events.risk import (
    EscalationDecision,
    RestrictionOrderSpec,
    RestrictionScope,
)

# --- the evaluation, as far as risk has heard -------------------------------------


@dataclass(frozen=True)
class SuiteRun:
    """One planned suite; ``status`` None while it has not ended."""

    suite_id: str
    suite_version: str
    domain: RiskDomain
    status: SuiteStatus | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.suite_id, self.suite_version)

    @property
    def ended_short(self) -> bool:
        """It ended without completing: failed, stopped by the window, or cancelled."""
        return self.status is not None and self.status is not SuiteStatus.COMPLETED


@dataclass(frozen=True)
class EvaluationProgress:
    """The evaluation's plan and how its suites ended, folded from evaluation.events.

    Events may arrive in any order (a redelivery, a replay): a suite's end is final,
    and EvaluationCompleted's per-suite statuses are authoritative.
    """

    suites: tuple[SuiteRun, ...] = ()
    ended_by: EvaluationEnd | None = None

    def started(self, event: EvaluationStarted) -> EvaluationProgress:
        planned = [SuiteRun(s.suite_id, s.suite_version, s.domain) for s in event.suites]
        return self._merge(planned, authoritative=False)

    def failed(self, event: EvaluationFailed) -> EvaluationProgress:
        run = SuiteRun(event.suite_id, event.suite_version, event.domain, SuiteStatus.FAILED)
        return self._merge([run], authoritative=False)

    def completed(self, event: EvaluationCompleted) -> EvaluationProgress:
        runs = [SuiteRun(s.suite_id, s.suite_version, s.domain, s.status) for s in event.suites]
        merged = self._merge(runs, authoritative=True)
        return replace(merged, ended_by=event.ended_by)

    def _merge(self, runs: Iterable[SuiteRun], *, authoritative: bool) -> EvaluationProgress:
        by_key = {run.key: run for run in self.suites}
        for run in runs:
            known = by_key.get(run.key)
            if known is None or authoritative or (known.status is None and run.status):
                by_key[run.key] = run
        return replace(self, suites=tuple(sorted(by_key.values(), key=lambda r: r.key)))

    @property
    def ended(self) -> bool:
        return self.ended_by is not None

    @property
    def incomplete(self) -> bool:
        """Some suite ended short, or the evaluation ended having run none."""
        return any(run.ended_short for run in self.suites) or (self.ended and not self.suites)

    def untested(self, domain: RiskDomain) -> list[SuiteRun] | None:
        """Why ``domain`` is not fully tested: its suites that ended short, or [] when the
        evaluation ended without any suite of the domain; None when nothing is missing."""
        short = [run for run in self.suites if run.domain is domain and run.ended_short]
        if short:
            return short
        if self.ended and not any(run.domain is domain for run in self.suites):
            return []
        return None


# --- assessments --------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionRef:
    """The submission an assessment, escalation or conclusion is about."""

    submission_id: UUID
    model_id: str
    lab_id: str | None = None


# --- escalations, votes and orders ------------------------------------------------


class EscalationStatus(StrEnum):
    OPEN = "open"
    RESTRICTED = "restricted"
    DISMISSED = "dismissed"
    MONITORING = "monitoring"
    SUPERSEDED = "superseded"

    @property
    def final(self) -> bool:
        return self is not EscalationStatus.OPEN


CONCLUDING_STATUS = {
    EscalationDecision.RESTRICT: EscalationStatus.RESTRICTED,
    EscalationDecision.NO_RESTRICTION: EscalationStatus.DISMISSED,
    EscalationDecision.MONITOR: EscalationStatus.MONITORING,
}


class Question(StrEnum):
    """What a vote answers; a reviewer signs each question of an escalation once."""

    OUTCOME = "outcome"  # restrict / no_restriction / monitor
    INTERIM = "interim"  # lift_interim

    @classmethod
    def of(cls, decision: EscalationDecision) -> Question:
        return cls.INTERIM if decision is EscalationDecision.LIFT_INTERIM else cls.OUTCOME


@dataclass(frozen=True)
class Vote:
    """One reviewer's accepted, signed decision on an escalation."""

    decision_id: UUID
    reviewer_id: str
    decision: EscalationDecision
    body_sha256: str  # the decision without its signature: tells a re-send from a conflict
    accepted_at: datetime
    order: RestrictionOrderSpec | None = None
    order_sha256: str | None = None
    interim_order_id: UUID | None = None

    @property
    def question(self) -> Question:
        return Question.of(self.decision)

    @property
    def candidate(self) -> tuple[EscalationDecision, str | None]:
        """What the vote counts toward: the decision, and for restrict the exact order."""
        return (self.decision, self.order_sha256)


@dataclass(frozen=True)
class Escalation:
    escalation_id: UUID
    submission_id: UUID
    model_id: str
    assessment_id: UUID
    level: RiskLevel
    domains: tuple[RiskDomain, ...]
    finding_ids: tuple[UUID, ...]
    policy_version: str
    reviewers_required: int
    raised_at: datetime
    decide_by: datetime
    status: EscalationStatus = EscalationStatus.OPEN
    interim_order_id: UUID | None = None
    interim_lifted_at: datetime | None = None
    votes: tuple[Vote, ...] = ()
    order_id: UUID | None = None  # the final order (RESTRICTED)
    decided_at: datetime | None = None
    superseded_by: UUID | None = None
    reminded_at: datetime | None = None

    @property
    def interim_in_force(self) -> bool:
        return self.interim_order_id is not None and self.interim_lifted_at is None

    def votes_for(self, candidate: tuple[EscalationDecision, str | None]) -> list[Vote]:
        return [vote for vote in self.votes if vote.candidate == candidate]

    def tallies(self) -> list[tuple[tuple[EscalationDecision, str | None], list[str]]]:
        """Each candidate decision with its signers, in the order first signed."""
        seen: dict[tuple[EscalationDecision, str | None], list[str]] = {}
        for vote in sorted(self.votes, key=lambda v: (v.accepted_at, v.reviewer_id)):
            seen.setdefault(vote.candidate, []).append(vote.reviewer_id)
        return list(seen.items())


@dataclass(frozen=True)
class Order:
    """A restriction order risk issued, and whether it is still in force."""

    order_id: UUID
    escalation_id: UUID
    interim: bool
    scope: RestrictionScope
    effective_at: datetime
    expires_at: datetime | None = None
    compliance_deadline: datetime | None = None
    lifted_at: datetime | None = None  # lifted by the reviewers (RestrictionLifted)
    superseded_by: UUID | None = None  # replaced by a final order

    def in_force(self, now: datetime) -> bool:
        return (
            self.lifted_at is None
            and self.superseded_by is None
            and (self.expires_at is None or self.expires_at > now)
        )


# --- the review ----------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """A submission under review, from acceptance to its one conclusion."""

    submission_id: UUID
    lab_id: str
    model_id: str
    window_deadline: datetime | None  # known from SubmissionAccepted or ReviewWindowClosed
    window_closed_at: datetime | None = None
    withdrawn_at: datetime | None = None
    concluded_at: datetime | None = None
    evaluation: EvaluationProgress = field(default_factory=EvaluationProgress)


# --- the audit log -------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the hash-chained audit log (see services/risk/audit.py)."""

    sequence: int  # 1, 2, 3 ... without gaps
    kind: str
    subject: str  # the submission (or model) the entry is about
    recorded_at: datetime
    content: str  # RFC 8785 canonical JSON, exactly the text that was hashed
    previous_sha256: str  # entry_sha256 of entry sequence - 1 (64 zeros for the first)
    entry_sha256: str
    key_id: str
    signature: str  # base64 Ed25519 signature over the entry hash (domain-separated)
