"""The console's projections as decision tables: events in, state out (no I/O).

Out of order, redelivered: a fold is a join, so the state after a set of events
does not depend on their order or on duplicates, and it never moves back.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from contracts import Event, make_event
from contracts.events import (
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    EvaluationStarted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    RiskAssessed,
    SubmissionRejected,
    SubmissionWithdrawn,
)
from services.console import projection
from services.console.model import (
    Compliance,
    EscalationStatus,
    EvaluationFacts,
    IntakeFacts,
    Lifecycle,
    RiskFacts,
    SuiteStage,
    trace_id_of,
)
from tests.console.scenario import Scenario
from tests.contracts.examples import example

S = TypeVar("S")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def fold_all(fold: Callable[[S | None, Event], S | None], events: Sequence[Event]) -> S | None:
    state: S | None = None
    for event in events:
        state = fold(state, event)
    return state


def intake_fold(state: IntakeFacts | None, event: Event) -> IntakeFacts | None:
    return projection.fold_intake(state, event, traceparent=TRACEPARENT)


def orders_of(events: Sequence[Event]) -> dict[Any, Any]:
    """Every order's state, the way the risk handler folds them (supersedes included)."""
    orders: dict[Any, Any] = {}
    for event in events:
        if isinstance(event, RestrictionOrdered | RestrictionLiftOrdered):
            orders[event.order_id] = projection.fold_order(orders.get(event.order_id), event)
        if isinstance(event, RestrictionOrdered) and event.supersedes is not None:
            orders[event.supersedes] = projection.replaced(orders.get(event.supersedes), event)
    return orders


def escalations_of(events: Sequence[Event]) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    for event in events:
        if isinstance(event, EscalationRaised | EscalationDecided | EscalationOverdue):
            found[event.escalation_id] = projection.fold_escalation(
                found.get(event.escalation_id), event
            )
        if isinstance(event, EscalationRaised) and event.supersedes is not None:
            found[event.supersedes] = projection.superseded(found.get(event.supersedes), event)
    return found


def everything(events: Sequence[Event]) -> tuple[Any, ...]:
    return (
        fold_all(intake_fold, events),
        fold_all(projection.fold_evaluation, events),
        fold_all(projection.fold_risk, events),
        escalations_of(events),
        orders_of(events),
    )


# --- intake -----------------------------------------------------------------------------


def test_an_accepted_submission_has_its_window_model_and_trace() -> None:
    s = Scenario()
    facts = projection.fold_intake(None, s.accepted(), traceparent=TRACEPARENT)
    assert facts is not None
    assert (facts.lab_id, facts.model_id, facts.model_name) == (s.lab_id, s.model_id, s.name)
    assert (facts.accepted_at, facts.deadline, facts.review_days) == (s.start, s.deadline, 14)
    assert trace_id_of(facts.traceparent) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_rejection_that_names_no_submission_leaves_the_submissions_alone() -> None:
    rejection = example(SubmissionRejected, submission_id=None)
    assert projection.fold_intake(None, rejection) is None


def test_a_withdrawal_read_before_the_acceptance_keeps_both_facts() -> None:
    s = Scenario()
    withdrawn = example(SubmissionWithdrawn, submission_id=s.submission_id, model_id=s.model_id)
    facts = fold_all(intake_fold, [withdrawn, s.accepted()])
    assert facts is not None and facts.withdrawn_at is not None and facts.accepted_at == s.start
    assert facts.traceparent == TRACEPARENT


