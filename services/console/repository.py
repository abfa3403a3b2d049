"""All of the console's SQL that writes (reads for pages and CLIs: queries.py).

A row's state is its model type as JSON (``doc``), loaded ``FOR UPDATE`` by the one
consumer that writes its table (migrations/0001_console.sql), folded by
``projection`` and saved whole; insert-only facts are written ``ON CONFLICT DO
NOTHING``, so a redelivery changes nothing. Every function takes the caller's
connection (the consumed record's transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import TypeAdapter

from services.console.model import (
    Checkpoint,
    DeadLetter,
    Escalation,
    EvaluationFacts,
    Finding,
    IntakeFacts,
    Lift,
    Order,
    Overdue,
    PolicyVersion,
    Refusal,
    RiskFacts,
    TimelineEntry,
)

if TYPE_CHECKING:
    from services.runtime.database import Connection

T = TypeVar("T")

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(kind: type[T]) -> TypeAdapter[T]:
    found = _ADAPTERS.get(kind)
    if found is None:
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def dump(value: object) -> str:
    """``value`` as JSON PostgreSQL stores: no NUL character (jsonb refuses \\u0000; the
    text is for display, so it is shown escaped)."""
    text = adapter(type(value)).dump_json(value).decode()
    return text.replace("\\u0000", "\\\\u0000")


def load(kind: type[T], doc: str) -> T:
    return adapter(kind).validate_json(doc)


async def _row(conn: Connection, kind: type[T], query: str, *key: object) -> T | None:
    doc = await conn.fetchval(query, *key)
    return None if doc is None else load(kind, doc)


# --- intake.events ------------------------------------------------------------------


async def intake_facts(conn: Connection, submission_id: UUID) -> IntakeFacts | None:
    return await _row(
        conn,
        IntakeFacts,
        "SELECT doc::text FROM intake_facts WHERE submission_id = $1 FOR UPDATE",
        submission_id,
    )


async def save_intake(conn: Connection, facts: IntakeFacts, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO intake_facts
               (submission_id, lab_id, model_id, accepted_at, deadline, doc, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
           ON CONFLICT (submission_id) DO UPDATE SET
               lab_id = EXCLUDED.lab_id, model_id = EXCLUDED.model_id,
               accepted_at = EXCLUDED.accepted_at, deadline = EXCLUDED.deadline,
               doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at""",
        facts.submission_id,
        facts.lab_id,
        facts.model_id,
        facts.accepted_at,
        facts.deadline,
        dump(facts),
        now,
    )


# --- evaluation.events --------------------------------------------------------------


async def evaluation_facts(conn: Connection, submission_id: UUID) -> EvaluationFacts | None:
    return await _row(
        conn,
        EvaluationFacts,
        "SELECT doc::text FROM evaluation_facts WHERE submission_id = $1 FOR UPDATE",
        submission_id,
    )


async def save_evaluation(conn: Connection, facts: EvaluationFacts, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO evaluation_facts (submission_id, model_id, doc, updated_at)
           VALUES ($1, $2, $3::jsonb, $4)
           ON CONFLICT (submission_id) DO UPDATE SET
               model_id = EXCLUDED.model_id, doc = EXCLUDED.doc,
               updated_at = EXCLUDED.updated_at""",
        facts.submission_id,
        facts.model_id,
        dump(facts),
        now,
    )


async def add_finding(conn: Connection, finding: Finding) -> None:
    await conn.execute(
        """INSERT INTO findings (finding_id, submission_id, suite_id, doc)
           VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING""",
        finding.finding_id,
        finding.submission_id,
        finding.suite_id,
        dump(finding),
    )


# --- risk.events --------------------------------------------------------------------


async def risk_facts(conn: Connection, submission_id: UUID) -> RiskFacts | None:
    return await _row(
        conn,
        RiskFacts,
        "SELECT doc::text FROM risk_facts WHERE submission_id = $1 FOR UPDATE",
        submission_id,
    )


async def save_risk(conn: Connection, facts: RiskFacts, now: datetime) -> None:
    level = facts.assessment.overall_level if facts.assessment else None
    await conn.execute(
        """INSERT INTO risk_facts (submission_id, model_id, overall_level, doc, updated_at)
           VALUES ($1, $2, $3, $4::jsonb, $5)
           ON CONFLICT (submission_id) DO UPDATE SET
               model_id = EXCLUDED.model_id, overall_level = EXCLUDED.overall_level,
               doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at""",
        facts.submission_id,
        facts.model_id,
        level,
        dump(facts),
        now,
    )


async def escalation(conn: Connection, escalation_id: UUID) -> Escalation | None:
    return await _row(
        conn,
        Escalation,
        "SELECT doc::text FROM escalations WHERE escalation_id = $1 FOR UPDATE",
        escalation_id,
    )


async def save_escalation(conn: Connection, escalation: Escalation, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO escalations
               (escalation_id, submission_id, status, decide_by, doc, updated_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (escalation_id) DO UPDATE SET
               status = EXCLUDED.status, decide_by = EXCLUDED.decide_by,
               doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at""",
        escalation.escalation_id,
        escalation.submission_id,
        escalation.status.value,
        escalation.decide_by,
        dump(escalation),
        now,
    )


