"""The projections: pure folds from events to the console's state, and the views composed
from them (no Kafka, no SQL, no clock: ``now`` is an argument).

Each ``fold_*`` takes the current state of one row (None: nothing known yet) and one
event and returns the new state. Every fold is a join: fields known once keep their
first value, end states only advance (a suite's stage, an assessment's sequence), sets
only grow (a tally's signatures). So a redelivered event changes nothing, and events
applied out of order end in the state the in-order run ends in (tests/console).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

from contracts import CloudEvent, Event
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
    ExternalFindingRejected,
    FindingRecorded,
    Rejection,
    RestrictionLifted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewerDecisionRejected,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.events.risk import EscalationDecision
from services.console.model import (
    Assessment,
    Checkpoint,
    Compliance,
    DeadLetter,
    DomainLevel,
    Escalation,
    EvaluationFacts,
    Finding,
    FindingBasis,
    IntakeFacts,
    Lifecycle,
    Lift,
    Order,
    Overdue,
    PolicyVersion,
    Refusal,
    RiskFacts,
    SubmissionView,
    Suite,
    SuiteStage,
    Tally,
    TimelineEntry,
)

T = TypeVar("T")

MODEL_ID = re.compile(
    r"^[a-z0-9][a-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,79}@[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$"
)


def _first(current: T | None, new: T | None) -> T | None:
    return current if current is not None else new


def _join(current: T, new: T, *, keep: Iterable[str] = ()) -> T:
    """Every field of ``current`` that is None takes ``new``'s value; ``keep`` fields
    are left as they are (the caller joins them its own way)."""
    skip = set(keep)
    changes = {
        name: value
        for name, value in vars(new).items()
        if name not in skip and getattr(current, name) is None and value is not None
    }
    return replace(current, **changes) if changes else current  # type: ignore[type-var]


# --- intake.events ------------------------------------------------------------------


def fold_intake(
    facts: IntakeFacts | None, data: Event, *, traceparent: str | None = None
) -> IntakeFacts | None:
    """The submission's intake facts after ``data`` (None: it says nothing of one)."""
    new: IntakeFacts
    if isinstance(data, SubmissionAccepted):
        new = IntakeFacts(
            submission_id=data.submission_id,
            lab_id=data.lab_id,
            model_id=data.model_id,
            model_name=data.model.name,
            model_version=data.model.version,
            model_family=data.model.family,
            accepted_at=data.accepted_at,
            deadline=data.deadline,
            review_days=data.review_days,
            acceptance=data.reason.value,
            traceparent=traceparent,
        )
    elif isinstance(data, SubmissionRejected) and data.submission_id is not None:
        new = IntakeFacts(
            submission_id=data.submission_id,
            lab_id=data.lab_id,
            rejected_at=data.rejected_at,
            rejection=data.reason.value,
        )
    elif isinstance(data, SubmissionWithdrawn):
        new = IntakeFacts(
            submission_id=data.submission_id,
            lab_id=data.lab_id,
            model_id=data.model_id,
            withdrawn_at=data.withdrawn_at,
        )
    elif isinstance(data, ReviewWindowClosed):
        new = IntakeFacts(
            submission_id=data.submission_id,
            lab_id=data.lab_id,
            model_id=data.model_id,
            deadline=data.deadline,
            window_closed_at=data.closed_at,
        )
    else:
        return facts
    return new if facts is None else _join(facts, new)


# --- evaluation.events --------------------------------------------------------------


def _join_suite(current: Suite, new: Suite) -> Suite:
    """Plan fields: first known. End fields: the higher stage's, the other's filling gaps."""
    if new.stage > current.stage:
        ahead, behind = new, current
    else:
        ahead, behind = current, new
    joined = _join(ahead, behind, keep=("stage",))
    return replace(joined, stage=ahead.stage)


def _join_suites(current: Sequence[Suite], new: Iterable[Suite]) -> tuple[Suite, ...]:
    by_id = {s.suite_id: s for s in current}
    for suite in new:
        known = by_id.get(suite.suite_id)
        by_id[suite.suite_id] = suite if known is None else _join_suite(known, suite)
    return tuple(sorted(by_id.values(), key=lambda s: s.suite_id))