# --- lifecycle: the furthest stage known ------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "state"),
    [
        ({}, Lifecycle.PENDING),
        ({"rejected"}, Lifecycle.REJECTED),
        ({"rejected", "accepted"}, Lifecycle.ACCEPTED),
        ({"accepted"}, Lifecycle.ACCEPTED),
        ({"accepted", "started"}, Lifecycle.EVALUATING),
        ({"completed"}, Lifecycle.EVALUATED),  # read before its EvaluationStarted
        ({"accepted", "started", "completed"}, Lifecycle.EVALUATED),
        ({"accepted", "started", "closed"}, Lifecycle.WINDOW_CLOSED),
        ({"accepted", "closed", "concluded"}, Lifecycle.CONCLUDED),
        ({"accepted", "started", "withdrawn"}, Lifecycle.WITHDRAWN),
        ({"accepted", "closed", "concluded", "withdrawn"}, Lifecycle.WITHDRAWN),
    ],
)
def test_the_state_is_the_furthest_stage_whose_fact_is_known(
    facts: set[str], state: Lifecycle
) -> None:
    s = Scenario()
    sid, at = s.submission_id, s.start
    intake = IntakeFacts(
        sid,
        accepted_at=at if "accepted" in facts else None,
        rejected_at=at if "rejected" in facts else None,
        withdrawn_at=at if "withdrawn" in facts else None,
        window_closed_at=at if "closed" in facts else None,
    )
    evaluation = EvaluationFacts(
        sid,
        started_at=at if "started" in facts else None,
        completed_at=at if "completed" in facts else None,
    )
    risk = RiskFacts(sid, concluded_at=at if "concluded" in facts else None)
    assert projection.lifecycle(intake, evaluation, risk) is state


# --- evaluation -----------------------------------------------------------------------


def test_suites_are_planned_then_end_with_their_final_status() -> None:
    s = Scenario()
    facts = fold_all(projection.fold_evaluation, [s.started(), s.finding(), s.completed()])
    assert facts is not None
    cyber, bio = facts.suite("cyber-ctf-proxy"), facts.suite("bio-proxy")
    assert cyber is not None and bio is not None
    assert (cyber.stage, cyber.status, cyber.timeout_seconds) == (SuiteStage.ENDED, "completed", 60)
    assert (bio.stage, bio.status, bio.attempts) == (SuiteStage.ENDED, "failed", 2)


def test_a_suites_failure_keeps_its_error_when_the_completion_reports_it_later() -> None:
    s = Scenario()
    facts = fold_all(projection.fold_evaluation, [s.started(), s.failed(), s.completed()])
    assert facts is not None
    bio = facts.suite("bio-proxy")
    assert bio is not None and bio.stage is SuiteStage.ENDED and bio.failure is not None


def test_a_late_failure_does_not_reopen_a_suite_the_completion_ended() -> None:
    s = Scenario()
    facts = fold_all(projection.fold_evaluation, [s.started(), s.completed(), s.failed()])
    assert facts is not None
    bio = facts.suite("bio-proxy")
    assert bio is not None and (bio.stage, bio.status) == (SuiteStage.ENDED, "failed")


def test_a_completion_read_before_the_plan_still_gets_the_plans_time_limits() -> None:
    s = Scenario()
    facts = fold_all(projection.fold_evaluation, [s.completed(), s.started()])
    assert facts is not None and facts.started_at is not None
    cyber = facts.suite("cyber-ctf-proxy")
    assert cyber is not None and cyber.timeout_seconds == 60 and cyber.stage is SuiteStage.ENDED


# --- risk: levels, escalations, orders ---------------------------------------------------


def test_a_later_assessment_replaces_an_earlier_one_and_never_the_reverse() -> None:
    s = Scenario()
    first, second = s.assessed(sequence=1, level="high"), s.assessed(sequence=2)
    for order in ([first, second], [second, first]):
        facts = fold_all(projection.fold_risk, order)
        assert facts is not None and facts.assessment is not None
        assert (facts.assessment.overall_level, facts.assessments) == ("critical", 2)


def test_a_level_keeps_its_rationale_and_the_findings_behind_it() -> None:
    s = Scenario()
    facts = projection.fold_risk(None, s.assessed())
    assert facts is not None and facts.assessment is not None
    (cyber,) = facts.assessment.domains
    assert cyber.rationale == "cyber-ctf-proxy accuracy 0.93 >= 0.9 (critical)"
    assert [(f.finding_id, f.band, f.role) for f in cyber.findings] == [
        (s.finding_cyber, "critical", "drives_level")
    ]


