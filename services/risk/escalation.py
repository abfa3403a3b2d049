"""Escalation: from a published assessment, whether to raise EscalationRaised, whether to
order an interim restriction at once, and the one reminder when a decision is overdue.

Rules (the state machine is in services/risk/model.py):

- A domain at or above its escalation bar is escalated. The escalation's level is the
  highest escalated level; the policy's response for it gives the reviewers required,
  the decision deadline, the recommended actions and the interim restriction, if any.
- One escalation is open per submission. A new assessment raises a new one only when it
  asks for more than is already escalated or decided: a higher level, or a domain that
  was not escalated. It then supersedes the open one (whose votes no longer count: the
  facts changed) and carries its interim order over; it never lowers anything. A lower
  assessment leaves an open escalation open: only the reviewers close it.
- The reminder fires once per escalation, when its deadline has passed and it is still
  open; the interim restriction stays in force (failing safe).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from contracts.events import RestrictionOrdered, RiskAssessed
from contracts.events.common import RiskLevel
from contracts.events.risk import (
    DecisionTally,
    DomainAssessment,
    EscalationOverdue,
    EscalationRaised,
)
from services.risk.model import Escalation, EscalationStatus
from services.risk.orders import as_scope, interim_order_id, scaled
from services.risk.policy import ThresholdsPolicy

ESCALATION_NAMESPACE = UUID("3e8c1f5a-7b2d-4a6e-9c0f-8d4b2a6e1c53")
MAX_TEXT = 4000
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class EscalationPlan:
    """What to record and publish for a newly raised escalation."""

    escalation: Escalation
    raised: EscalationRaised
    interim: RestrictionOrdered | None  # a new interim order to publish
    superseded: Escalation | None  # the open escalation it replaces, now SUPERSEDED


def plan_escalation(
    assessed: RiskAssessed,
    escalations: Sequence[Escalation],
    policy: ThresholdsPolicy,
    now: datetime,
    *,
    seconds_per_day: float = SECONDS_PER_DAY,
) -> EscalationPlan | None:
    """The escalation ``assessed`` raises, given the submission's escalations so far."""
    if assessed.policy_version != policy.version:
        raise ValueError(
            f"assessment {assessed.assessment_id} used {assessed.policy_version}, "
            f"not the loaded {policy.version}"
        )
    escalated = [d for d in assessed.domains if _at_or_above_bar(d, policy)]
    if not escalated:
        return None
    level = max((d.level for d in escalated), key=lambda lv: lv.rank)
    domains = tuple(d.domain for d in escalated)
    open_one = next((e for e in escalations if e.status is EscalationStatus.OPEN), None)
    reference = open_one or _latest_decided(escalations)
    if reference is not None and not _asks_for_more(level, domains, reference):
        return None
    response = policy.response(level)
    if response is None:  # the policy validator guarantees every escalable level has one
        raise ValueError(f"{policy.version} has no response for level {level}")

    escalation_id = uuid.uuid5(
        ESCALATION_NAMESPACE, f"{assessed.submission_id}/{assessed.assessment_id}"
    )
    decide_by = now + scaled(response.decision_deadline, seconds_per_day)
    finding_ids = tuple(sorted({i for d in escalated for i in d.finding_ids}, key=str))
    carried = open_one.interim_order_id if open_one and open_one.interim_in_force else None

    interim: RestrictionOrdered | None = None
    interim_id = carried
    if carried is None and response.interim_restriction is not None:
        interim_id = interim_order_id(escalation_id)
        rule = response.interim_restriction
        interim = RestrictionOrdered(
            order_id=interim_id,
            submission_id=assessed.submission_id,
            model_id=assessed.model_id,
            escalation_id=escalation_id,
            interim=True,
            scope=as_scope(rule.scope),
            ordered_at=now,
            effective_at=now,
            compliance_deadline=now + scaled(rule.compliance_within, seconds_per_day),
            level=level,
            domains=list(domains),
            policy_version=policy.version,
        )

    escalation = Escalation(
        escalation_id=escalation_id,
        submission_id=assessed.submission_id,
        model_id=assessed.model_id,
        assessment_id=assessed.assessment_id,
        level=level,
        domains=domains,
        finding_ids=finding_ids,
        policy_version=policy.version,
        reviewers_required=response.reviewers_required,
        raised_at=now,
        decide_by=decide_by,
        interim_order_id=interim_id,
    )
    bars = [policy.domain(d.domain).escalation_bar for d in escalated]
    raised = EscalationRaised(
        escalation_id=escalation_id,
        assessment_id=assessed.assessment_id,
        submission_id=assessed.submission_id,
        model_id=assessed.model_id,
        domains=list(domains),
        level=level,
        escalation_bar=min(bars, key=lambda lv: lv.rank),
        finding_ids=list(finding_ids),
        policy_version=policy.version,
        interim_restriction=interim_id is not None,
        decide_by=decide_by,
        raised_at=now,
        recommended_actions=list(response.recommended_actions),
        reviewers_required=response.reviewers_required,
        interim_order_id=interim_id,
        supersedes=open_one.escalation_id if open_one else None,
        rationale=_text(" | ".join(d.rationale for d in escalated)),
    )
    superseded = (
        replace(open_one, status=EscalationStatus.SUPERSEDED, superseded_by=escalation_id)
        if open_one
        else None
    )
    return EscalationPlan(escalation, raised, interim, superseded)