def fold_evaluation(facts: EvaluationFacts | None, data: Event) -> EvaluationFacts | None:
    suites: tuple[Suite, ...] = ()
    if isinstance(data, EvaluationStarted):
        new = EvaluationFacts(
            submission_id=data.submission_id,
            model_id=data.model_id,
            started_at=data.started_at,
            registry_version=data.registry_version,
        )
        suites = tuple(
            Suite(
                suite_id=s.suite_id,
                suite_version=s.suite_version,
                domain=s.domain.value,
                capability=s.capability,
                timeout_seconds=s.timeout_seconds,
                max_attempts=s.max_attempts,
            )
            for s in data.suites
        )
    elif isinstance(data, EvaluationCompleted):
        new = EvaluationFacts(
            submission_id=data.submission_id,
            model_id=data.model_id,
            completed_at=data.completed_at,
            ended_by=data.ended_by.value,
            detail=data.detail,
        )
        suites = tuple(
            Suite(
                suite_id=s.suite_id,
                suite_version=s.suite_version,
                domain=s.domain.value,
                stage=SuiteStage.ENDED,
                status=s.status.value,
                attempts=s.attempts,
                ended_at=data.completed_at,
            )
            for s in data.suites
        )
    elif isinstance(data, EvaluationFailed):
        new = EvaluationFacts(submission_id=data.submission_id, model_id=data.model_id)
        suites = (
            Suite(
                suite_id=data.suite_id,
                suite_version=data.suite_version,
                domain=data.domain.value,
                stage=SuiteStage.FAILED,
                status="failed",
                attempts=data.attempts,
                failure=data.failure.value,
                error=data.error,
                ended_at=data.failed_at,
            ),
        )
    elif isinstance(data, FindingRecorded):
        new = EvaluationFacts(submission_id=data.submission_id, model_id=data.model_id)
    else:
        return facts
    joined = new if facts is None else _join(facts, new, keep=("suites",))
    return replace(joined, suites=_join_suites(facts.suites if facts else (), suites))


def finding_of(data: FindingRecorded) -> Finding:
    return Finding(
        finding_id=data.finding_id,
        submission_id=data.submission_id,
        suite_id=data.suite_id,
        domain=data.domain.value,
        capability=data.capability,
        metric=data.metric,
        score=data.score,
        method=data.method.value,
        evaluator=data.evaluator,
        recorded_at=data.recorded_at,
    )


# --- risk.events --------------------------------------------------------------------


def assessment_of(data: RiskAssessed) -> Assessment:
    return Assessment(
        assessment_id=data.assessment_id,
        sequence=data.sequence or 1,
        assessed_at=data.assessed_at,
        overall_level=data.overall_level.value,
        policy_version=data.policy_version,
        escalation_required=data.escalation_required,
        evaluation_incomplete=data.evaluation_incomplete,
        domains=tuple(
            DomainLevel(
                domain=d.domain.value,
                level=d.level.value,
                rationale=d.rationale,
                early_warning=d.early_warning,
                incomplete=d.incomplete,
                escalation_bar=d.escalation_bar.value if d.escalation_bar else None,
                findings=tuple(
                    FindingBasis(
                        finding_id=f.finding_id,
                        suite_id=f.suite_id,
                        score=f.score,
                        band=f.band.value,
                        role=f.role.value,
                        threshold=f.threshold,
                    )
                    for f in d.findings
                ),
            )
            for d in data.domains
        ),
    )


def fold_risk(facts: RiskFacts | None, data: Event) -> RiskFacts | None:
    """The submission's latest assessment and its conclusion."""
    if isinstance(data, RiskAssessed):
        assessed = assessment_of(data)
        current = facts or RiskFacts(submission_id=data.submission_id)
        latest = current.assessment
        if latest is None or assessed.rank > latest.rank:
            latest = assessed
        return replace(
            _join(current, RiskFacts(data.submission_id, model_id=data.model_id)),
            assessment=latest,
            assessments=max(current.assessments, assessed.sequence),
        )
    if isinstance(data, ReviewConcluded):
        new = RiskFacts(
            submission_id=data.submission_id,
            model_id=data.model_id,
            concluded_at=data.concluded_at,
            outcome=data.outcome.value,
            may_not=tuple(data.may_not),
        )
        if facts is None:
            return new
        joined = _join(facts, new, keep=("may_not",))
        return joined if facts.concluded_at is not None else replace(joined, may_not=new.may_not)
    if isinstance(data, EscalationRaised | RestrictionOrdered | EscalationDecided):
        return facts or RiskFacts(submission_id=data.submission_id, model_id=data.model_id)
    return facts


