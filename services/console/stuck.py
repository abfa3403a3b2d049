"""Where a submission has waited longer than expected, and on what (pure; ``now`` given).

Each rule names the stage that should have moved, what it waits on (the service
whose next event is missing), and since when. The thresholds are settings
(``ConsoleSettings.thresholds``): how long each hop may take before it is news.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.console.model import Compliance, EscalationStatus, Lifecycle, SubmissionView

SETTLED = frozenset({Lifecycle.CONCLUDED, Lifecycle.WITHDRAWN, Lifecycle.REJECTED})


@dataclass(frozen=True)
class Thresholds:
    evaluation_start: timedelta  # SubmissionAccepted -> EvaluationStarted
    suite_grace: timedelta  # beyond timeout x attempts of a suite
    assessment: timedelta  # EvaluationCompleted -> a first RiskAssessed
    window_close: timedelta  # the deadline -> ReviewWindowClosed
    conclusion: timedelta  # ReviewWindowClosed -> ReviewConcluded


@dataclass(frozen=True)
class Stuck:
    stage: str
    waiting_on: str
    since: datetime
    detail: str

    def waited(self, now: datetime) -> timedelta:
        return now - self.since


def stuck_stages(view: SubmissionView, now: datetime, limits: Thresholds) -> list[Stuck]:
    """Every stage of ``view`` that waits past its threshold (empty: all is moving)."""
    found: list[Stuck] = []
    intake, evaluation, risk = view.intake, view.evaluation, view.risk
    active = view.state not in SETTLED
    if (
        active
        and intake.accepted_at is not None
        and evaluation.started_at is None
        and evaluation.completed_at is None
        and now - intake.accepted_at > limits.evaluation_start
    ):
        found.append(
            Stuck(
                "evaluation",
                "evaluation",
                intake.accepted_at,
                "accepted, but no EvaluationStarted",
            )
        )
    if active and evaluation.started_at is not None and evaluation.completed_at is None:
        for suite in evaluation.suites:
            if suite.status is not None or suite.timeout_seconds is None:
                continue
            budget = timedelta(seconds=suite.timeout_seconds * (suite.max_attempts or 1))
            if now - evaluation.started_at > budget + limits.suite_grace:
                found.append(
                    Stuck(
                        f"suite {suite.suite_id}",
                        "evaluation",
                        evaluation.started_at,
                        f"running past its timeout ({suite.timeout_seconds} s x "
                        f"{suite.max_attempts or 1} attempts)",
                    )
                )
    if (
        evaluation.completed_at is not None
        and risk.assessment is None
        and view.findings
        and now - evaluation.completed_at > limits.assessment
    ):
        found.append(
            Stuck(
                "assessment",
                "risk",
                evaluation.completed_at,
                "evaluation done with findings, but no RiskAssessed",
            )
        )
    for escalation in view.escalations:
        if escalation.status is not EscalationStatus.AWAITING or escalation.decide_by is None:
            continue
        if now > escalation.decide_by:
            required = escalation.reviewers_required or "?"
            found.append(
                Stuck(
                    "escalation",
                    "reviewers",
                    escalation.decide_by,
                    f"escalation {escalation.escalation_id} past its decision deadline "
                    f"({escalation.signatures}/{required} signatures)",
                )
            )
    for policy, state in view.policies:
        if state is Compliance.OVERDUE:
            found.append(
                Stuck(
                    "compliance",
                    f"lab {policy.lab_id}",
                    policy.acknowledge_by,
                    f"{policy.model_id} version {policy.version} not acknowledged by its deadline",
                )
            )
    if (
        intake.deadline is not None
        and intake.window_closed_at is None
        and view.state not in SETTLED
        and now - intake.deadline > limits.window_close
    ):
        found.append(
            Stuck("window", "intake", intake.deadline, "deadline passed, no ReviewWindowClosed")
        )
    if (
        intake.window_closed_at is not None
        and risk.concluded_at is None
        and intake.withdrawn_at is None
        and now - intake.window_closed_at > limits.conclusion
    ):
        found.append(
            Stuck(
                "conclusion",
                "risk",
                intake.window_closed_at,
                "window closed, no ReviewConcluded",
            )
        )
    if view.dead_letters:
        found.append(
            Stuck(
                "dead letters",
                "an operator",
                now,
                f"{view.dead_letters} record(s) about it in a DLQ",
            )
        )
    return found
