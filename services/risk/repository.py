"""All of the risk service's write SQL, and the reads its handlers and timers need.

Every function takes the connection it runs on: handlers pass the delivery's
transaction, so their writes share the inbox claim and the outbox rows. A
submission's writers are serialised by its ``reviews`` row (``open_review`` and
``lock_review`` lock it); the audit log's appenders by the ``audit_head`` row.
Read queries for the CLIs are in ``queries.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from contracts.events import FindingRecorded, FindingShared, RestrictionOrdered, RiskAssessed
from contracts.events.common import RiskDomain, RiskLevel
from contracts.events.evaluation import EvaluationEnd, SuiteStatus
from contracts.events.gov import AuditCheckpoint
from contracts.events.risk import (
    EscalationDecision,
    RestrictionOrderSpec,
    RestrictionScope,
    ReviewConcluded,
)
from services.risk import audit
from services.risk.assessment import finding_rank, published_result_sha256
from services.risk.audit import AuditKind, ChainHead, ServiceKey
from services.risk.model import (
    AuditEntry,
    Escalation,
    EscalationStatus,
    EvaluationProgress,
    Order,
    Review,
    SuiteRun,
    Vote,
)
from services.risk.policy import ThresholdsPolicy, check_unchanged
from services.runtime.errors import PermanentError

if TYPE_CHECKING:
    from services.runtime.database import Connection


def _json(value: BaseModel) -> str:
    return value.model_dump_json(exclude_none=True)


def _loads(text: str) -> Any:
    return json.loads(text)


def lab_of(model_id: str) -> str:
    """The lab of a model id ``<lab_id>/<name>@<version>`` (intake assigns it so)."""
    return model_id.split("/", 1)[0]


# --- the thresholds policy ---------------------------------------------------------------


async def record_policy(
    conn: Connection, policy: ThresholdsPolicy, content: str, now: datetime
) -> str | None:
    """Record the version the service runs with; why it must not run, if its content
    changed under a version already used (assessments name it: they must stay
    explainable by the text they were made with)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
        rows = await conn.fetch("SELECT version, sha256 FROM policy_versions")
        problem = check_unchanged(policy, {r["version"]: r["sha256"] for r in rows})
        if problem is not None:
            return problem
        await conn.execute(
            """INSERT INTO policy_versions (version, sha256, first_used_at, content)
               VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING""",
            policy.version,
            policy.sha256,
            now,
            content,
        )
    return None


# --- reviews: the row that serialises a submission's writers --------------------------------

_REVIEW = """r.submission_id, r.lab_id, r.model_id, r.window_deadline, r.window_closed_at,
             r.withdrawn_at, r.evaluation_ended, r.concluded_at,
             (SELECT coalesce(json_agg(json_build_array(s.suite_id, s.suite_version, s.domain,
                                                        s.status)
                                       ORDER BY s.suite_id, s.suite_version), '[]')
              FROM suite_runs s WHERE s.submission_id = r.submission_id) AS suites"""


async def open_review(
    conn: Connection,
    submission_id: UUID,
    model_id: str,
    *,
    lab_id: str | None = None,
    window_deadline: datetime | None = None,
) -> Review:
    """The submission's review, created by the first event about it, locked until the
    transaction ends. Events of a submission come on three topics with no order between
    them, so any of them may be the first."""
    row = await conn.fetchrow(
        f"""WITH opened AS (
                INSERT INTO reviews (submission_id, lab_id, model_id, window_deadline)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (submission_id) DO UPDATE
                   SET window_deadline = coalesce(reviews.window_deadline,
                                                  EXCLUDED.window_deadline)
                RETURNING *)
            SELECT {_REVIEW} FROM opened r""",
        submission_id,
        lab_id or lab_of(model_id),
        model_id,
        window_deadline,
    )
    assert row is not None
    return _review(row)


async def lock_review(conn: Connection, submission_id: UUID) -> Review | None:
    row = await conn.fetchrow(
        f"SELECT {_REVIEW} FROM reviews r WHERE r.submission_id = $1 FOR UPDATE OF r",
        submission_id,
    )
    return _review(row) if row is not None else None