def _join_tallies(current: Iterable[Tally], new: Iterable[Tally]) -> tuple[Tally, ...]:
    by_key: dict[tuple[str, str | None], frozenset[str]] = {}
    for tally in (*current, *new):
        key = (tally.decision, tally.order_sha256)
        by_key[key] = by_key.get(key, frozenset()) | tally.signed_by
    return tuple(
        Tally(decision, order, signed) for (decision, order), signed in sorted(by_key.items())
    )


def fold_escalation(escalation: Escalation | None, data: Event) -> Escalation | None:
    """The escalation ``data`` is about: raised, signed, decided, overdue.

    A raised escalation that supersedes another is folded into that other one by
    ``superseded``; here it describes the new escalation only.
    """
    if isinstance(data, EscalationRaised):
        new = Escalation(
            escalation_id=data.escalation_id,
            submission_id=data.submission_id,
            model_id=data.model_id,
            raised_at=data.raised_at,
            level=data.level.value,
            domains=tuple(d.value for d in data.domains),
            decide_by=data.decide_by,
            reviewers_required=data.reviewers_required,
            interim_order_id=data.interim_order_id,
            supersedes=data.supersedes,
            rationale=data.rationale,
            recommended_actions=tuple(a.value for a in data.recommended_actions),
        )
    elif isinstance(data, EscalationDecided):
        signed = frozenset(data.signed_by) | {data.reviewer_id}
        tally = Tally(data.decision.value, data.order_sha256, signed)
        concludes = bool(data.quorum_met) and data.decision.concludes
        lifts = bool(data.quorum_met) and data.decision is EscalationDecision.LIFT_INTERIM
        new = Escalation(
            escalation_id=data.escalation_id,
            submission_id=data.submission_id,
            model_id=data.model_id,
            reviewers_required=data.reviewers_required,
            tallies=(tally,),
            decision=data.decision.value if concludes else None,
            decided_at=data.decided_at if concludes else None,
            interim_lifted_at=data.decided_at if lifts else None,
        )
    elif isinstance(data, EscalationOverdue):
        new = Escalation(
            escalation_id=data.escalation_id,
            submission_id=data.submission_id,
            model_id=data.model_id,
            level=data.level.value,
            domains=tuple(d.value for d in data.domains),
            decide_by=data.decide_by,
            reviewers_required=data.reviewers_required,
            interim_order_id=data.interim_order_id,
            tallies=tuple(
                Tally(t.decision.value, t.order_sha256, frozenset(t.signed_by))
                for t in data.tallies
            ),
            overdue_at=data.reminded_at,
        )
    else:
        return escalation
    if escalation is None:
        return new
    joined = _join(escalation, new, keep=("tallies", "domains", "recommended_actions"))
    return replace(
        joined,
        tallies=_join_tallies(escalation.tallies, new.tallies),
        domains=escalation.domains or new.domains,
        recommended_actions=escalation.recommended_actions or new.recommended_actions,
    )


def superseded(escalation: Escalation | None, by: EscalationRaised) -> Escalation:
    """The escalation ``by`` supersedes (known yet or not): decisions on it are over."""
    assert by.supersedes is not None
    base = escalation or Escalation(escalation_id=by.supersedes, submission_id=by.submission_id)
    return _join(base, replace(base, superseded_by=by.escalation_id))


def fold_order(order: Order | None, data: Event) -> Order | None:
    if isinstance(data, RestrictionOrdered):
        new = Order(
            order_id=data.order_id,
            submission_id=data.submission_id,
            model_id=data.model_id,
            escalation_id=data.escalation_id,
            interim=data.interim,
            ordered_at=data.ordered_at,
            effective_at=data.effective_at,
            expires_at=data.expires_at,
            compliance_deadline=data.compliance_deadline,
            reviewer_ids=tuple(data.reviewer_ids),
            supersedes=data.supersedes,
            level=data.level.value if data.level else None,
            domains=tuple(d.value for d in data.domains),
            scope=data.scope.describe(),
        )
    elif isinstance(data, RestrictionLiftOrdered):
        new = Order(
            order_id=data.order_id,
            submission_id=data.submission_id,
            model_id=data.model_id,
            escalation_id=data.escalation_id,
            lift_ordered_at=data.lifted_at,
            lift_reason=data.reason,
        )
    else:
        return order
    if order is None:
        return new
    joined = _join(order, new, keep=("reviewer_ids", "domains"))
    return replace(
        joined,
        reviewer_ids=order.reviewer_ids or new.reviewer_ids,
        domains=order.domains or new.domains,
    )


