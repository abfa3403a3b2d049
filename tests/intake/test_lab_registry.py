"""Every change of intake's lab registry is announced on intake.registry through intake's
outbox, in the transaction of the change: the operator's commands as people run them,
against a real PostgreSQL (and, for registering and removing, the real broker)."""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import decode
from contracts.events.intake import LabRegistryChanged, LabStatus
from contracts.registry import TOPIC_BY_NAME
from services.intake.app import SCHEMA
from services.intake.settings import IntakeSettings
from services.runtime import RuntimeSettings
from services.runtime.database import connect
from tests.kit import drop_schema, isolated, process_env

REGISTRY = TOPIC_BY_NAME["intake.registry"]


@pytest.fixture
async def intake(settings: RuntimeSettings, database: str) -> AsyncIterator[IntakeSettings]:
    config = isolated(settings, IntakeSettings, "intake")
    async with connect(config, SCHEMA):
        pass
    try:
        yield config
    finally:
        await drop_schema(config)


async def cli(config: IntakeSettings, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.intake.cli",
        *args,
        env=process_env(config, COLUMNS="250"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def fetch(config: IntakeSettings, query: str, *args: object) -> list[asyncpg.Record]:
    async with connect(config) as conn:
        return await conn.fetch(query, *args)


async def entries(config: IntakeSettings, lab_id: str) -> list[LabRegistryChanged]:
    rows = await fetch(
        config,
        "SELECT topic, key, payload FROM outbox WHERE key = $1 ORDER BY id",
        lab_id.encode(),
    )
    assert {r["topic"] for r in rows} <= {config.topic("intake.registry")}
    found = [decode(bytes(r["payload"]), REGISTRY.event_types).data for r in rows]
    assert all(isinstance(e, LabRegistryChanged) for e in found)
    return found  # type: ignore[return-value]


def public_key_file(directory: Path, name: str) -> str:
    """A new public key in a file (base64, as ``frontier-lab keygen`` writes it)."""
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    path = directory / f"{name}.pub"
    path.write_text(base64.b64encode(raw).decode() + "\n")
    return str(path)


async def registered(config: IntakeSettings) -> str:
    """A lab in the registry, written directly (registering with the CLI provisions its
    Kafka side too, which these tests need not): no entry announced yet."""
    lab_id = f"lab-{uuid.uuid4().hex[:8]}"
    async with connect(config) as conn:
        await conn.execute(
            """INSERT INTO trust_principals (kind, principal_id, name, registered_at)
               VALUES ('lab', $1, $1, now())""",
            lab_id,
        )
    return lab_id


async def test_every_registry_command_writes_the_labs_whole_entry_under_its_next_version(
    intake: IntakeSettings, tmp_path: Path
) -> None:
    lab_id = f"lab-{uuid.uuid4().hex[:8]}"
    k1, k2 = f"{lab_id}-k1", f"{lab_id}-k2"
    assert (await cli(intake, "lab", "register", lab_id, "--name", "Registry Lab"))[0] == 0
    key = public_key_file(tmp_path, "k1")
    sent = (tmp_path / "k1.pub").read_text().strip()
    assert (await cli(intake, "lab", "key", "add", lab_id, k1, "--public-key", key))[0] == 0
    new = public_key_file(tmp_path, "k2")
    code, out = await cli(
        intake, "lab", "key", "rotate", lab_id, k2, "--public-key", new, "--overlap-hours", "1"
    )
    assert code == 0, out
    assert (await cli(intake, "lab", "key", "revoke", lab_id, k1, "--yes"))[0] == 0
    assert (await cli(intake, "lab", "remove", lab_id, "--yes"))[0] == 0

    found = await entries(intake, lab_id)
    assert [e.version for e in found] == [1, 2, 3, 4, 5]
    assert [[k.key_id for k in e.keys] for e in found] == [[], [k1], [k1, k2], [k1, k2], [k1, k2]]
    registered_, added, rotated, revoked, removed = found
    assert registered_.status is LabStatus.ACTIVE and registered_.name == "Registry Lab"
    assert added.keys[0].public_key == sent
    assert rotated.keys[0].valid_until is not None and rotated.keys[1].valid_until is None
    assert revoked.keys[0].revoked_at is not None and revoked.keys[1].revoked_at is None
    assert removed.status is LabStatus.REMOVED and removed.removed_at is not None
    assert all(k.revoked_at is not None for k in removed.keys)
    event_ids = await fetch(
        intake, "SELECT event_id FROM outbox WHERE key = $1 ORDER BY id", lab_id.encode()
    )
    assert [r["event_id"] for r in event_ids] == [f"lab-registry:{lab_id}:{n}" for n in range(1, 6)]


async def test_a_refused_change_writes_no_entry(intake: IntakeSettings, tmp_path: Path) -> None:
    lab_id = await registered(intake)
    key = public_key_file(tmp_path, "k1")
    assert (await cli(intake, "lab", "key", "add", lab_id, f"{lab_id}-k1", "--public-key", key))[
        0
    ] == 0
    again = public_key_file(tmp_path, "again")
    code, out = await cli(
        intake, "lab", "key", "add", lab_id, f"{lab_id}-k1", "--public-key", again
    )
    assert code == 1 and "never reused" in out, out
    code, out = await cli(intake, "lab", "key", "revoke", lab_id, "no-such-key", "--yes")
    assert code == 1, out
    assert [e.version for e in await entries(intake, lab_id)] == [1]


async def test_a_change_whose_entry_cannot_be_written_does_not_happen(
    intake: IntakeSettings, tmp_path: Path
) -> None:
    """The outbox refuses the row (a trigger raising, in this test's schema only): the key
    the command was adding is not added either, since both are one transaction."""
    lab_id = await registered(intake)
    async with connect(intake) as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$;
               CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
                   FOR EACH ROW EXECUTE FUNCTION refuse_outbox();"""
        )
    key = public_key_file(tmp_path, "k1")
    code, out = await cli(intake, "lab", "key", "add", lab_id, f"{lab_id}-k1", "--public-key", key)
    assert code != 0 and "outbox unavailable" in out, out
    assert await fetch(intake, "SELECT 1 FROM trust_keys WHERE principal_id = $1", lab_id) == []
    assert await fetch(intake, "SELECT 1 FROM outbox") == []