def _review(row: asyncpg.Record) -> Review:
    ended = row["evaluation_ended"]
    progress = EvaluationProgress(
        suites=tuple(
            SuiteRun(suite_id, version, RiskDomain(domain), SuiteStatus(status) if status else None)
            for suite_id, version, domain, status in _loads(row["suites"])
        ),
        ended_by=EvaluationEnd(ended) if ended else None,
    )
    return Review(
        submission_id=row["submission_id"],
        lab_id=row["lab_id"],
        model_id=row["model_id"],
        window_deadline=row["window_deadline"],
        window_closed_at=row["window_closed_at"],
        withdrawn_at=row["withdrawn_at"],
        concluded_at=row["concluded_at"],
        evaluation=progress,
    )


async def save_progress(
    conn: Connection, submission_id: UUID, progress: EvaluationProgress
) -> None:
    """The evaluation's progress as folded (services/risk/model.py EvaluationProgress)."""
    suites = progress.suites
    await conn.execute(
        """INSERT INTO suite_runs (submission_id, suite_id, suite_version, domain, status)
           SELECT $1, s, v, d, t FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                  AS u(s, v, d, t)
           ON CONFLICT (submission_id, suite_id, suite_version)
           DO UPDATE SET domain = EXCLUDED.domain, status = EXCLUDED.status""",
        submission_id,
        [s.suite_id for s in suites],
        [s.suite_version for s in suites],
        [s.domain.value for s in suites],
        [s.status.value if s.status else None for s in suites],
    )
    if progress.ended_by is not None:
        await conn.execute(
            "UPDATE reviews SET evaluation_ended = $2 WHERE submission_id = $1",
            submission_id,
            progress.ended_by.value,
        )


async def window_closed(conn: Connection, submission_id: UUID, closed_at: datetime) -> None:
    await conn.execute(
        """UPDATE reviews SET window_closed_at = coalesce(window_closed_at, $2)
           WHERE submission_id = $1""",
        submission_id,
        closed_at,
    )


async def withdrawn(conn: Connection, submission_id: UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE reviews SET withdrawn_at = coalesce(withdrawn_at, $2) WHERE submission_id = $1",
        submission_id,
        at,
    )


# --- findings ------------------------------------------------------------------------------


async def store_finding(conn: Connection, finding: FindingRecorded, now: datetime) -> bool:
    """Keep ``finding``; True when what is stored under its id changed.

    A redelivery changes nothing. Two bodies under one id (the evaluation service
    never produces them) resolve to the one ``assessment.finding_rank`` prefers, so
    the stored body does not depend on the order they arrived in. An id already used
    in another submission is the sender's fault: dead-lettered.
    """
    body = _json(finding)
    sha = hashlib.sha256(body.encode()).hexdigest()
    inserted = await conn.fetchval(
        """INSERT INTO findings (finding_id, submission_id, domain, body, body_sha256,
                                 recorded_at, received_at)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
           ON CONFLICT (finding_id) DO NOTHING RETURNING true""",
        finding.finding_id,
        finding.submission_id,
        finding.domain.value,
        body,
        sha,
        finding.recorded_at,
        now,
    )
    if inserted:
        return True
    existing = await conn.fetchrow(
        "SELECT submission_id, body, body_sha256 FROM findings WHERE finding_id = $1 FOR UPDATE",
        finding.finding_id,
    )
    assert existing is not None
    if existing["submission_id"] != finding.submission_id:
        raise PermanentError(
            "finding_id_reused",
            f"finding {finding.finding_id} belongs to submission {existing['submission_id']}",
        )
    if existing["body_sha256"] == sha:
        return False
    kept = FindingRecorded.model_validate(_loads(existing["body"]))
    if finding_rank(kept) <= finding_rank(finding):
        return False
    await conn.execute(
        """UPDATE findings SET domain = $2, body = $3::jsonb, body_sha256 = $4, recorded_at = $5
           WHERE finding_id = $1""",
        finding.finding_id,
        finding.domain.value,
        body,
        sha,
        finding.recorded_at,
    )
    return True


async def findings_of(conn: Connection, submission_id: UUID) -> list[FindingRecorded]:
    rows = await conn.fetch(
        "SELECT body FROM findings WHERE submission_id = $1 ORDER BY finding_id", submission_id
    )
    return [FindingRecorded.model_validate(_loads(r["body"])) for r in rows]


# --- assessments ---------------------------------------------------------------------------


async def last_assessment(conn: Connection, submission_id: UUID) -> RiskAssessed | None:
    body = await conn.fetchval(
        """SELECT body FROM assessments WHERE submission_id = $1
           ORDER BY sequence DESC LIMIT 1""",
        submission_id,
    )
    return RiskAssessed.model_validate(_loads(body)) if body is not None else None