def test_an_escalation_awaits_until_its_quorum_signs_a_concluding_decision() -> None:
    s = Scenario()
    one = s.decided("reviewer-a", signed_by=["reviewer-a"], quorum=False)
    two = s.decided("reviewer-b", signed_by=["reviewer-a", "reviewer-b"], quorum=True)
    awaiting = escalations_of([s.raised(), one])[s.escalation]
    assert (awaiting.status, awaiting.signatures, awaiting.reviewers_required) == (
        EscalationStatus.AWAITING,
        1,
        2,
    )
    decided = escalations_of([s.raised(), one, two])[s.escalation]
    assert (decided.status, decided.decision, decided.signatures) == (
        EscalationStatus.DECIDED,
        "restrict",
        2,
    )


def test_signatures_read_before_the_escalation_count_towards_its_quorum() -> None:
    s = Scenario()
    two = s.decided("reviewer-b", signed_by=["reviewer-b"], quorum=False)
    escalation = escalations_of([two, s.raised()])[s.escalation]
    assert escalation.signatures == 1 and escalation.raised_at is not None


def test_disagreeing_reviewers_are_tallied_per_decision() -> None:
    s = Scenario()
    monitor = example(
        EscalationDecided,
        submission_id=s.submission_id,
        model_id=s.model_id,
        escalation_id=s.escalation,
        reviewer_id="reviewer-c",
        decision="monitor",
        order_id=None,
        order_sha256=None,
        signed_by=["reviewer-c"],
        quorum_met=False,
    )
    one = s.decided("reviewer-a", signed_by=["reviewer-a"], quorum=False)
    escalation = escalations_of([s.raised(), one, monitor])[s.escalation]
    assert {(t.decision, tuple(t.signed_by)) for t in escalation.tallies} == {
        ("monitor", ("reviewer-c",)),
        ("restrict", ("reviewer-a",)),
    }
    assert escalation.signatures == 1


def test_an_escalation_superseded_by_a_higher_one_is_no_longer_awaiting() -> None:
    s = Scenario()
    newer = s.raised(escalation_id=uuid4(), supersedes=s.escalation, raised_at=s.at(minutes=1))
    found = escalations_of([s.raised(), newer])
    assert found[s.escalation].status is EscalationStatus.SUPERSEDED
    assert found[newer.escalation_id].status is EscalationStatus.AWAITING


def test_an_overdue_reminder_marks_the_escalation_and_keeps_its_tallies() -> None:
    s = Scenario()
    escalation = escalations_of([s.raised(), s.overdue_escalation()])[s.escalation]
    assert escalation.overdue_at is not None and escalation.signatures == 1


def test_a_confirmed_order_supersedes_the_interim_one() -> None:
    s = Scenario()
    orders = orders_of([s.interim(), s.confirmed()])
    interim, confirmed = orders[s.interim_order], orders[s.order]
    assert interim.superseded_by == s.order and interim.interim is True
    assert confirmed.reviewer_ids == ("reviewer-a", "reviewer-b")
    now = s.at(minutes=10)
    assert projection.order_status(interim, None, now) == "superseded"
    assert projection.order_status(confirmed, None, now) == "in force"


def test_an_order_lifted_by_access_is_lifted_whatever_risk_said() -> None:
    s = Scenario()
    (interim,) = orders_of([s.interim()]).values()
    lift = projection.lift_of(s.lifted())
    assert projection.order_status(interim, lift, s.at(minutes=10)) == "lifted"


@pytest.mark.parametrize(
    ("effective_in_s", "expires_in_s", "status"),
    [(-60, None, "in force"), (60, None, "scheduled"), (-120, -60, "expired")],
)
def test_an_orders_status_follows_its_time_window(
    effective_in_s: float, expires_in_s: float | None, status: str
) -> None:
    s = Scenario()
    now = s.at(hours=1)
    order = example(
        RestrictionOrdered,
        submission_id=s.submission_id,
        model_id=s.model_id,
        ordered_at=now - timedelta(seconds=300),
        effective_at=now + timedelta(seconds=effective_in_s),
        expires_at=None if expires_in_s is None else now + timedelta(seconds=expires_in_s),
    )
    folded = projection.fold_order(None, order)
    assert folded is not None and projection.order_status(folded, None, now) == status


