"""Upgrading a schema with evaluation's old evaluator tables: they move into the trust
registry, or the upgrade stops on data the registry's rules refuse."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.evaluation.app import MIGRATIONS, SCHEMA
from services.runtime.migrations import migrate
from services.trust import registry
from services.trust.principals import EVALUATOR, PrincipalKey

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BEFORE_THE_REGISTRY = (
    "0001_evaluation",
    "0002_no_applicable_suites_and_nonce_purge",
    "0003_assignments_and_window",
)


def public_key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
async def old(
    database: str, schema: str, tmp_path: Path
) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A schema as evaluation left it before the trust registry (migrations 0001-0003)."""
    earlier = tmp_path / "migrations"  # same directory name: same migration versions
    earlier.mkdir()
    for path in sorted(MIGRATIONS.glob("000[123]_*.sql")):
        shutil.copy(path, earlier / path.name)
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        database, server_settings={"search_path": schema}
    )
    try:
        applied = await migrate(conn, schema, earlier)
        assert applied[-3:] == [f"migrations/{name}" for name in BEFORE_THE_REGISTRY]
        yield conn
    finally:
        await conn.close()


async def add_old_key(
    conn: asyncpg.Connection[asyncpg.Record],
    key_id: str,
    evaluator_id: str,
    key: bytes,
    *,
    added_at: datetime = T0,
    revoked_at: datetime | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO evaluator_keys (key_id, evaluator_id, public_key, added_at, revoked_at)
           VALUES ($1, $2, $3, $4, $5)""",
        key_id,
        evaluator_id,
        key,
        added_at,
        revoked_at,
    )


async def add_old_assignment(
    conn: asyncpg.Connection[asyncpg.Record], evaluator_id: str, at: datetime
) -> uuid.UUID:
    submission_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO evaluations (submission_id, lab_id, model_id, endpoint, api_model,
                                    credential_ref, registry_version, deadline, started_at)
           VALUES ($1, 'lab', 'lab/m@1', 'https://lab.test/v1', 'm', 'labs/lab/k', '1',
                   $2, $2)""",
        submission_id,
        at,
    )
    await conn.execute(
        """INSERT INTO evaluator_assignments (evaluator_id, submission_id, assigned_at,
                                              assigned_by) VALUES ($1, $2, $3, 'operator')""",
        evaluator_id,
        submission_id,
        at,
    )
    return submission_id