def replaced(order: Order | None, by: RestrictionOrdered) -> Order:
    """The order ``by`` supersedes (known yet or not)."""
    assert by.supersedes is not None
    base = order or Order(order_id=by.supersedes, submission_id=by.submission_id)
    return _join(base, replace(base, superseded_by=by.order_id))


# --- access.events, access.policies, gov.audit: insert-only facts ------------------


def _copied(kind: Callable[..., T], data: object, **values: object) -> T:
    """A fact of ``kind`` whose fields are the event's fields of the same names,
    except those given in ``values``."""
    names = {f.name for f in fields(cast("type[Any]", kind))} - values.keys()
    return kind(**{name: getattr(data, name) for name in names if hasattr(data, name)}, **values)


def lift_of(data: RestrictionLifted) -> Lift:
    return _copied(Lift, data)


def policy_of(data: AccessPolicyPublished) -> PolicyVersion:
    return _copied(
        PolicyVersion,
        data,
        version=data.policy_version,
        order_ids=tuple(data.order_ids),
        policy_chars=len(data.cedar_policies),
    )


def overdue_of(data: ComplianceOverdue) -> Overdue:
    return _copied(Overdue, data, version=data.policy_version)


def checkpoint_of(data: AuditCheckpoint) -> Checkpoint:
    return _copied(Checkpoint, data, key_id=data.signature.key_id)


_SENDERS = {
    SubmissionRejected: "lab_id",
    WithdrawalRejected: "lab_id",
    ComplianceRejected: "lab_id",
    ExternalFindingRejected: "evaluator_id",
    ReviewerDecisionRejected: "reviewer_id",
}


def refusal_of(event_id: str, data: Rejection) -> Refusal:
    """A rejection the agency answered (its sender as claimed: unverified)."""
    sender = getattr(data, _SENDERS.get(type(data), ""), None)
    return Refusal(
        event_id=event_id,
        kind=type(data).__name__,
        reason=data.reason.value,
        detail=data.detail,
        at=data.rejected_at,
        submission_id=getattr(data, "submission_id", None),
        model_id=getattr(data, "model_id", None),
        sender=sender,
    )


# --- dead letters -------------------------------------------------------------------

PREVIEW_CHARS = 600


