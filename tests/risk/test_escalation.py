"""Escalation: when an assessment raises one, the interim restriction, superseding, and
the one reminder past the decision deadline."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.events.common import RiskDomain, RiskLevel
from contracts.events.risk import NationalityRule, RecommendedAction, VerificationStatus
from services.risk.escalation import overdue_reminder, plan_escalation, reminder_event_id
from services.risk.model import EscalationStatus
from services.risk.orders import interim_order_id
from tests.risk.support import (
    NOW,
    assessed,
    critical_cyber,
    finding,
    high_cyber,
    policy_with,
    profile_findings,
    shipped_policy,
)

POLICY = shipped_policy()


def test_a_level_below_every_bar_raises_nothing() -> None:
    result = assessed(profile_findings({RiskDomain.AUTONOMY: 1.0, RiskDomain.BIO: 1.0}), POLICY)
    assert result.overall_level is RiskLevel.HIGH  # autonomy high, bar critical
    assert plan_escalation(result, [], POLICY, NOW) is None


def test_critical_cyber_escalates_with_an_interim_restriction_at_once() -> None:
    plan = critical_cyber(POLICY)
    raised, interim = plan.raised, plan.interim
    assert (raised.level, raised.domains, raised.escalation_bar) == (
        RiskLevel.CRITICAL,
        [RiskDomain.CYBER],
        RiskLevel.HIGH,
    )
    assert raised.reviewers_required == 2
    assert raised.decide_by == NOW + timedelta(days=2)
    assert raised.recommended_actions == [
        RecommendedAction.RESTRICT_FOREIGN_NATIONAL_ACCESS,
        RecommendedAction.DELAY_RELEASE,
        RecommendedAction.NOTIFY_AGENCIES,
    ]
    assert raised.interim_restriction and interim is not None
    assert raised.interim_order_id == interim.order_id == interim_order_id(raised.escalation_id)
    assert interim.interim and interim.reviewer_id is None
    assert interim.effective_at == NOW and interim.expires_at is None
    assert interim.compliance_deadline == NOW + timedelta(hours=4)
    assert interim.scope.country_groups == ["arms-embargoed"]
    assert interim.scope.nationality_rule is NationalityRule.MOST_RECENT
    assert interim.scope.verification_statuses == [
        VerificationStatus.UNVERIFIED,
        VerificationStatus.PENDING,
    ]
    assert interim.escalation_id == raised.escalation_id
    assert (interim.level, interim.policy_version) == (RiskLevel.CRITICAL, POLICY.version)


def test_the_escalation_carries_the_findings_and_the_rationale() -> None:
    found = finding()
    result = assessed([found], POLICY)
    plan = plan_escalation(result, [], POLICY, NOW)
    assert plan is not None
    assert plan.raised.finding_ids == [found.finding_id]
    assert plan.raised.assessment_id == result.assessment_id
    assert plan.raised.rationale is not None and "(critical)" in plan.raised.rationale
    assert plan.escalation.status is EscalationStatus.OPEN


def test_high_cyber_escalates_to_one_reviewer_without_interim_restriction() -> None:
    plan = high_cyber(POLICY)
    assert (plan.raised.level, plan.raised.reviewers_required) == (RiskLevel.HIGH, 1)
    assert plan.interim is None and not plan.raised.interim_restriction
    assert plan.raised.decide_by == NOW + timedelta(days=5)


def test_deadlines_follow_a_shortened_day() -> None:
    result = assessed([finding()], POLICY)
    plan = plan_escalation(result, [], POLICY, NOW, seconds_per_day=1.0)
    assert plan is not None and plan.interim is not None
    assert plan.raised.decide_by == NOW + timedelta(seconds=2)
    assert plan.interim.compliance_deadline == NOW + timedelta(seconds=4 / 24)


def test_the_same_or_a_lower_level_does_not_raise_again_while_one_is_open() -> None:
    open_one = critical_cyber(POLICY).escalation
    for score in (1.0, 0.7):
        again = assessed([finding(score=score), finding(score=0.0)], POLICY)
        assert plan_escalation(again, [open_one], POLICY, NOW) is None


def test_a_higher_level_supersedes_the_open_escalation() -> None:
    high = high_cyber(POLICY).escalation
    plan = plan_escalation(assessed([finding()], POLICY), [high], POLICY, NOW + timedelta(hours=1))
    assert plan is not None
    assert plan.raised.supersedes == high.escalation_id
    assert plan.superseded is not None
    assert plan.superseded.status is EscalationStatus.SUPERSEDED
    assert plan.superseded.superseded_by == plan.escalation.escalation_id
    assert plan.interim is not None  # critical: the interim order is ordered now


def test_another_domain_crossing_supersedes_and_carries_the_interim_order_over() -> None:
    first = critical_cyber(POLICY).escalation
    manual_bio = finding(RiskDomain.BIO, "uplift", 0.9, method="manual", evaluator="red-team-a")
    bio_proxy = finding(RiskDomain.BIO, "protocol-troubleshooting", 1.0, suite_id="bio-proxy")
    result = assessed([finding(), manual_bio, bio_proxy], POLICY)
    plan = plan_escalation(result, [first], POLICY, NOW + timedelta(hours=1))
    assert plan is not None
    assert set(plan.raised.domains) == {RiskDomain.CYBER, RiskDomain.BIO}
    assert plan.interim is None, "no second interim order"
    assert plan.raised.interim_order_id == first.interim_order_id
    assert plan.escalation.interim_order_id == first.interim_order_id


def test_after_a_decision_only_more_than_was_decided_escalates_again() -> None:
    decided = replace(high_cyber(POLICY).escalation, status=EscalationStatus.DISMISSED)
    same = assessed([finding(score=0.7)], POLICY)
    assert plan_escalation(same, [decided], POLICY, NOW) is None
    higher = plan_escalation(assessed([finding()], POLICY), [decided], POLICY, NOW)
    assert higher is not None and higher.raised.supersedes is None
    assert higher.superseded is None


def test_an_assessment_under_another_policy_version_is_refused(tmp_path: Path) -> None:
    other = policy_with(tmp_path, {"version": "thresholds-2099.1"})
    with pytest.raises(ValueError, match=r"thresholds-2099\.1"):
        plan_escalation(assessed([finding()], POLICY), [], other, NOW)


def test_escalation_ids_are_deterministic() -> None:
    result = assessed([finding()], POLICY)
    first = plan_escalation(result, [], POLICY, NOW)
    again = plan_escalation(result, [], POLICY, NOW + timedelta(minutes=5))
    assert first is not None and again is not None
    assert first.escalation.escalation_id == again.escalation.escalation_id
    assert first.interim is not None and again.interim is not None
    assert first.interim.order_id == again.interim.order_id


# --- the reminder ------------------------------------------------------------------


def test_no_reminder_before_the_deadline() -> None:
    escalation = critical_cyber(POLICY).escalation
    assert overdue_reminder(escalation, escalation.decide_by - timedelta(seconds=1)) is None


def test_the_deadline_passing_raises_one_reminder_naming_what_is_missing() -> None:
    escalation = critical_cyber(POLICY).escalation
    due = escalation.decide_by
    result = overdue_reminder(escalation, due)
    assert result is not None
    reminder, reminded = result
    assert reminder.escalation_id == escalation.escalation_id
    assert (reminder.decide_by, reminder.reminded_at, reminder.reviewers_required) == (due, due, 2)
    assert reminder.interim_order_id == escalation.interim_order_id
    assert "no reviewer has decided" in reminder.detail
    assert "interim restriction stays in force" in reminder.detail
    assert reminded.reminded_at == due
    assert overdue_reminder(reminded, due + timedelta(days=1)) is None, "once"


def test_a_decided_or_superseded_escalation_is_not_reminded() -> None:
    escalation = critical_cyber(POLICY).escalation
    late = escalation.decide_by + timedelta(days=1)
    for status in (EscalationStatus.RESTRICTED, EscalationStatus.SUPERSEDED):
        assert overdue_reminder(replace(escalation, status=status), late) is None


def test_the_reminder_event_id_is_deterministic() -> None:
    escalation = critical_cyber(POLICY).escalation
    assert reminder_event_id(escalation.escalation_id) == reminder_event_id(
        escalation.escalation_id
    )
    assert reminder_event_id(escalation.escalation_id) != reminder_event_id(
        high_cyber(POLICY).escalation.escalation_id
    )
