"""Upgrading a schema intake left before duplicates were answered: every filed submission
gets its decision back from its row (so a duplicate of it can be answered), and the
hourly refusal counts move to the trust library's table."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.events.common import RejectionReason
from contracts.events.intake import AcceptanceReason, SubmissionAccepted, SubmissionRejected
from services.intake import repository
from services.intake.app import MIGRATIONS, SCHEMA
from services.labclient import body_sha256, build_submission
from services.runtime.migrations import migrate
from services.trust import TRUST_SQL
from tests.kit.manifests import manifest

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
async def old(
    database: str, schema: str, tmp_path: Path
) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A schema as intake left it with migrations 0001-0003 (and the trust registry)."""
    trust, earlier = tmp_path / "sql", tmp_path / "migrations"  # the same version names
    trust.mkdir()
    earlier.mkdir()
    shutil.copy(TRUST_SQL / "0001_trust_registry.sql", trust)
    for path in sorted(MIGRATIONS.glob("000[123]_*.sql")):
        shutil.copy(path, earlier / path.name)
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        database, server_settings={"search_path": schema}
    )
    try:
        await migrate(conn, schema, trust, earlier)
        yield conn
    finally:
        await conn.close()


async def file_old(
    conn: asyncpg.Connection[asyncpg.Record], state: str, reason: str, **columns: object
) -> tuple[uuid.UUID, str]:
    filed = build_submission(manifest("lab-a"), KEY, "a1")
    event_id = str(uuid.uuid4())
    values = {
        "submission_id": filed.submission_id,
        "lab_id": "lab-a",
        "body_sha256": body_sha256(filed),
        "filed_event_id": event_id,
        "body": json.dumps(filed.model_dump(mode="json", exclude_none=True)),
        "state": state,
        "reason": reason,
        "detail": f"the old {state} detail",
        "received_at": T0,
    } | columns
    names = ", ".join(values)
    places = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO submissions ({names}) VALUES ({places})", *values.values())
    return filed.submission_id, event_id


async def test_decided_submissions_get_their_decision_and_the_counts_move(
    old: asyncpg.Connection[asyncpg.Record], schema: str
) -> None:
    accepted_id, accepted_event = await file_old(
        old,
        "withdrawn",
        AcceptanceReason.COVERED_BY_COMPUTE.value,
        criteria_version="2026.1",
        model_id="lab-a/frontier-1@2026-01-10",
        review_days=14,
        deadline=T0 + timedelta(days=14),
    )
    rejected_id, rejected_event = await file_old(
        old, "rejected", RejectionReason.NOT_COVERED_MODEL.value
    )
    await old.execute(
        "INSERT INTO refusal_counts (source, hour, reason, refused, first_event_id,"
        " last_event_id) VALUES ('x-lab', $1, 'unknown_lab', 7, 'e1', 'e7')",
        T0,
    )

    applied = await migrate(old, schema, *SCHEMA)

    assert applied == [
        "sql/0002_trust_refusal_counts",
        "sql/0003_trust_registry_versions",
        "migrations/0004_trust_refusal_counts",
        "migrations/0005_duplicates_answered",
    ]
    count, accepted = await repository.count_duplicate(old, accepted_id, T0)
    assert count == 1 and isinstance(accepted, SubmissionAccepted)
    assert (accepted.filed_event_id, accepted.accepted_at, accepted.review_days) == (
        accepted_event,
        T0,
        14,
    )
    assert accepted.requested_review_days == 14 and accepted.model.name == "frontier-1"
    count, rejected = await repository.count_duplicate(old, rejected_id, T0)
    assert count == 1 and isinstance(rejected, SubmissionRejected)
    assert (rejected.reason, rejected.rejected_event_id, rejected.submission_id) == (
        RejectionReason.NOT_COVERED_MODEL,
        rejected_event,
        rejected_id,
    )
    moved = await old.fetch("SELECT source, reason, refused FROM trust_refusal_counts")
    assert [tuple(r) for r in moved] == [("x-lab", "unknown_lab", 7)]
    assert await old.fetchval("SELECT to_regclass('refusal_counts')") is None