def _header(headers: Mapping[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode(errors="replace")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _time(text: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo is not None else None


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


def dead_letter_of(
    dlq_topic: str,
    partition: int,
    offset: int,
    *,
    key: bytes | None,
    headers: Mapping[str, bytes],
    value: bytes,
    event: CloudEvent[Event] | None,
) -> DeadLetter:
    """A DLQ record as its headers (services/runtime/deadletter.py) describe it; the
    submission or model it concerns from the event when it decodes, else from the key.
    Nothing in it is trusted: it is shown, never acted on."""
    text_key = key.decode(errors="replace") if key is not None else None
    data = event.data if event is not None else None
    submission = getattr(data, "submission_id", None) or _uuid(text_key)
    model = getattr(data, "model_id", None)
    if model is None and text_key is not None and MODEL_ID.fullmatch(text_key):
        model = text_key
    return DeadLetter(
        dlq_topic=dlq_topic,
        partition=partition,
        offset=offset,
        origin_topic=_header(headers, "dlq.origin.topic"),
        origin_partition=_int(_header(headers, "dlq.origin.partition")),
        origin_offset=_int(_header(headers, "dlq.origin.offset")),
        reason=_header(headers, "dlq.reason") or "unknown",
        error=_header(headers, "dlq.error") or "",
        consumer=_header(headers, "dlq.consumer"),
        attempts=_int(_header(headers, "dlq.attempts")),
        failed_at=_time(_header(headers, "dlq.failed_at")),
        key=text_key,
        event_type=event.type if event is not None else _header(headers, "ce_type"),
        event_id=event.id if event is not None else None,
        submission_id=submission if isinstance(submission, UUID) else None,
        model_id=model,
        size=len(value),
        preview=value[:PREVIEW_CHARS].decode(errors="replace"),
    )


# --- the timeline -------------------------------------------------------------------


def _when(data: Event) -> datetime | None:
    for name in (
        "accepted_at",
        "rejected_at",
        "withdrawn_at",
        "closed_at",
        "started_at",
        "recorded_at",
        "completed_at",
        "failed_at",
        "assessed_at",
        "raised_at",
        "decided_at",
        "ordered_at",
        "lifted_at",
        "reminded_at",
        "concluded_at",
        "published_at",
        "detected_at",
    ):
        value = getattr(data, name, None)
        if isinstance(value, datetime):
            return value
    return None


def describe(data: Event) -> str:
    """What happened, in a line (the timeline's text)."""
    match data:
        case SubmissionAccepted():
            return (
                f"accepted ({data.reason.value}): {data.model_id}, {data.review_days}-day "
                f"window until {data.deadline:%Y-%m-%d %H:%M} UTC"
            )
        case Rejection():
            return f"{type(data).__name__}: {data.reason.value}: {data.detail}"
        case SubmissionWithdrawn():
            return f"withdrawn by {data.lab_id}" + (f": {data.reason}" if data.reason else "")
        case ReviewWindowClosed():
            return f"review window closed (deadline {data.deadline:%Y-%m-%d %H:%M} UTC)"
        case EvaluationStarted():
            names = ", ".join(s.suite_id for s in data.suites)
            return f"evaluation started: {len(data.suites)} suites ({names})"
        case FindingRecorded():
            return (
                f"finding {data.suite_id} {data.domain.value}/{data.capability}: "
                f"{data.metric} {data.score:.2f} ({data.method.value}, {data.evaluator})"
            )
        case EvaluationCompleted():
            ended = {s.suite_id: s.status.value for s in data.suites}
            return f"evaluation ended ({data.ended_by.value}): {ended or 'no suites'}"
        case EvaluationFailed():
            return (
                f"suite {data.suite_id} failed after {data.attempts} attempts "
                f"({data.failure.value}): {data.error}"
            )
        case RiskAssessed():
            levels = ", ".join(f"{d.domain.value} {d.level.value}" for d in data.domains)
            escalate = "; escalation required" if data.escalation_required else ""
            return (
                f"assessed {data.overall_level.value} ({levels}) under "
                f"{data.policy_version}{escalate}"
            )
        case EscalationRaised():
            interim = "; interim restriction" if data.interim_restriction else ""
            return (
                f"escalated {data.level.value} ({', '.join(d.value for d in data.domains)}); "
                f"{data.reviewers_required or '?'} reviewers must sign{interim}"
            )
        case EscalationDecided():
            progress = f"{len(data.signed_by) or 1}/{data.reviewers_required or '?'}"
            met = "; quorum met" if data.quorum_met else ""
            return f"{data.reviewer_id} signed {data.decision.value} ({progress}){met}"
        case EscalationOverdue():
            return f"escalation overdue (decide by {data.decide_by:%Y-%m-%d %H:%M}): {data.detail}"
        case RestrictionOrdered():
            kind = "interim order" if data.interim else "order"
            return f"{kind} {data.order_id}: {data.scope.describe()}"
        case RestrictionLiftOrdered():
            return f"lift of order {data.order_id} ordered: {data.reason}"
        case RestrictionLifted():
            return f"order {data.order_id} lifted: {data.reason}"
        case ReviewConcluded():
            return f"review concluded: {data.outcome.value}"
        case AccessPolicyPublished():
            return (
                f"policy version {data.policy_version} of {data.model_id} published "
                f"({len(data.order_ids)} orders; acknowledge by "
                f"{data.acknowledge_by:%Y-%m-%d %H:%M} UTC)"
            )
        case ComplianceOverdue():
            return f"{data.lab_id} did not acknowledge version {data.policy_version} in time"
    return type(data).__name__


def timeline_entry(event: CloudEvent[Event], topic: str) -> TimelineEntry | None:
    """The timeline's line for ``event``: a submission's, or (on the access topics) its
    model's; None for what names neither (a refusal of an unreadable input)."""
    data = event.data
    submission = getattr(data, "submission_id", None)
    model = getattr(data, "model_id", None)
    if not isinstance(submission, UUID) and not isinstance(model, str):
        return None
    return TimelineEntry(
        event_id=event.id,
        submission_id=submission if isinstance(submission, UUID) else None,
        model_id=model if isinstance(model, str) else None,
        at=_when(data) or event.time,
        topic=topic,
        kind=type(data).__name__,
        summary=describe(data),
    )


# --- views --------------------------------------------------------------------------


def lifecycle(intake: IntakeFacts, evaluation: EvaluationFacts, risk: RiskFacts) -> Lifecycle:
    """The furthest stage known (model.py), withdrawal first."""
    stages = (
        (intake.withdrawn_at, Lifecycle.WITHDRAWN),
        (risk.concluded_at, Lifecycle.CONCLUDED),
        (intake.window_closed_at, Lifecycle.WINDOW_CLOSED),
        (evaluation.completed_at, Lifecycle.EVALUATED),
        (evaluation.started_at, Lifecycle.EVALUATING),
        (intake.accepted_at, Lifecycle.ACCEPTED),
        (intake.rejected_at, Lifecycle.REJECTED),
    )
    return next((stage for known, stage in stages if known is not None), Lifecycle.PENDING)


def compliance(
    policy: PolicyVersion,
    later: Sequence[PolicyVersion],
    overdue: Overdue | None,
    now: datetime,
    grace: timedelta,
) -> Compliance:
    """Where a version's acknowledgement stands. Access announces only misses
    (ComplianceOverdue), so "acknowledged" means: its deadline and access's check
    have passed and no overdue was raised."""
    if overdue is not None:
        return Compliance.OVERDUE
    if any(p.published_at <= policy.acknowledge_by for p in later):
        return Compliance.SUPERSEDED
    if now < policy.acknowledge_by:
        return Compliance.DUE
    if now < policy.acknowledge_by + grace:
        return Compliance.CHECKING
    return Compliance.ACKNOWLEDGED


def order_status(order: Order, lift: Lift | None, now: datetime) -> str:
    if lift is not None:
        return "lifted"
    if order.lift_ordered_at is not None:
        return "lift ordered"
    if order.superseded_by is not None:
        return "superseded"
    if order.expires_at is not None and order.expires_at <= now:
        return "expired"
    if order.effective_at is not None and order.effective_at > now:
        return "scheduled"
    return "in force" if order.ordered_at is not None else "unknown"


def compose(
    submission_id: UUID,
    *,
    intake: IntakeFacts | None,
    evaluation: EvaluationFacts | None,
    risk: RiskFacts | None,
    escalations: Iterable[Escalation] = (),
    orders: Iterable[Order] = (),
    lifts: Iterable[Lift] = (),
    policies: Iterable[PolicyVersion] = (),
    overdue: Iterable[Overdue] = (),
    findings: Mapping[str, int] | None = None,
    dead_letters: int = 0,
    now: datetime,
    compliance_grace: timedelta,
) -> SubmissionView:
    """One submission's view from every source's facts (any of them may be missing yet)."""
    intake = intake or IntakeFacts(submission_id)
    evaluation = evaluation or EvaluationFacts(submission_id)
    risk = risk or RiskFacts(submission_id)
    lifted = {lift.order_id: lift for lift in lifts}
    missed = {(o.model_id, o.version): o for o in overdue}
    versions = sorted(policies, key=lambda p: (p.model_id, p.version))
    return SubmissionView(
        submission_id=submission_id,
        state=lifecycle(intake, evaluation, risk),
        intake=intake,
        evaluation=evaluation,
        risk=risk,
        escalations=tuple(
            sorted(escalations, key=lambda e: (e.raised_at is None, e.raised_at or now))
        ),
        orders=tuple(
            (order, lifted.get(order.order_id))
            for order in sorted(orders, key=lambda o: (o.ordered_at is None, o.ordered_at or now))
        ),
        policies=tuple(
            (
                p,
                compliance(
                    p,
                    [q for q in versions if q.model_id == p.model_id and q.version > p.version],
                    missed.get((p.model_id, p.version)),
                    now,
                    compliance_grace,
                ),
            )
            for p in versions
        ),
        findings=dict(findings or {}),
        dead_letters=dead_letters,
    )
