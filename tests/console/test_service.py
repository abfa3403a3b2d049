"""The console service on the real stack: fed every kind of event the agency's topics
carry, it keeps each submission's view, exactly once, whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import encode, make_event
from contracts.registry import subject_for
from services.console import queries
from services.console.model import Compliance, EscalationStatus, Lifecycle, SubmissionView
from services.runtime.database import connect
from tests.console.rig import Rig
from tests.console.scenario import Scenario

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def view_of(console: Rig, submission_id: UUID, now: datetime | None = None) -> SubmissionView:
    async with connect(console.settings) as conn:
        found = await queries.submission(
            conn,
            submission_id,
            now=now or datetime.now(UTC),
            grace=console.settings.compliance_grace,
        )
    assert found is not None
    return found


async def feed_review(console: Rig, s: Scenario) -> None:
    """A whole review, every topic the console reads (as the services publish it)."""
    await console.send(s.accepted(), traceparent=TRACEPARENT)
    for data in s.pipeline()[1:]:
        await console.send(data)
    await console.send(s.policy(1, published=s.at(seconds=25), acknowledge_by=s.at(minutes=30)))
    await console.send(s.policy(2, published=s.at(minutes=5), acknowledge_by=s.at(hours=2)))
    await console.send(s.lifted())
    await console.send(s.compliance_overdue(version=2))
    await console.send(s.compliance_rejected())
    await console.send(s.window_closed())
    await console.send(s.concluded())


async def test_a_review_fed_on_every_topic_is_projected_into_one_view(console: Rig) -> None:
    s = Scenario(start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=15))
    await feed_review(console, s)
    await console.send(s.checkpoint(7))
    await console.until_row(
        "the conclusion",
        "SELECT 1 FROM risk_facts WHERE submission_id = $1 AND doc->>'concluded_at' IS NOT NULL",
        s.submission_id,
    )
    await console.until_row("the overdue", "SELECT 1 FROM overdue WHERE model_id = $1", s.model_id)
    await console.until_row("the lift", "SELECT 1 FROM lifts WHERE order_id = $1", s.interim_order)
    view = await view_of(console, s.submission_id)
    assert (view.state, view.level, view.lab_id, view.trace_id) == (
        Lifecycle.CONCLUDED,
        "critical",
        s.lab_id,
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )
    assert [(x.suite_id, x.status) for x in view.evaluation.suites] == [
        ("bio-proxy", "failed"),
        ("cyber-ctf-proxy", "completed"),
    ]
    (escalation,) = view.escalations
    assert (escalation.status, escalation.signatures, escalation.decision) == (
        EscalationStatus.DECIDED,
        2,
        "restrict",
    )
    orders = {order.order_id: lift for order, lift in view.orders}
    assert orders[s.interim_order] is not None and orders[s.order] is None
    assert [(p.version, c) for p, c in view.policies] == [
        (1, Compliance.SUPERSEDED),
        (2, Compliance.OVERDUE),
    ]
    async with connect(console.settings) as conn:
        timeline = await queries.timeline(conn, s.submission_id, s.model_id)
        (checkpoint,) = [c for c in await queries.checkpoints(conn) if c.size == 7]
    sent = len(s.pipeline()) + 2 + 1 + 2 + 2  # + window, conclusion; lift; policies; access
    assert len(timeline) == sent
    assert checkpoint.log_id == "risk"


async def test_an_event_delivered_twice_is_applied_once(console: Rig) -> None:
    s = Scenario()
    event = make_event(s.accepted(), source="/frontier-review/intake", subject=str(s.submission_id))
    topic = console.settings.topic("intake.events")
    for _ in range(3):
        await console.producer.send(topic, encode(event), event.subject)
    await console.send(s.started())
    await console.until_row(
        "the plan", "SELECT 1 FROM evaluation_facts WHERE submission_id = $1", s.submission_id
    )
    lines = await console.fetchval(
        "SELECT count(*) FROM timeline WHERE submission_id = $1", s.submission_id
    )
    assert lines == 2


async def test_events_read_before_the_acceptance_wait_for_it_and_never_move_back(
    console: Rig,
) -> None:
    s = Scenario()
    await console.send(s.completed())
    await console.send(s.assessed())
    await console.until_row(
        "the assessment", "SELECT 1 FROM risk_facts WHERE submission_id = $1", s.submission_id
    )
    early = await view_of(console, s.submission_id)
    assert (early.state, early.model_id, early.intake.accepted_at) == (
        Lifecycle.EVALUATED,
        s.model_id,
        None,
    )
    await console.send(s.accepted())
    await console.send(s.started())
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    await console.until_row(
        "the plan",
        """SELECT 1 FROM evaluation_facts
           WHERE submission_id = $1 AND doc->>'started_at' IS NOT NULL""",
        s.submission_id,
    )
    late = await view_of(console, s.submission_id)
    assert (late.state, late.intake.deadline) == (Lifecycle.EVALUATED, s.deadline)


async def test_an_unreadable_record_is_skipped_without_stopping_its_partition(
    console: Rig,
) -> None:
    s = Scenario()
    topic = console.settings.topic("intake.events")
    await console.producer.send(topic, b"{not json", str(s.submission_id))
    await console.producer.send(topic, b'{"specversion": "1.0"}', str(s.submission_id))
    await console.send(s.accepted())
    await console.until_row(
        "the acceptance after the garbage",
        "SELECT 1 FROM intake_facts WHERE submission_id = $1",
        s.submission_id,
    )


async def test_dead_letters_of_every_kind_are_kept_by_topic_and_reason(console: Rig) -> None:
    s = Scenario()
    finding = s.finding()
    event = make_event(finding, source="/frontier-review/evaluation", subject=subject_for(finding))
    # the same event dead-lettered by two consumers: two dead letters
    for consumer in ("risk.evaluation.events", "console-twin.evaluation.events"):
        await console.send_dead_letter(
            "evaluation.events",
            encode(event),
            key=str(s.submission_id),
            reason="handler_failed",
            consumer=consumer,
        )
    await console.send_dead_letter(
        "lab.submissions", b"\x00\xff garbage", key=str(s.submission_id), reason="malformed_json"
    )
    await console.send_dead_letter(
        "access.events", b"x" * 1_500_000, key=s.model_id, reason="oversized"
    )
    await console.send_dead_letter("risk.events", b"", key=None, reason="invalid_envelope")
    await console.until_row(
        "four dead letters about the submission",
        "SELECT count(*) = 4 FROM dead_letters WHERE submission_id = $1 OR model_id = $2",
        s.submission_id,
        s.model_id,
    )
    async with connect(console.settings) as conn:
        letters = await queries.dead_letters(
            conn, submission_id=s.submission_id, model_id=s.model_id
        )
        groups = {(g.dlq_topic, g.reason) for g in await queries.dead_letter_groups(conn)}
    kinds = sorted((d.dlq_topic, d.reason, d.event_type is not None) for d in letters)
    assert kinds == [
        ("access.events.dlq", "oversized", False),
        ("evaluation.events.dlq", "handler_failed", True),
        ("evaluation.events.dlq", "handler_failed", True),
        ("lab.submissions.dlq", "malformed_json", False),
    ]
    assert ("risk.events.dlq", "invalid_envelope") in groups
    oversized = next(d for d in letters if d.reason == "oversized")
    assert oversized.size == 1_500_000