async def save_assessment(conn: Connection, assessed: RiskAssessed) -> None:
    await conn.execute(
        """INSERT INTO assessments (assessment_id, submission_id, sequence, policy_version,
                                    overall_level, escalation_required, evaluation_incomplete,
                                    result_sha256, body, assessed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)""",
        assessed.assessment_id,
        assessed.submission_id,
        assessed.sequence,
        assessed.policy_version,
        assessed.overall_level.value,
        assessed.escalation_required,
        assessed.evaluation_incomplete,
        published_result_sha256(assessed),
        _json(assessed),
        assessed.assessed_at,
    )


# --- escalations and votes --------------------------------------------------------------------

_ESCALATION = """escalation_id, submission_id, model_id, assessment_id, level, domains, finding_ids,
                 policy_version, reviewers_required, raised_at, decide_by, status,
                 interim_order_id, interim_lifted_at, order_id, decided_at, superseded_by,
                 reminded_at"""
_VOTE = """escalation_id, decision_id, reviewer_id, decision, body_sha256, accepted_at,
           order_spec, order_sha256, interim_order_id"""


def vote_from_row(row: asyncpg.Record) -> Vote:
    spec = row["order_spec"]
    return Vote(
        decision_id=row["decision_id"],
        reviewer_id=row["reviewer_id"],
        decision=EscalationDecision(row["decision"]),
        body_sha256=row["body_sha256"],
        accepted_at=row["accepted_at"],
        order=RestrictionOrderSpec.model_validate(_loads(spec)) if spec else None,
        order_sha256=row["order_sha256"],
        interim_order_id=row["interim_order_id"],
    )


def escalation_from_row(row: asyncpg.Record, votes: Iterable[Vote] = ()) -> Escalation:
    return Escalation(
        escalation_id=row["escalation_id"],
        submission_id=row["submission_id"],
        model_id=row["model_id"],
        assessment_id=row["assessment_id"],
        level=RiskLevel(row["level"]),
        domains=tuple(RiskDomain(d) for d in row["domains"]),
        finding_ids=tuple(row["finding_ids"]),
        policy_version=row["policy_version"],
        reviewers_required=row["reviewers_required"],
        raised_at=row["raised_at"],
        decide_by=row["decide_by"],
        status=EscalationStatus(row["status"]),
        interim_order_id=row["interim_order_id"],
        interim_lifted_at=row["interim_lifted_at"],
        votes=tuple(sorted(votes, key=lambda v: (v.accepted_at, v.reviewer_id))),
        order_id=row["order_id"],
        decided_at=row["decided_at"],
        superseded_by=row["superseded_by"],
        reminded_at=row["reminded_at"],
    )


async def escalations_where(conn: Connection, condition: str, *args: Any) -> list[Escalation]:
    """Escalations matching ``condition`` (SQL over the escalations columns, ``e.``) with
    their votes: two round trips whatever the number."""
    rows = await conn.fetch(
        f"""SELECT e.*, r.model_id FROM escalations e JOIN reviews r USING (submission_id)
            WHERE {condition} ORDER BY e.raised_at, e.escalation_id""",
        *args,
    )
    if not rows:
        return []
    votes = await conn.fetch(
        f"SELECT {_VOTE} FROM decisions WHERE escalation_id = ANY($1::uuid[])",
        [r["escalation_id"] for r in rows],
    )
    by_escalation: dict[UUID, list[Vote]] = {}
    for vote in votes:
        by_escalation.setdefault(vote["escalation_id"], []).append(vote_from_row(vote))
    return [escalation_from_row(r, by_escalation.get(r["escalation_id"], ())) for r in rows]


async def escalations_of(conn: Connection, submission_id: UUID) -> list[Escalation]:
    return await escalations_where(conn, "e.submission_id = $1", submission_id)


async def find_escalation(conn: Connection, escalation_id: UUID) -> Escalation | None:
    found = await escalations_where(conn, "e.escalation_id = $1", escalation_id)
    return found[0] if found else None