async def order(conn: Connection, order_id: UUID) -> Order | None:
    return await _row(
        conn, Order, "SELECT doc::text FROM orders WHERE order_id = $1 FOR UPDATE", order_id
    )


async def save_order(conn: Connection, order: Order, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO orders (order_id, submission_id, model_id, doc, updated_at)
           VALUES ($1, $2, $3, $4::jsonb, $5)
           ON CONFLICT (order_id) DO UPDATE SET
               model_id = EXCLUDED.model_id, doc = EXCLUDED.doc,
               updated_at = EXCLUDED.updated_at""",
        order.order_id,
        order.submission_id,
        order.model_id,
        dump(order),
        now,
    )


# --- access.events, access.policies, gov.audit, the DLQs: insert-only -------------


async def add_lift(conn: Connection, lift: Lift) -> None:
    await conn.execute(
        """INSERT INTO lifts (order_id, submission_id, model_id, doc)
           VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING""",
        lift.order_id,
        lift.submission_id,
        lift.model_id,
        dump(lift),
    )


async def add_overdue(conn: Connection, overdue: Overdue) -> None:
    await conn.execute(
        """INSERT INTO overdue (model_id, version, doc) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT DO NOTHING""",
        overdue.model_id,
        overdue.version,
        dump(overdue),
    )


async def add_policy(conn: Connection, policy: PolicyVersion) -> None:
    await conn.execute(
        """INSERT INTO policies (model_id, version, published_at, doc)
           VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING""",
        policy.model_id,
        policy.version,
        policy.published_at,
        dump(policy),
    )


async def add_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    await conn.execute(
        """INSERT INTO checkpoints (log_id, size, doc) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT DO NOTHING""",
        checkpoint.log_id,
        checkpoint.size,
        dump(checkpoint),
    )


async def add_dead_letter(conn: Connection, letter: DeadLetter) -> None:
    await conn.execute(
        """INSERT INTO dead_letters (dlq_topic, "partition", "offset", origin_topic, reason,
                                     submission_id, model_id, failed_at, doc)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT DO NOTHING""",
        letter.dlq_topic,
        letter.partition,
        letter.offset,
        _text(letter.origin_topic),
        _text(letter.reason),
        letter.submission_id,
        _text(letter.model_id),
        letter.failed_at,
        dump(letter),
    )


async def add_timeline(conn: Connection, entry: TimelineEntry) -> None:
    await conn.execute(
        """INSERT INTO timeline (topic, event_id, submission_id, model_id, at, doc)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING""",
        entry.topic,
        entry.event_id,
        entry.submission_id,
        entry.model_id,
        entry.at,
        dump(entry),
    )


async def add_refusal(conn: Connection, refusal: Refusal) -> None:
    await conn.execute(
        """INSERT INTO refusals (kind, event_id, reason, submission_id, model_id, at, doc)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING""",
        refusal.kind,
        refusal.event_id,
        refusal.reason,
        refusal.submission_id,
        refusal.model_id,
        refusal.at,
        dump(refusal),
    )


def _text(value: str | None) -> str | None:
    """A text column cannot hold NUL; these come from DLQ headers (anything at all)."""
    return None if value is None else value.replace("\x00", "\\u0000")
