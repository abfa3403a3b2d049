"""The risk schema on the real PostgreSQL: it applies, the database refuses to change the
audit log, and tampering done around the trigger (as the schema's owner could) is caught
by the verifier on the rows read back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.risk.audit import AuditKind, Break, ServiceKey, append, verify_chain
from services.risk.model import AuditEntry
from services.runtime.migrations import migrate
from tests.risk.support import NOW, SUBMISSION_ID

MIGRATIONS = Path(__file__).parents[2] / "services" / "risk" / "migrations"
KEY = ServiceKey("risk-k1", Ed25519PrivateKey.generate())
KEYS = {KEY.key_id: KEY.public_bytes()}
COLUMNS = (
    "sequence, kind, subject, recorded_at, content, previous_sha256, entry_sha256, key_id, "
    "signature"
)


@pytest.fixture
async def conn(database: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    try:
        await migrate(connection, schema, MIGRATIONS)
        await connection.execute(f'SET search_path TO "{schema}"')
        yield connection
    finally:
        await connection.close()


async def write_log(conn: asyncpg.Connection, size: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for n in range(size):
        entry = append(
            entries[-1] if entries else None,
            AuditKind.ESCALATION_RAISED,
            str(SUBMISSION_ID),
            {"n": n, "level": "critical", "score": 2 / 3, "big": 3.2e26},
            NOW + timedelta(microseconds=n * 1001),
            KEY,
        )
        await conn.execute(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        entries.append(entry)
    return entries


async def read_log(conn: asyncpg.Connection) -> list[AuditEntry]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM audit_log ORDER BY sequence")
    return [AuditEntry(**dict(row)) for row in rows]


async def as_owner_around_the_trigger(conn: asyncpg.Connection, sql: str) -> None:
    """What the schema's owner can do: switch the trigger off, change history, switch it on."""
    async with conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await conn.execute(sql)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def test_entries_read_back_from_the_database_verify(conn: asyncpg.Connection) -> None:
    written = await write_log(conn, 5)
    assert await read_log(conn) == written
    assert verify_chain(await read_log(conn), [], KEYS).intact


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET content = '{}' WHERE sequence = 2",
        "DELETE FROM audit_log WHERE sequence = 2",
        "TRUNCATE audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_the_database_refuses_to_change_the_audit_log(
    conn: asyncpg.Connection, sql: str
) -> None:
    written = await write_log(conn, 3)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await conn.execute(sql)
    assert await read_log(conn) == written


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_checkpoints SET size = 9",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_the_database_refuses_to_change_the_checkpoints(
    conn: asyncpg.Connection, sql: str
) -> None:
    await conn.execute(
        "INSERT INTO audit_checkpoints (size, head_sha256, checkpointed_at, key_id, body) "
        "VALUES (1, repeat('a', 64), now(), 'risk-k1', '{}')"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await conn.execute(sql)
    assert await conn.fetchval("SELECT count(*) FROM audit_checkpoints") == 1


async def test_a_row_tampered_around_the_trigger_is_caught_at_its_entry(
    conn: asyncpg.Connection,
) -> None:
    await write_log(conn, 5)
    await as_owner_around_the_trigger(
        conn,
        """UPDATE audit_log SET content = replace(content, 'critical', 'low') WHERE sequence = 3""",
    )
    report = verify_chain(await read_log(conn), [], KEYS)
    assert report.first_broken is not None
    assert (report.first_broken.sequence, report.first_broken.kind) == (3, Break.CONTENT_TAMPERED)


async def test_a_row_deleted_around_the_trigger_is_caught_where_it_is_missing(
    conn: asyncpg.Connection,
) -> None:
    await write_log(conn, 5)
    await as_owner_around_the_trigger(conn, "DELETE FROM audit_log WHERE sequence = 4")
    report = verify_chain(await read_log(conn), [], KEYS)
    assert report.first_broken is not None
    assert (report.first_broken.sequence, report.first_broken.kind) == (4, Break.MISSING)


async def test_one_open_escalation_per_submission_and_one_conclusion(
    conn: asyncpg.Connection,
) -> None:
    submission = uuid.uuid4()
    await conn.execute(
        "INSERT INTO reviews (submission_id, lab_id, model_id, window_deadline) "
        "VALUES ($1, 'lab', 'lab/m@1', now())",
        submission,
    )
    await conn.execute(
        "INSERT INTO policy_versions (version, sha256, first_used_at, content) "
        "VALUES ('thresholds-t', repeat('0', 64), now(), '')"
    )
    assessment = uuid.uuid4()
    await conn.execute(
        "INSERT INTO assessments (assessment_id, submission_id, sequence, policy_version, "
        "overall_level, escalation_required, evaluation_incomplete, result_sha256, body, "
        "assessed_at) VALUES ($1, $2, 1, 'thresholds-t', 'critical', true, false, '', '{}', now())",
        assessment,
        submission,
    )
    insert_escalation = (
        "INSERT INTO escalations (escalation_id, submission_id, assessment_id, level, domains, "
        "finding_ids, policy_version, reviewers_required, raised_at, decide_by) "
        "VALUES ($1, $2, $3, 'critical', '{cyber}', '{}', 'thresholds-t', 2, now(), now())"
    )
    await conn.execute(insert_escalation, uuid.uuid4(), submission, assessment)
    with pytest.raises(asyncpg.UniqueViolationError, match="escalations_one_open"):
        await conn.execute(insert_escalation, uuid.uuid4(), submission, assessment)
    insert_conclusion = (
        "INSERT INTO conclusions (submission_id, outcome, body, concluded_at) "
        "VALUES ($1, 'pending_review', '{}', now())"
    )
    await conn.execute(insert_conclusion, submission)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert_conclusion, submission)
