"""One submission's review as the agency's topics carry it: every kind of event the
console reads, consistent with each other (ids, times), for the pure tables and the
service tests alike. Built on the contract examples (tests/contracts/examples.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts import Event
from contracts.events import (
    AccessPolicyPublished,
    AuditCheckpoint,
    ComplianceOverdue,
    ComplianceRejected,
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    FindingRecorded,
    RestrictionLifted,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
)
from contracts.events.access import policy_hash
from tests.contracts.examples import CEDAR_POLICIES, example

SHA_A = "a" * 64


def _id() -> UUID:
    return uuid.uuid4()


@dataclass
class Scenario:
    """A submission of ``lab_id`` accepted at ``start``, escalated to a critical cyber
    level, restricted by an interim order and then a confirmed one (two reviewers)."""

    start: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    )
    lab_id: str = "example-lab"
    name: str = field(default_factory=lambda: f"m-{uuid.uuid4().hex[:8]}")
    family: str = "frontier"
    submission_id: UUID = field(default_factory=_id)
    finding_cyber: UUID = field(default_factory=_id)
    finding_bio: UUID = field(default_factory=_id)
    assessment_1: UUID = field(default_factory=_id)
    assessment_2: UUID = field(default_factory=_id)
    escalation: UUID = field(default_factory=_id)
    interim_order: UUID = field(default_factory=_id)
    order: UUID = field(default_factory=_id)
    review_days: int = 14

    @property
    def model_id(self) -> str:
        return f"{self.lab_id}/{self.name}@1"

    def at(self, **delta: float) -> datetime:
        return self.start + timedelta(**delta)

    def _ids(self) -> dict[str, Any]:
        return {"submission_id": self.submission_id, "model_id": self.model_id}

    # intake.events -------------------------------------------------------------------
    def accepted(self, **changes: Any) -> SubmissionAccepted:
        base = example(SubmissionAccepted).model_dump(mode="json")
        model = base["model"]
        values = {
            **self._ids(),
            "lab_id": self.lab_id,
            "model": model | {"name": self.name, "version": "1", "family": self.family},
            "evaluation_access": {
                "endpoint": "https://models.example-lab.test/v1",
                "api_model": self.name,
                "credential_ref": f"labs/{self.lab_id}/key",
            },
            "requested_review_days": self.review_days,
            "review_days": self.review_days,
            "accepted_at": self.start,
            "deadline": self.deadline,
        }
        # (example() takes the model class as "model": this event has a field of that name)
        return SubmissionAccepted.model_validate(base | values | changes)

    @property
    def deadline(self) -> datetime:
        return self.start + timedelta(days=self.review_days)

    def window_closed(self) -> ReviewWindowClosed:
        return example(
            ReviewWindowClosed,
            **self._ids(),
            lab_id=self.lab_id,
            deadline=self.deadline,
            closed_at=self.deadline + timedelta(seconds=1),
        )

    # evaluation.events ---------------------------------------------------------------
    def started(self, **changes: Any) -> EvaluationStarted:
        suites = [
            {
                "suite_id": "cyber-ctf-proxy",
                "suite_version": "1.0.0",
                "domain": "cyber",
                "capability": "vulnerability-discovery",
                "timeout_seconds": 60,
                "max_attempts": 2,
            },
            {
                "suite_id": "bio-proxy",
                "suite_version": "1.0.0",
                "domain": "bio",
                "capability": "protocol-troubleshooting",
                "timeout_seconds": 60,
                "max_attempts": 2,
            },
        ]
        values = {
            **self._ids(),
            "suites": suites,
            "started_at": self.at(seconds=5),
            "deadline": self.deadline,
        }
        return example(EvaluationStarted, **(values | changes))

    def finding(self, suite: str = "cyber-ctf-proxy", score: float = 0.93) -> FindingRecorded:
        cyber = suite.startswith("cyber")
        return example(
            FindingRecorded,
            **self._ids(),
            finding_id=self.finding_cyber if cyber else self.finding_bio,
            suite_id=suite,
            domain="cyber" if cyber else "bio",
            capability="vulnerability-discovery" if cyber else "protocol-troubleshooting",
            score=score,
            recorded_at=self.at(seconds=20 if cyber else 25),
        )

    def failed(self) -> EvaluationFailed:
        return example(
            EvaluationFailed,
            **self._ids(),
            suite_id="bio-proxy",
            domain="bio",
            attempts=2,
            failed_at=self.at(seconds=30),
        )

    def completed(self) -> EvaluationCompleted:
        return example(
            EvaluationCompleted,
            **self._ids(),
            ended_by="all_suites_ended",
            suites=[
                {
                    "suite_id": "cyber-ctf-proxy",
                    "suite_version": "1.0.0",
                    "domain": "cyber",
                    "status": "completed",
                    "attempts": 1,
                    "finding_ids": [self.finding_cyber],
                },
                {
                    "suite_id": "bio-proxy",
                    "suite_version": "1.0.0",
                    "domain": "bio",
                    "status": "failed",
                    "attempts": 2,
                },
            ],
            completed_at=self.at(seconds=40),
        )

    # risk.events -----------------------------------------------------------------------
    def assessed(self, sequence: int = 2, level: str = "critical") -> RiskAssessed:
        return example(
            RiskAssessed,
            **self._ids(),
            assessment_id=self.assessment_2 if sequence == 2 else self.assessment_1,
            sequence=sequence,
            overall_level=level,
            escalation_required=level in ("high", "critical"),
            domains=[
                {
                    "domain": "cyber",
                    "level": level,
                    "finding_ids": [self.finding_cyber],
                    "rationale": f"cyber-ctf-proxy accuracy 0.93 >= 0.9 ({level})",
                    "findings": [
                        {
                            "finding_id": self.finding_cyber,
                            "suite_id": "cyber-ctf-proxy",
                            "suite_version": "1.0.0",
                            "capability": "vulnerability-discovery",
                            "metric": "accuracy",
                            "score": 0.93,
                            "method": "automated",
                            "band": level,
                            "threshold": 0.9,
                            "role": "drives_level",
                        }
                    ],
                    "escalation_bar": "high",
                }
            ],
            assessed_at=self.at(seconds=21 + sequence),
        )

    def raised(self, **changes: Any) -> EscalationRaised:
        values = {
            **self._ids(),
            "escalation_id": self.escalation,
            "assessment_id": self.assessment_2,
            "level": "critical",
            "domains": ["cyber"],
            "escalation_bar": "high",
            "finding_ids": [self.finding_cyber],
            "interim_restriction": True,
            "interim_order_id": self.interim_order,
            "decide_by": self.at(days=3),
            "raised_at": self.at(seconds=24),
            "reviewers_required": 2,
        }
        return example(EscalationRaised, **(values | changes))

    def interim(self) -> RestrictionOrdered:
        return example(
            RestrictionOrdered,
            **self._ids(),
            order_id=self.interim_order,
            escalation_id=self.escalation,
            interim=True,
            reviewer_id=None,
            reviewer_ids=[],
            ordered_at=self.at(seconds=24),
            effective_at=self.at(seconds=24),
            compliance_deadline=self.at(days=1),
        )

    def decided(self, reviewer: str, *, signed_by: list[str], quorum: bool) -> EscalationDecided:
        return example(
            EscalationDecided,
            **self._ids(),
            escalation_id=self.escalation,
            reviewer_id=reviewer,
            order_id=self.order,
            order_sha256=SHA_A,
            reviewers_required=2,
            signed_by=signed_by,
            quorum_met=quorum,
            decision_id=uuid.uuid4(),
            decided_at=self.at(minutes=5 if quorum else 3),
        )

    def confirmed(self) -> RestrictionOrdered:
        return example(
            RestrictionOrdered,
            **self._ids(),
            order_id=self.order,
            escalation_id=self.escalation,
            interim=False,
            reviewer_id="reviewer-b",
            reviewer_ids=["reviewer-a", "reviewer-b"],
            supersedes=self.interim_order,
            ordered_at=self.at(minutes=5),
            effective_at=self.at(minutes=5),
            compliance_deadline=self.at(days=1),
        )

    def overdue_escalation(self) -> EscalationOverdue:
        return example(
            EscalationOverdue,
            **self._ids(),
            escalation_id=self.escalation,
            level="critical",
            domains=["cyber"],
            decide_by=self.at(days=3),
            reviewers_required=2,
            tallies=[{"decision": "restrict", "order_sha256": SHA_A, "signed_by": ["reviewer-a"]}],
            reminded_at=self.at(days=3, seconds=1),
        )

    def concluded(self) -> ReviewConcluded:
        return example(
            ReviewConcluded,
            **self._ids(),
            lab_id=self.lab_id,
            outcome="restrictions_ordered",
            overall_level="critical",
            order_ids=[self.order],
            pending_escalation_ids=[],
            window_deadline=self.deadline,
            concluded_at=self.deadline + timedelta(seconds=5),
        )

    # access.events / access.policies / gov.audit ---------------------------------------
    def policy(self, version: int, *, published: datetime, acknowledge_by: datetime) -> Any:
        text = f"{CEDAR_POLICIES}\n// version {version} of {self.model_id}"
        return example(
            AccessPolicyPublished,
            model_id=self.model_id,
            lab_id=self.lab_id,
            policy_version=version,
            cedar_policies=text,
            content_hash=policy_hash(text),
            order_ids=[self.interim_order] if version == 1 else [self.order],
            published_at=published,
            acknowledge_by=acknowledge_by,
        )

    def lifted(self) -> RestrictionLifted:
        return example(
            RestrictionLifted,
            **self._ids(),
            order_id=self.interim_order,
            reviewer_id=None,
            reason="superseded by the confirmed order",
            policy_version=2,
            lifted_at=self.at(minutes=5, seconds=1),
        )

    def compliance_overdue(self, version: int = 1) -> ComplianceOverdue:
        policy = self.policy(
            version, published=self.at(seconds=25), acknowledge_by=self.at(hours=1)
        )
        return example(
            ComplianceOverdue,
            model_id=self.model_id,
            lab_id=self.lab_id,
            policy_version=version,
            content_hash=policy.content_hash,
            order_ids=policy.order_ids,
            published_at=policy.published_at,
            acknowledge_by=policy.acknowledge_by,
            detected_at=self.at(hours=1, seconds=61),
        )

    def compliance_rejected(self, detail: str = "content_hash does not match") -> Any:
        return example(
            ComplianceRejected,
            model_id=self.model_id,
            lab_id=self.lab_id,
            detail=detail,
            rejected_event_id=str(uuid.uuid4()),
            rejected_at=self.at(minutes=10),
        )

    def checkpoint(self, size: int) -> AuditCheckpoint:
        return example(AuditCheckpoint, size=size, checkpointed_at=self.at(minutes=size))

    # the whole review -------------------------------------------------------------------
    def pipeline(self) -> list[Event]:
        """intake, evaluation and risk events of the review, in the order risk produces."""
        return [
            self.accepted(),
            self.started(),
            self.finding(),
            self.assessed(sequence=1, level="high"),
            self.assessed(sequence=2, level="critical"),
            self.raised(),
            self.interim(),
            self.failed(),
            self.completed(),
            self.decided("reviewer-a", signed_by=["reviewer-a"], quorum=False),
            self.decided("reviewer-b", signed_by=["reviewer-a", "reviewer-b"], quorum=True),
            self.confirmed(),
        ]
