"""Where a submission waits longer than expected, and on what: the rules as a table."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from contracts import Event
from contracts.events import SubmissionWithdrawn
from services.console import projection
from services.console.model import SubmissionView
from services.console.stuck import Thresholds, stuck_stages
from tests.console.scenario import Scenario
from tests.contracts.examples import example

LIMITS = Thresholds(
    evaluation_start=timedelta(seconds=60),
    suite_grace=timedelta(seconds=30),
    assessment=timedelta(seconds=60),
    window_close=timedelta(seconds=60),
    conclusion=timedelta(seconds=60),
)
GRACE = timedelta(seconds=300)


def view(s: Scenario, events: list[Any], now: datetime, **extra: Any) -> SubmissionView:
    intake = evaluation = risk = None
    escalations: dict[Any, Any] = {}
    for event in events:
        intake = projection.fold_intake(intake, event)
        evaluation = projection.fold_evaluation(evaluation, event)
        risk = projection.fold_risk(risk, event)
        if type(event).__name__.startswith("Escalation"):
            escalations[event.escalation_id] = projection.fold_escalation(
                escalations.get(event.escalation_id), event
            )
    return projection.compose(
        s.submission_id,
        intake=intake,
        evaluation=evaluation,
        risk=risk,
        escalations=escalations.values(),
        now=now,
        compliance_grace=GRACE,
        **extra,
    )


def stages(s: Scenario, events: list[Any], now: datetime, **extra: Any) -> list[tuple[str, str]]:
    return [
        (x.stage, x.waiting_on) for x in stuck_stages(view(s, events, now, **extra), now, LIMITS)
    ]


def test_an_accepted_submission_waits_on_evaluation_after_the_threshold() -> None:
    s = Scenario()
    assert stages(s, [s.accepted()], s.at(seconds=59)) == []
    assert stages(s, [s.accepted()], s.at(seconds=61)) == [("evaluation", "evaluation")]


def test_a_suite_running_past_its_time_limit_times_attempts_is_stuck() -> None:
    s = Scenario()
    events = [s.accepted(), s.started()]
    # both suites: 60 s x 2 attempts + 30 s grace, from the plan at +5 s
    assert stages(s, events, s.at(seconds=5 + 150)) == []
    assert stages(s, events, s.at(seconds=5 + 151)) == [
        ("suite bio-proxy", "evaluation"),
        ("suite cyber-ctf-proxy", "evaluation"),
    ]


def test_a_failed_suite_is_not_stuck() -> None:
    s = Scenario()
    assert stages(s, [s.accepted(), s.started(), s.failed()], s.at(seconds=500)) == [
        ("suite cyber-ctf-proxy", "evaluation")
    ]


def test_evaluation_done_with_findings_but_no_assessment_waits_on_risk() -> None:
    s = Scenario()
    events = [s.accepted(), s.started(), s.finding(), s.completed()]
    now = s.at(seconds=40 + 61)
    assert stages(s, events, now, findings={"cyber-ctf-proxy": 1}) == [("assessment", "risk")]
    assert stages(s, [*events, s.assessed()], now, findings={"cyber-ctf-proxy": 1}) == []


def test_an_evaluation_without_findings_needs_no_assessment() -> None:
    s = Scenario()
    events = [s.accepted(), s.started(), s.completed()]
    assert stages(s, events, s.at(seconds=500)) == []


def test_an_escalation_past_its_decision_deadline_waits_on_the_reviewers() -> None:
    s = Scenario()
    events = [s.accepted(), s.started(), s.completed(), s.assessed(), s.raised()]
    assert ("escalation", "reviewers") not in stages(s, events, s.at(days=3, seconds=-1))
    assert ("escalation", "reviewers") in stages(s, events, s.at(days=3, seconds=1))
    decided = [
        *events,
        s.decided("reviewer-a", signed_by=["reviewer-a"], quorum=False),
        s.decided("reviewer-b", signed_by=["reviewer-a", "reviewer-b"], quorum=True),
    ]
    assert ("escalation", "reviewers") not in stages(s, decided, s.at(days=3, seconds=1))


def test_a_policy_version_not_acknowledged_by_its_deadline_waits_on_the_lab() -> None:
    s = Scenario()
    events = [s.accepted(), s.started(), s.completed()]
    policy = projection.policy_of(
        s.policy(1, published=s.at(seconds=25), acknowledge_by=s.at(hours=1))
    )
    missed = projection.overdue_of(s.compliance_overdue())
    now = s.at(hours=2)
    assert stages(s, events, now, policies=[policy]) == []
    assert stages(s, events, now, policies=[policy], overdue=[missed]) == [
        ("compliance", f"lab {s.lab_id}")
    ]


def test_a_window_past_its_deadline_waits_on_intake_then_the_conclusion_on_risk() -> None:
    s = Scenario()
    events = [s.accepted(), s.started(), s.completed()]
    assert stages(s, events, s.deadline + timedelta(seconds=61)) == [("window", "intake")]
    closed = [*events, s.window_closed()]
    assert stages(s, closed, s.deadline + timedelta(seconds=62)) == [("conclusion", "risk")]
    assert stages(s, [*closed, s.concluded()], s.deadline + timedelta(seconds=62)) == []


def test_records_in_a_dlq_about_the_submission_are_flagged() -> None:
    s = Scenario()
    assert stages(s, [s.accepted(), s.started()], s.at(seconds=10), dead_letters=2) == [
        ("dead letters", "an operator")
    ]


@pytest.mark.parametrize("settled", ["withdrawn", "concluded"])
def test_a_settled_submission_waits_on_nothing_in_the_pipeline(settled: str) -> None:
    s = Scenario()
    events: list[Event] = [s.accepted()]
    if settled == "withdrawn":
        events.append(
            example(SubmissionWithdrawn, submission_id=s.submission_id, model_id=s.model_id)
        )
    else:
        events += [s.window_closed(), s.concluded()]
    assert stages(s, events, s.deadline + timedelta(days=1)) == []
