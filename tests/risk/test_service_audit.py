"""The audit log the running service keeps (real Kafka + PostgreSQL): appended in the
transaction of each state change, checkpointed on gov.audit once per interval, refused
changes by the database, and ``audit verify`` catching a tampered row, a deleted row and
a truncated tail (done as the schema's owner, around the triggers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from contracts.events import AuditCheckpoint, EscalationRaised, RestrictionOrdered
from contracts.events.access import ComplianceOverdue, RestrictionLifted
from contracts.events.risk import (
    EscalationDecision,
    EscalationOverdue,
    RestrictionLiftOrdered,
    ReviewConcluded,
)
from services.runtime import RuntimeSettings
from tests.kit import wait_for
from tests.risk.rig import Rig, cli, running_rig

Damage = Callable[[asyncpg.Connection], Awaitable[None]]


@pytest.fixture
async def audited(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    """A rig of its own (its log gets damaged) with an escalation decided by a quorum in
    its log, and a checkpoint published after the last entry."""
    async with running_rig(settings, tmp_path, risk_checkpoint_interval_s=1.0) as rig:
        sub = await rig.submission()
        await rig.deliver(rig.finding(sub, "cyber", 1.0))
        raised = await rig.one(sub, EscalationRaised)
        order = rig.order()  # both sign this one order
        for reviewer in ("r1", "r2"):
            answer = await rig.decide(
                reviewer,
                raised.escalation_id,
                sub.submission_id,
                EscalationDecision.RESTRICT,
                order=order,
            )
            assert answer.accepted
        await rig.events.wait(lambda: len(rig.of(sub, RestrictionOrdered)) == 2)
        size = await entries(rig)
        await rig.checkpoints.wait(
            lambda: any(c.size == size for c in rig.checkpoints.of("risk", AuditCheckpoint)),
            what=f"a checkpoint of size {size}",
        )
        yield rig


async def entries(rig: Rig) -> int:
    return int((await rig.fetch("SELECT count(*) AS n FROM audit_log"))[0]["n"])


async def as_owner(rig: Rig, damage: Damage) -> None:
    """What the schema's owner can do that the service cannot: switch the triggers off,
    change history, switch them on again."""
    conn = await asyncpg.connect(
        rig.settings.database_url, server_settings={"search_path": rig.settings.db_schema}
    )
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            await damage(conn)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_every_state_change_of_an_escalation_is_in_the_log_and_it_verifies(
    audited: Rig,
) -> None:
    kinds = [r["kind"] for r in await audited.fetch("SELECT kind FROM audit_log ORDER BY sequence")]
    assert kinds == [
        "assessment_escalated",
        "escalation_raised",
        "order_issued",  # interim
        "decision_accepted",
        "decision_accepted",
        "order_issued",  # final
    ]
    ran = await cli(audited.settings, "audit", "verify")
    assert ran.code == 0, ran.output
    assert "6 entries" in ran.stdout and "intact" in ran.stdout


async def test_a_reminder_an_overdue_compliance_a_lift_and_the_conclusion_are_logged_and_verify(
    rig: Rig,
) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    raised = await rig.one(sub, EscalationRaised)
    interim = await rig.one(sub, RestrictionOrdered)
    assert raised.decide_by is not None and interim.interim
    rig.clock.advance((raised.decide_by - rig.clock.now()).total_seconds() + 1)
    await rig.one(sub, EscalationOverdue)
    now = rig.clock.now()
    await rig.deliver(
        ComplianceOverdue(
            model_id=sub.model_id,
            lab_id=sub.lab_id,
            policy_version=1,
            content_hash="ab" * 32,
            order_ids=[interim.order_id],
            published_at=now,
            acknowledge_by=now,
            detected_at=now,
        )
    )
    for reviewer in ("r1", "r2"):  # the two-person rule lifts the interim order
        answer = await rig.decide(
            reviewer,
            raised.escalation_id,
            sub.submission_id,
            EscalationDecision.LIFT_INTERIM,
            interim_order_id=interim.order_id,
        )
        assert answer.accepted, answer.summary
    lift = await rig.one(sub, RestrictionLiftOrdered)
    assert lift.order_id == interim.order_id
    await rig.deliver(  # access's answer once no version enforces the order
        RestrictionLifted(
            order_id=interim.order_id,
            model_id=sub.model_id,
            submission_id=sub.submission_id,
            reason=lift.reason,
            policy_version=2,
            lifted_at=rig.clock.now(),
        )
    )
    await rig.deliver(rig.completed(sub))
    await rig.deliver(rig.window_closed(sub))
    await rig.one(sub, ReviewConcluded)
    wanted = [
        "escalation_overdue",
        "compliance_overdue",
        "lift_ordered",
        "restriction_lifted",
        "review_concluded",
    ]

    async def logged() -> list[str]:
        query = "SELECT kind FROM audit_log WHERE subject = $1 ORDER BY sequence"
        kinds = [r["kind"] for r in await rig.fetch(query, str(sub.submission_id))]
        return [k for k in kinds if k in wanted]

    await wait_for(lambda: _equal(logged(), wanted), what="the five entries")
    ran = await cli(rig.settings, "audit", "verify")
    assert ran.code == 0, ran.output
    assert "intact" in ran.stdout


async def _equal(found: Awaitable[list[str]], wanted: list[str]) -> bool:
    return await found == wanted


async def test_the_database_refuses_to_change_or_delete_an_entry(audited: Rig) -> None:
    for statement in (
        "UPDATE audit_log SET content = '{}' WHERE sequence = 1",
        "DELETE FROM audit_log WHERE sequence = 1",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await audited.fetch(statement)


async def test_the_accepted_decision_is_kept_as_the_reviewer_signed_it(audited: Rig) -> None:
    (row,) = await audited.fetch(
        "SELECT content FROM audit_log WHERE kind = 'decision_accepted' ORDER BY sequence LIMIT 1"
    )
    signed = json.loads(row["content"])
    (vote,) = await audited.fetch("SELECT signed_data FROM decisions WHERE reviewer_id = 'r1'")
    assert signed == json.loads(vote["signed_data"])
    assert signed["signature"]["value"] and signed["reviewer_id"] == "r1"


async def tamper(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """UPDATE audit_log SET content = replace(content, '"critical"', '"low"')
           WHERE sequence = 2"""
    )


async def delete(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM audit_log WHERE sequence = 3")


async def truncate(conn: asyncpg.Connection) -> None:
    """Cut the tail and make the head row agree, as someone covering their tracks would."""
    await conn.execute("DELETE FROM audit_log WHERE sequence > 4")
    await conn.execute(
        """UPDATE audit_head SET sequence = 4,
                  entry_sha256 = (SELECT entry_sha256 FROM audit_log WHERE sequence = 4)"""
    )


@pytest.mark.parametrize(
    ("damage", "reported"),
    [
        (tamper, "first broken entry: 2: content_tampered"),
        (delete, "first broken entry: 3: missing"),
        (truncate, "first broken entry: 5: truncated"),
    ],
    ids=["tampered row", "deleted row", "truncated tail"],
)
async def test_audit_verify_names_the_first_broken_entry(
    audited: Rig, damage: Damage, reported: str
) -> None:
    await as_owner(audited, damage)
    ran = await cli(audited.settings, "audit", "verify")
    assert ran.code == 1, ran.output
    assert reported in ran.stderr, ran.output