async def tables(conn: asyncpg.Connection[asyncpg.Record], schema: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {r["table_name"] for r in rows}


async def test_evaluators_their_keys_and_nonces_move_into_the_trust_registry(
    old: asyncpg.Connection[asyncpg.Record], schema: str
) -> None:
    live, revoked, other = public_key(), public_key(), public_key()
    await add_old_key(old, "red-a-1", "red-team-a", revoked, revoked_at=T0 + timedelta(days=1))
    await add_old_key(old, "red-a-2", "red-team-a", live, added_at=T0 + timedelta(days=2))
    await add_old_key(old, "red-b-1", "red-team-b", other, added_at=T0 + timedelta(days=3))
    await old.execute(
        "INSERT INTO signature_nonces (key_id, nonce, seen_at) VALUES ('red-a-2', 'n-1', $1)",
        T0 + timedelta(days=2, hours=1),
    )
    assigned = await add_old_assignment(old, "red-team-c", T0 + timedelta(days=4))  # no key

    applied = await migrate(old, schema, *SCHEMA)

    assert applied == [
        "sql/0001_trust_registry",
        "sql/0002_trust_refusal_counts",
        "sql/0003_trust_registry_versions",
        "migrations/0004_trust_registry",
    ]
    assert {"evaluator_keys", "signature_nonces"}.isdisjoint(await tables(old, schema))
    principals = await old.fetch(
        "SELECT kind, principal_id, name, registered_at, removed_at FROM trust_principals"
        " ORDER BY principal_id"
    )
    assert [tuple(r) for r in principals] == [
        ("evaluator", "red-team-a", "red-team-a", T0, None),
        ("evaluator", "red-team-b", "red-team-b", T0 + timedelta(days=3), None),
        ("evaluator", "red-team-c", "red-team-c", T0 + timedelta(days=4), None),
    ]
    keys = await old.fetch(
        """SELECT kind, key_id, principal_id, public_key, valid_from, revoked_at
           FROM trust_keys ORDER BY key_id"""
    )
    assert [tuple(r) for r in keys] == [
        ("evaluator", "red-a-1", "red-team-a", revoked, T0, T0 + timedelta(days=1)),
        ("evaluator", "red-a-2", "red-team-a", live, T0 + timedelta(days=2), None),
        ("evaluator", "red-b-1", "red-team-b", other, T0 + timedelta(days=3), None),
    ]
    nonce = await old.fetchrow("SELECT kind, principal_id, key_id, nonce FROM trust_nonces")
    assert nonce is not None and tuple(nonce) == ("evaluator", "red-team-a", "red-a-2", "n-1")
    assert (
        await old.fetchval(
            "SELECT evaluator_kind FROM evaluator_assignments WHERE submission_id = $1", assigned
        )
        == "evaluator"
    )

    # From now on the registry's rules hold for the migrated keys: revocation is final and
    # a key id stays its evaluator's (what the old add-key broke).
    now = T0 + timedelta(days=10)
    again = PrincipalKey(EVALUATOR.name, "red-team-a", "red-a-1", revoked, now, None, None)
    refusal = await registry.add_key(old, EVALUATOR, again, now)
    assert refusal is not None and "revocation is final" in refusal.detail
    takeover = PrincipalKey(EVALUATOR.name, "red-team-b", "red-a-2", public_key(), now, None, None)
    refusal = await registry.add_key(old, EVALUATOR, takeover, now)
    assert refusal is not None and "belongs to another evaluator" in refusal.detail
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # assignments name evaluators
        await add_old_assignment(old, "nobody-registered", now)


SMALL_ORDER_KEY = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
NON_CANONICAL_KEY = bytes.fromhex(
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
)  # y = p + 1: the identity (y = 1), not reduced


@pytest.mark.parametrize(
    ("rows", "complaint"),
    [
        (
            [("red-a-1", "red-team-a", "shared"), ("red-a-2", "red-team-a", "shared")],
            "one public key is registered under several key ids (red-a-1, red-a-2)",
        ),
        (
            [("red-a-1", "red-team-a", "shared"), ("red-b-1", "red-team-b", "shared")],
            "one public key is registered under several key ids (red-a-1, red-b-1)",
        ),
        ([("red-1", "Red Team A", None)], "at most 64): 'Red Team A'"),
        ([("key one", "red-team-a", None)], "key ids that signature.key_id cannot carry"),
        ([("red-a-1", "red-team-a", SMALL_ORDER_KEY)], "small-order or non-canonical"),
        ([("red-a-1", "red-team-a", NON_CANONICAL_KEY)], "small-order or non-canonical"),
    ],
)
async def test_an_upgrade_stops_on_data_the_registry_rules_refuse_and_changes_nothing(
    old: asyncpg.Connection[asyncpg.Record],
    schema: str,
    rows: list[tuple[str, str, bytes | str | None]],
    complaint: str,
) -> None:
    shared = public_key()
    for key_id, evaluator_id, key in rows:
        raw = shared if key == "shared" else key if isinstance(key, bytes) else public_key()
        await add_old_key(old, key_id, evaluator_id, raw)

    with pytest.raises(asyncpg.RaiseError) as refused:
        await migrate(old, schema, *SCHEMA)

    assert complaint in str(refused.value)
    assert {"evaluator_keys", "signature_nonces"} <= await tables(old, schema)
    assert "trust_keys" not in await tables(old, schema), "nothing of the upgrade was applied"
    assert await old.fetchval("SELECT count(*) FROM evaluator_keys") == len(rows)