async def save_escalation(conn: Connection, escalation: Escalation) -> None:
    """Insert a raised escalation or record what happened to one (its votes are
    ``add_vote``'s). A superseded one must be saved before its successor: at most one
    is open per submission."""
    await conn.execute(
        """INSERT INTO escalations (escalation_id, submission_id, assessment_id, level, domains,
                                    finding_ids, policy_version, reviewers_required, raised_at,
                                    decide_by, status, interim_order_id, interim_lifted_at,
                                    order_id, decided_at, superseded_by, reminded_at)
           VALUES ($1, $2, $3, $4, $5::text[], $6::uuid[], $7, $8, $9, $10, $11, $12, $13, $14,
                   $15, $16, $17)
           ON CONFLICT (escalation_id) DO UPDATE SET
               status = EXCLUDED.status, interim_lifted_at = EXCLUDED.interim_lifted_at,
               order_id = EXCLUDED.order_id, decided_at = EXCLUDED.decided_at,
               superseded_by = EXCLUDED.superseded_by, reminded_at = EXCLUDED.reminded_at""",
        escalation.escalation_id,
        escalation.submission_id,
        escalation.assessment_id,
        escalation.level.value,
        [d.value for d in escalation.domains],
        list(escalation.finding_ids),
        escalation.policy_version,
        escalation.reviewers_required,
        escalation.raised_at,
        escalation.decide_by,
        escalation.status.value,
        escalation.interim_order_id,
        escalation.interim_lifted_at,
        escalation.order_id,
        escalation.decided_at,
        escalation.superseded_by,
        escalation.reminded_at,
    )


async def vote_by_decision_id(conn: Connection, decision_id: UUID) -> Vote | None:
    row = await conn.fetchrow(f"SELECT {_VOTE} FROM decisions WHERE decision_id = $1", decision_id)
    return vote_from_row(row) if row is not None else None


async def add_vote(
    conn: Connection,
    escalation_id: UUID,
    vote: Vote,
    *,
    justification: str,
    key_id: str,
    signed_data: dict[str, Any],
    event_id: str,
) -> None:
    """The reviewer's accepted decision, with the signed data exactly as received."""
    await conn.execute(
        """INSERT INTO decisions (decision_id, escalation_id, reviewer_id, question, decision,
                                  order_sha256, order_spec, interim_order_id, justification,
                                  body_sha256, key_id, signed_data, event_id, accepted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12::jsonb, $13, $14)""",
        vote.decision_id,
        escalation_id,
        vote.reviewer_id,
        vote.question.value,
        vote.decision.value,
        vote.order_sha256,
        _json(vote.order) if vote.order is not None else None,
        vote.interim_order_id,
        justification,
        vote.body_sha256,
        key_id,
        json.dumps(signed_data),
        event_id,
        vote.accepted_at,
    )


# --- orders ----------------------------------------------------------------------------------


async def add_order(conn: Connection, order: RestrictionOrdered) -> None:
    await conn.execute(
        """INSERT INTO orders (order_id, escalation_id, submission_id, interim, order_sha256,
                               scope, body, ordered_at, effective_at, expires_at,
                               compliance_deadline)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11)""",
        order.order_id,
        order.escalation_id,
        order.submission_id,
        order.interim,
        order.order_sha256,
        _json(order.scope),
        _json(order),
        order.ordered_at,
        order.effective_at,
        order.expires_at,
        order.compliance_deadline,
    )
    if order.supersedes is not None:
        await conn.execute(
            "UPDATE orders SET superseded_by = $2 WHERE order_id = $1 AND superseded_by IS NULL",
            order.supersedes,
            order.order_id,
        )


async def lift_ordered(conn: Connection, order_id: UUID, at: datetime) -> None:
    await conn.execute(
        """UPDATE orders SET lift_ordered_at = coalesce(lift_ordered_at, $2)
           WHERE order_id = $1""",
        order_id,
        at,
    )


async def order_lifted(conn: Connection, order_id: UUID, at: datetime) -> bool:
    """The access service confirmed the lift (RestrictionLifted); False: not our order."""
    updated = await conn.fetchval(
        """UPDATE orders SET lifted_at = coalesce(lifted_at, $2) WHERE order_id = $1
           RETURNING true""",
        order_id,
        at,
    )
    return bool(updated)


async def orders_of(conn: Connection, submission_id: UUID) -> list[Order]:
    rows = await conn.fetch(
        """SELECT order_id, escalation_id, interim, scope, effective_at, expires_at,
                  compliance_deadline, coalesce(lift_ordered_at, lifted_at) AS lifted_at,
                  superseded_by
           FROM orders WHERE submission_id = $1 ORDER BY ordered_at, order_id""",
        submission_id,
    )
    return [
        Order(
            order_id=r["order_id"],
            escalation_id=r["escalation_id"],
            interim=r["interim"],
            scope=RestrictionScope.model_validate(_loads(r["scope"])),
            effective_at=r["effective_at"],
            expires_at=r["expires_at"],
            compliance_deadline=r["compliance_deadline"],
            lifted_at=r["lifted_at"],
            superseded_by=r["superseded_by"],
        )
        for r in rows
    ]