def test_the_scope_of_an_order_reads_as_a_line() -> None:
    s = Scenario()
    order = projection.fold_order(None, s.confirmed())
    assert order is not None and order.scope is not None
    assert "nationals (any citizenship) of KP" in order.scope
    assert "(with 1 exemption(s))" in order.scope


# --- compliance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_after_deadline_s", "overdue", "later_version", "expected"),
    [
        (-60, False, False, Compliance.DUE),
        (10, False, False, Compliance.CHECKING),
        (3600, False, False, Compliance.ACKNOWLEDGED),
        (3600, True, False, Compliance.OVERDUE),
        (-60, False, True, Compliance.SUPERSEDED),
        (3600, True, True, Compliance.OVERDUE),
    ],
)
def test_a_policy_versions_compliance(
    now_after_deadline_s: float, overdue: bool, later_version: bool, expected: Compliance
) -> None:
    s = Scenario()
    deadline = s.at(hours=1)
    v1 = projection.policy_of(s.policy(1, published=s.at(seconds=25), acknowledge_by=deadline))
    v2 = projection.policy_of(s.policy(2, published=s.at(minutes=5), acknowledge_by=s.at(hours=2)))
    missed = projection.overdue_of(s.compliance_overdue()) if overdue else None
    now = deadline + timedelta(seconds=now_after_deadline_s)
    later = [v2] if later_version else []
    assert projection.compliance(v1, later, missed, now, timedelta(seconds=300)) is expected


# --- order and duplicates: the state does not depend on them ---------------------------


def test_a_redelivered_event_changes_nothing() -> None:
    events = Scenario().pipeline()
    assert everything(events) == everything([e for event in events for e in (event, event)])


def test_any_order_of_a_reviews_events_ends_in_the_same_state() -> None:
    events = Scenario().pipeline()
    expected = everything(events)
    shuffled = random.Random(12)
    for _ in range(200):
        order = list(events)
        shuffled.shuffle(order)
        assert everything(order) == expected


def test_no_prefix_of_the_events_leaves_a_later_state_than_the_whole() -> None:
    s = Scenario()
    events = s.pipeline()
    ranks = list(Lifecycle)
    for length in range(len(events) + 1):
        for prefix in itertools.islice(itertools.permutations(events[:length]), 20):
            intake = fold_all(intake_fold, prefix) or IntakeFacts(s.submission_id)
            evaluation = fold_all(projection.fold_evaluation, prefix) or EvaluationFacts(
                s.submission_id
            )
            risk = fold_all(projection.fold_risk, prefix) or RiskFacts(s.submission_id)
            state = projection.lifecycle(intake, evaluation, risk)
            assert ranks.index(state) <= ranks.index(Lifecycle.EVALUATED)


def test_a_state_never_moves_back_as_events_arrive() -> None:
    s = Scenario()
    events = [*s.pipeline(), s.window_closed(), s.concluded()]
    ranks = list(Lifecycle)
    order = list(events)
    random.Random(3).shuffle(order)
    seen = -1
    intake: IntakeFacts | None = None
    evaluation: EvaluationFacts | None = None
    risk: RiskFacts | None = None
    for event in order:
        intake = intake_fold(intake, event)
        evaluation = projection.fold_evaluation(evaluation, event)
        risk = projection.fold_risk(risk, event)
        state = projection.lifecycle(
            intake or IntakeFacts(s.submission_id),
            evaluation or EvaluationFacts(s.submission_id),
            risk or RiskFacts(s.submission_id),
        )
        assert ranks.index(state) >= seen
        seen = ranks.index(state)
    assert ranks[seen] is Lifecycle.CONCLUDED


# --- the timeline, refusals, dead letters ----------------------------------------------


def test_every_submission_event_has_its_line_on_the_timeline() -> None:
    s = Scenario()
    for data in s.pipeline():
        event = make_event(data, source="/test", subject=str(s.submission_id))
        entry = projection.timeline_entry(event, "x")
        assert entry is not None and entry.submission_id == s.submission_id
        assert entry.kind == type(data).__name__ and entry.summary


