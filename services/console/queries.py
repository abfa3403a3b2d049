"""Read queries for the web console and the CLI (nothing here writes).

Rows become the console's types (model.py); a submission's view is composed by
``projection.compose`` from every table, a page of them in a fixed number of
statements (one per table, over the page's ids), never one per submission.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from services.console import projection
from services.console.model import (
    Checkpoint,
    DeadLetter,
    Escalation,
    EscalationStatus,
    EvaluationFacts,
    Finding,
    IntakeFacts,
    Lift,
    Order,
    Overdue,
    PolicyVersion,
    Refusal,
    RiskFacts,
    SubmissionView,
    TimelineEntry,
)
from services.console.repository import load

if TYPE_CHECKING:
    from services.runtime.database import Connection


@dataclass(frozen=True)
class DeadLetterGroup:
    dlq_topic: str
    reason: str
    count: int
    last_failed_at: datetime | None


_IDS = """
    SELECT submission_id FROM intake_facts
    UNION SELECT submission_id FROM evaluation_facts
    UNION SELECT submission_id FROM risk_facts
"""


async def _compose(
    conn: Connection,
    rows: list[tuple[UUID, str | None, str | None, str | None]],
    now: datetime,
    grace: timedelta,
) -> list[SubmissionView]:
    ids = [row[0] for row in rows]
    escalations: dict[UUID, list[Escalation]] = defaultdict(list)
    for doc in await conn.fetch(
        "SELECT doc::text FROM escalations WHERE submission_id = ANY($1::uuid[])", ids
    ):
        escalation = load(Escalation, doc[0])
        escalations[escalation.submission_id].append(escalation)
    orders: dict[UUID, list[Order]] = defaultdict(list)
    for doc in await conn.fetch(
        "SELECT doc::text FROM orders WHERE submission_id = ANY($1::uuid[])", ids
    ):
        order = load(Order, doc[0])
        orders[order.submission_id].append(order)
    lifts: dict[UUID, list[Lift]] = defaultdict(list)
    for doc in await conn.fetch(
        "SELECT doc::text FROM lifts WHERE submission_id = ANY($1::uuid[])", ids
    ):
        lift = load(Lift, doc[0])
        lifts[lift.submission_id].append(lift)
    findings: dict[UUID, dict[str, int]] = defaultdict(dict)
    for row in await conn.fetch(
        """SELECT submission_id, suite_id, count(*) AS n FROM findings
           WHERE submission_id = ANY($1::uuid[]) GROUP BY submission_id, suite_id""",
        ids,
    ):
        findings[row["submission_id"]][row["suite_id"]] = row["n"]
    facts = [
        (
            sid,
            load(IntakeFacts, i) if i else None,
            load(EvaluationFacts, e) if e else None,
            load(RiskFacts, r) if r else None,
        )
        for sid, i, e, r in rows
    ]
    models = sorted({m for _, i, e, r in facts if (m := _model_of(i, e, r)) is not None})
    policies: dict[str, list[PolicyVersion]] = defaultdict(list)
    for doc in await conn.fetch(
        "SELECT doc::text FROM policies WHERE model_id = ANY($1::text[])", models
    ):
        policy = load(PolicyVersion, doc[0])
        policies[policy.model_id].append(policy)
    overdue: dict[str, list[Overdue]] = defaultdict(list)
    for doc in await conn.fetch(
        "SELECT doc::text FROM overdue WHERE model_id = ANY($1::text[])", models
    ):
        missed = load(Overdue, doc[0])
        overdue[missed.model_id].append(missed)
    letters_by_submission = {
        row["submission_id"]: row["n"]
        for row in await conn.fetch(
            """SELECT submission_id, count(*) AS n FROM dead_letters
               WHERE submission_id = ANY($1::uuid[]) GROUP BY submission_id""",
            ids,
        )
    }
    letters_by_model = {
        row["model_id"]: row["n"]
        for row in await conn.fetch(
            """SELECT model_id, count(*) AS n FROM dead_letters
               WHERE submission_id IS NULL AND model_id = ANY($1::text[]) GROUP BY model_id""",
            models,
        )
    }
    views = []
    for sid, intake, evaluation, risk in facts:
        model = _model_of(intake, evaluation, risk)
        views.append(
            projection.compose(
                sid,
                intake=intake,
                evaluation=evaluation,
                risk=risk,
                escalations=escalations.get(sid, ()),
                orders=orders.get(sid, ()),
                lifts=lifts.get(sid, ()),
                policies=policies.get(model, ()) if model else (),
                overdue=overdue.get(model, ()) if model else (),
                findings=findings.get(sid),
                dead_letters=letters_by_submission.get(sid, 0)
                + (letters_by_model.get(model, 0) if model else 0),
                now=now,
                compliance_grace=grace,
            )
        )
    return views


def _model_of(
    intake: IntakeFacts | None, evaluation: EvaluationFacts | None, risk: RiskFacts | None
) -> str | None:
    for facts in (intake, evaluation, risk):
        if facts is not None and facts.model_id is not None:
            return facts.model_id
    return None


async def submissions(
    conn: Connection, *, now: datetime, grace: timedelta, limit: int = 200
) -> list[SubmissionView]:
    """The latest ``limit`` submissions (most recently accepted, or heard of, first)."""
    rows = await conn.fetch(
        f"""WITH ids AS ({_IDS})
            SELECT ids.submission_id, i.doc::text AS i, e.doc::text AS e, r.doc::text AS r
            FROM ids
            LEFT JOIN intake_facts i USING (submission_id)
            LEFT JOIN evaluation_facts e USING (submission_id)
            LEFT JOIN risk_facts r USING (submission_id)
            ORDER BY COALESCE(i.accepted_at, i.updated_at, e.updated_at, r.updated_at) DESC,
                     ids.submission_id
            LIMIT $1""",
        limit,
    )
    return await _compose(
        conn, [(row[0], row["i"], row["e"], row["r"]) for row in rows], now, grace
    )


async def submission(
    conn: Connection, submission_id: UUID, *, now: datetime, grace: timedelta
) -> SubmissionView | None:
    row = await conn.fetchrow(
        """SELECT (SELECT doc::text FROM intake_facts WHERE submission_id = $1) AS i,
                  (SELECT doc::text FROM evaluation_facts WHERE submission_id = $1) AS e,
                  (SELECT doc::text FROM risk_facts WHERE submission_id = $1) AS r""",
        submission_id,
    )
    if row is None or (row["i"] is None and row["e"] is None and row["r"] is None):
        return None
    (view,) = await _compose(conn, [(submission_id, row["i"], row["e"], row["r"])], now, grace)
    return view


async def timeline(
    conn: Connection, submission_id: UUID, model_id: str | None, *, limit: int = 1000
) -> list[TimelineEntry]:
    """The submission's events and its model's (access topics), oldest first."""
    rows = await conn.fetch(
        """SELECT doc::text FROM timeline
           WHERE submission_id = $1 OR (submission_id IS NULL AND model_id = $2)
           ORDER BY at, topic, event_id LIMIT $3""",
        submission_id,
        model_id,
        limit,
    )
    return [load(TimelineEntry, row[0]) for row in rows]


async def findings(conn: Connection, submission_id: UUID) -> list[Finding]:
    rows = await conn.fetch(
        "SELECT doc::text FROM findings WHERE submission_id = $1", submission_id
    )
    return sorted(
        (load(Finding, row[0]) for row in rows), key=lambda f: (f.recorded_at, f.suite_id)
    )


async def dead_letters(
    conn: Connection,
    *,
    submission_id: UUID | None = None,
    model_id: str | None = None,
    limit: int = 200,
) -> list[DeadLetter]:
    """Dead letters, newest first: all, or those about one submission (or its model)."""
    if submission_id is None:
        rows = await conn.fetch(
            """SELECT doc::text FROM dead_letters
               ORDER BY failed_at DESC NULLS LAST, dlq_topic, "offset" DESC LIMIT $1""",
            limit,
        )
    else:
        rows = await conn.fetch(
            """SELECT doc::text FROM dead_letters
               WHERE submission_id = $1 OR (submission_id IS NULL AND model_id = $2)
               ORDER BY failed_at DESC NULLS LAST, dlq_topic, "offset" DESC LIMIT $3""",
            submission_id,
            model_id,
            limit,
        )
    return [load(DeadLetter, row[0]) for row in rows]


async def dead_letter_groups(conn: Connection) -> list[DeadLetterGroup]:
    rows = await conn.fetch(
        """SELECT dlq_topic, reason, count(*) AS n, max(failed_at) AS last
           FROM dead_letters GROUP BY dlq_topic, reason ORDER BY dlq_topic, n DESC, reason"""
    )
    return [DeadLetterGroup(r["dlq_topic"], r["reason"], r["n"], r["last"]) for r in rows]


async def awaiting_escalations(conn: Connection, *, limit: int = 200) -> list[Escalation]:
    """Escalations awaiting the reviewers' decision, the most urgent first."""
    rows = await conn.fetch(
        """SELECT doc::text FROM escalations WHERE status = $1
           ORDER BY decide_by NULLS LAST, escalation_id LIMIT $2""",
        EscalationStatus.AWAITING.value,
        limit,
    )
    return [load(Escalation, row[0]) for row in rows]


async def checkpoints(conn: Connection) -> list[Checkpoint]:
    """The latest signed checkpoint of each audit log."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (log_id) doc::text FROM checkpoints
           ORDER BY log_id, size DESC"""
    )
    return [load(Checkpoint, row[0]) for row in rows]


async def refusals(conn: Connection, *, limit: int = 100) -> list[Refusal]:
    rows = await conn.fetch(
        "SELECT doc::text FROM refusals ORDER BY at DESC, kind, event_id LIMIT $1", limit
    )
    return [load(Refusal, row[0]) for row in rows]