async def submission_of_orders(conn: Connection, order_ids: Sequence[UUID]) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        """SELECT submission_id FROM orders WHERE order_id = ANY($1::uuid[])
           ORDER BY ordered_at LIMIT 1""",
        list(order_ids),
    )
    return found


# --- conclusions and the feed ----------------------------------------------------------------


async def save_conclusion(conn: Connection, concluded: ReviewConcluded) -> None:
    await conn.execute(
        """INSERT INTO conclusions (submission_id, outcome, body, concluded_at)
           VALUES ($1, $2, $3::jsonb, $4)""",
        concluded.submission_id,
        concluded.outcome.value,
        _json(concluded),
        concluded.concluded_at,
    )
    await conn.execute(
        "UPDATE reviews SET concluded_at = $2, outcome = $3 WHERE submission_id = $1",
        concluded.submission_id,
        concluded.concluded_at,
        concluded.outcome.value,
    )


async def share(
    conn: Connection, shared: Sequence[tuple[FindingShared, str]]
) -> list[tuple[FindingShared, str]]:
    """Those of ``shared`` (finding, event id) not shared before at their level."""
    if not shared:
        return []
    rows = await conn.fetch(
        """INSERT INTO shared_findings (finding_id, policy_version, level, event_id, shared_at)
           SELECT f, v, l, e, t
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                AS u(f, v, l, e, t)
           WHERE v IS NOT NULL AND l IS NOT NULL
           ON CONFLICT DO NOTHING RETURNING event_id""",
        [s.finding_id for s, _ in shared],
        [s.policy_version for s, _ in shared],
        [s.level.value if s.level else None for s, _ in shared],
        [event_id for _, event_id in shared],
        [s.shared_at for s, _ in shared],
    )
    fresh = {r["event_id"] for r in rows}
    return [(s, event_id) for s, event_id in shared if event_id in fresh]


# --- the audit log -------------------------------------------------------------------------

AUDIT_COLUMNS = (
    "sequence, kind, subject, recorded_at, content, previous_sha256, entry_sha256, key_id, "
    "signature"
)


def entry_from_row(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(**{name: row[name] for name in AuditEntry.__dataclass_fields__})


async def append_audit(
    conn: Connection,
    kind: AuditKind,
    subject: str,
    content: BaseModel | dict[str, Any],
    at: datetime,
    key: ServiceKey,
) -> AuditEntry:
    """Append an entry in the caller's transaction. The head row is locked until it
    ends, so entries get consecutive numbers in commit order and the chain never forks."""
    head = await conn.fetchrow("SELECT sequence, entry_sha256 FROM audit_head FOR UPDATE")
    assert head is not None, "the audit_head row is created with the schema"
    previous = ChainHead(head["sequence"], head["entry_sha256"]) if head["sequence"] else None
    entry = audit.append(previous, kind, subject, content, at, key)
    await conn.execute(
        f"""WITH appended AS (
                INSERT INTO audit_log ({AUDIT_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING sequence, entry_sha256)
            UPDATE audit_head SET sequence = appended.sequence,
                                  entry_sha256 = appended.entry_sha256
            FROM appended""",
        entry.sequence,
        entry.kind,
        entry.subject,
        entry.recorded_at,
        entry.content,
        entry.previous_sha256,
        entry.entry_sha256,
        entry.key_id,
        entry.signature,
    )
    return entry


async def audit_head(conn: Connection) -> AuditEntry | None:
    """The last entry, as committed (a checkpoint states it; it need not lock)."""
    row = await conn.fetchrow(
        f"""SELECT {AUDIT_COLUMNS} FROM audit_log
            WHERE sequence = (SELECT sequence FROM audit_head)"""
    )
    return entry_from_row(row) if row is not None else None


async def save_checkpoint(conn: Connection, checkpoint: AuditCheckpoint) -> None:
    await conn.execute(
        """INSERT INTO audit_checkpoints (size, head_sha256, checkpointed_at, key_id, body)
           VALUES ($1, $2, $3, $4, $5::jsonb)""",
        checkpoint.size,
        checkpoint.head_sha256,
        checkpoint.checkpointed_at,
        checkpoint.signature.key_id,
        _json(checkpoint),
    )