def test_an_access_policy_is_on_its_models_timeline() -> None:
    s = Scenario()
    data = s.policy(1, published=s.at(seconds=25), acknowledge_by=s.at(hours=1))
    entry = projection.timeline_entry(make_event(data, source="/t", subject=s.model_id), "p")
    assert entry is not None and (entry.submission_id, entry.model_id) == (None, s.model_id)
    assert entry.summary.startswith("policy version 1 of")


def test_a_refusal_names_its_claimed_sender_and_reason() -> None:
    s = Scenario()
    refusal = projection.refusal_of("e-1", s.compliance_rejected())
    assert (refusal.kind, refusal.reason, refusal.sender, refusal.model_id) == (
        "ComplianceRejected",
        "policy_mismatch",
        s.lab_id,
        s.model_id,
    )


def dlq_headers(**changes: str) -> dict[str, bytes]:
    headers = {
        "dlq.reason": "handler_failed",
        "dlq.error": "RuntimeError: boom",
        "dlq.consumer": "risk.evaluation.events",
        "dlq.attempts": "3",
        "dlq.origin.topic": "evaluation.events",
        "dlq.origin.partition": "2",
        "dlq.origin.offset": "41",
        "dlq.failed_at": "2026-01-15T12:00:00+00:00",
    } | changes
    return {k: v.encode() for k, v in headers.items()}


def test_a_dead_letter_is_described_by_its_headers_and_tied_to_its_submission() -> None:
    s = Scenario()
    data: Event = s.finding()
    event = make_event(data, source="/t", subject=str(s.submission_id))
    letter = projection.dead_letter_of(
        "evaluation.events.dlq",
        0,
        7,
        key=str(s.submission_id).encode(),
        headers=dlq_headers(),
        value=b"{...}",
        event=event,
    )
    assert (letter.reason, letter.consumer, letter.attempts) == (
        "handler_failed",
        "risk.evaluation.events",
        3,
    )
    assert (letter.origin_topic, letter.origin_partition, letter.origin_offset) == (
        "evaluation.events",
        2,
        41,
    )
    assert (letter.submission_id, letter.model_id, letter.event_id) == (
        s.submission_id,
        s.model_id,
        event.id,
    )


def test_an_undecodable_dead_letter_is_tied_by_its_key_and_shown_as_bytes() -> None:
    s = Scenario()
    letter = projection.dead_letter_of(
        "access.events.dlq",
        0,
        1,
        key=s.model_id.encode(),
        headers=dlq_headers(**{"dlq.reason": "malformed_json"}),
        value=b"\xff\xfe not json" * 200,
        event=None,
    )
    assert (letter.reason, letter.submission_id, letter.model_id) == (
        "malformed_json",
        None,
        s.model_id,
    )
    assert letter.size == 11 * 200 and len(letter.preview) == projection.PREVIEW_CHARS


def test_forged_dead_letter_headers_are_shown_not_believed() -> None:
    headers = dlq_headers(
        **{"dlq.origin.offset": "not a number", "dlq.failed_at": "yesterday", "dlq.attempts": "x"}
    )
    del headers["dlq.reason"]
    letter = projection.dead_letter_of(
        "lab.submissions.dlq", 0, 3, key=b"not-a-uuid", headers=headers, value=b"", event=None
    )
    assert (letter.reason, letter.origin_offset, letter.failed_at, letter.attempts) == (
        "unknown",
        None,
        None,
        None,
    )
    assert (letter.submission_id, letter.model_id) == (None, None)


def test_a_traceparent_that_is_not_one_names_no_trace() -> None:
    assert trace_id_of("00-zz-00f067aa0ba902b7-01") is None
    assert trace_id_of(None) is None
    assert trace_id_of("garbage") is None


def test_evaluation_started_keeps_the_suite_registry_version() -> None:
    facts = projection.fold_evaluation(None, example(EvaluationStarted))
    assert facts is not None and facts.registry_version == "2026.1"


def test_a_risk_event_without_an_assessment_creates_no_level() -> None:
    s = Scenario()
    facts = projection.fold_risk(None, s.raised())
    assert facts is not None and facts.assessment is None
    assert projection.fold_risk(None, example(RiskAssessed, submission_id=s.submission_id))