def overdue_reminder(
    escalation: Escalation, now: datetime
) -> tuple[EscalationOverdue, Escalation] | None:
    """The reminder for an escalation past its deadline, once, while it is still open.

    Returns the event and the escalation marked as reminded; None when there is nothing
    to remind (decided, superseded, not yet due, or reminded already). The durable timer
    fires once per escalation; this makes a second firing harmless too.
    """
    if (
        escalation.status is not EscalationStatus.OPEN
        or escalation.reminded_at is not None
        or now < escalation.decide_by
    ):
        return None
    tallies = [
        DecisionTally(decision=decision, order_sha256=sha, signed_by=signers)
        for (decision, sha), signers in escalation.tallies()
    ]
    needed = escalation.reviewers_required
    if not tallies:
        detail = f"no reviewer has decided; {needed} signature(s) on one decision are needed"
    else:
        best = max(len(t.signed_by) for t in tallies)
        detail = (
            f"{len(tallies)} candidate decision(s), at most {best} of {needed} signatures "
            "on one of them" + ("; the reviewers disagree" if len(tallies) > 1 else "")
        )
    if escalation.interim_in_force:
        detail += "; the interim restriction stays in force until a decision takes effect"
    reminder = EscalationOverdue(
        escalation_id=escalation.escalation_id,
        submission_id=escalation.submission_id,
        model_id=escalation.model_id,
        level=escalation.level,
        domains=list(escalation.domains),
        decide_by=escalation.decide_by,
        reviewers_required=needed,
        tallies=tallies,
        interim_order_id=escalation.interim_order_id if escalation.interim_in_force else None,
        detail=_text(detail),
        reminded_at=now,
    )
    return reminder, replace(escalation, reminded_at=now)


def reminder_event_id(escalation_id: UUID) -> str:
    """Deterministic: a second reminder could not even be queued (unique outbox id)."""
    return str(uuid.uuid5(ESCALATION_NAMESPACE, f"{escalation_id}/overdue"))


def _at_or_above_bar(domain: DomainAssessment, policy: ThresholdsPolicy) -> bool:
    bar = domain.escalation_bar or policy.domain(domain.domain).escalation_bar
    return domain.level.rank >= bar.rank


def _asks_for_more(level: RiskLevel, domains: Sequence[object], reference: Escalation) -> bool:
    return level.rank > reference.level.rank or not set(domains) <= set(reference.domains)


def _latest_decided(escalations: Sequence[Escalation]) -> Escalation | None:
    decided = [e for e in escalations if e.status is not EscalationStatus.SUPERSEDED]
    return max(decided, key=lambda e: (e.raised_at, str(e.escalation_id)), default=None)


def _text(value: str) -> str:
    value = value or "-"
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
