"""One lab registry, intake's: access verifies acknowledgements with the keys it receives
on intake.registry, so what the operator registers, revokes or removes with intake's
commands holds at access too, and an older entry changes nothing (real Kafka +
PostgreSQL; intake's commands run as the operator runs them, its relay publishes)."""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import decode, encode, make_event
from contracts.events.access import ComplianceRejected
from contracts.events.common import RejectionReason
from contracts.events.intake import LabRegistryChanged
from contracts.principals import Role
from contracts.registry import TOPIC_BY_NAME
from services.access import cli as access_cli
from services.runtime import RuntimeSettings
from tests.access.rig import Lab, Rig, access_knows, running_rig
from tests.access.test_compliance_service import acked, restricted, stored
from tests.kit import create_feeds, process_env, wait_for
from tests.kit.lab_registry import register_lab

REGISTRY = TOPIC_BY_NAME["intake.registry"]


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings) as started:
        yield started


async def new_lab(rig: Rig) -> Lab:
    """A lab registered with intake only (its feeds, its entry, one key: ``<lab>-k1``)."""
    lab_id = f"lab-{uuid.uuid4().hex[:8]}"
    lab = Lab(lab_id, f"{lab_id}-k1")
    await create_feeds(rig.intake, Role.LAB, lab.lab_id)
    await register_lab(
        rig.intake, lab_id, [(lab.key_id, lab.public_key)], datetime.now(UTC) - timedelta(days=1)
    )
    await access_knows(rig.settings, [lab])
    return lab


async def intake_cli(rig: Rig, *args: str) -> str:
    """``python -m services.intake.cli ...`` on the rig's intake schema; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.intake.cli",
        *args,
        env=process_env(rig.intake, COLUMNS="250"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def refused(rig: Rig, event_id: str) -> RejectionReason:
    answer: ComplianceRejected = await rig.answer(ComplianceRejected, rejected_event_id=event_id)
    return answer.reason


async def revoked_at_access(rig: Rig, lab: Lab, key_id: str) -> None:
    async def revoked() -> bool:
        rows = await rig.fetch(
            "SELECT 1 FROM trust_keys WHERE principal_id = $1 AND key_id = $2 "
            "AND revoked_at IS NOT NULL",
            lab.lab_id,
            key_id,
        )
        return bool(rows)

    await wait_for(revoked, what=f"key {key_id} revoked at access")


async def test_a_key_registered_with_intake_authenticates_an_acknowledgement_at_access(
    rig: Rig,
) -> None:
    lab = await new_lab(rig)
    assert await rig.fetch("SELECT 1 FROM trust_principals WHERE principal_id = $1", lab.lab_id)
    version = await restricted(rig, lab.lab_id)
    await stored(rig, await acked(rig, lab.acknowledgement(version)))


async def test_a_key_revoked_in_intake_is_refused_at_access(rig: Rig) -> None:
    lab = await new_lab(rig)
    version = await restricted(rig, lab.lab_id)
    await stored(rig, await acked(rig, lab.acknowledgement(version)))
    await intake_cli(rig, "lab", "key", "revoke", lab.lab_id, lab.key_id, "--yes")
    await revoked_at_access(rig, lab, lab.key_id)
    event_id = await acked(rig, lab.acknowledgement(version))
    assert await refused(rig, event_id) is RejectionReason.AUTHENTICATION_FAILED


async def test_a_lab_removed_in_intake_is_refused_at_access(rig: Rig) -> None:
    lab = await new_lab(rig)
    version = await restricted(rig, lab.lab_id)
    await intake_cli(rig, "lab", "remove", lab.lab_id, "--reason", "left", "--yes")

    async def removed() -> bool:
        rows = await rig.fetch(
            "SELECT 1 FROM trust_principals WHERE principal_id = $1 AND removed_at IS NOT NULL",
            lab.lab_id,
        )
        return bool(rows)

    await wait_for(removed, what="the lab removed at access")
    await revoked_at_access(rig, lab, lab.key_id)
    # A removed lab is no registered lab: the refusal goes to access.events alone.
    event_id = await acked(rig, lab.acknowledgement(version))
    assert await refused(rig, event_id) is RejectionReason.AUTHENTICATION_FAILED


async def test_an_older_or_replayed_entry_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    """Entry 2 (key k1 only) arrives again after entry 4 (k1 revoked, k2 added): as the
    same record (a replay) and under a new event id (out of order). Neither brings k1
    back, and neither takes k2 away, which entry 2 does not list."""
    lab = await new_lab(rig)  # entries 1 (registered) and 2 (k1)
    second = Lab(lab.lab_id, f"{lab.lab_id}-k2")
    public = tmp_path / "k2.pub"
    public.write_text(base64.b64encode(second.public_key).decode())
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    await intake_cli(
        rig,
        "lab",
        "key",
        "add",
        lab.lab_id,
        second.key_id,
        "--public-key",
        str(public),
        "--valid-from",
        since,
    )  # entry 3
    await intake_cli(rig, "lab", "key", "revoke", lab.lab_id, lab.key_id, "--yes")  # entry 4
    await revoked_at_access(rig, lab, lab.key_id)
    await access_knows(rig.settings, [second])

    rows = await rig.fetch_intake(
        "SELECT payload FROM outbox WHERE key = $1 ORDER BY id", lab.lab_id.encode()
    )
    entries = [decode(bytes(r["payload"]), REGISTRY.event_types) for r in rows]
    assert [e.data.version for e in entries if isinstance(e.data, LabRegistryChanged)] == [
        1,
        2,
        3,
        4,
    ]
    old = entries[1]
    assert isinstance(old.data, LabRegistryChanged)
    assert [k.key_id for k in old.data.keys] == [lab.key_id] and old.data.keys[0].revoked_at is None
    late = make_event(old.data, source=old.source, subject=old.subject)
    await rig.send_raw("intake.registry", bytes(rows[1]["payload"]), lab.lab_id)  # a replay
    await rig.send_raw("intake.registry", encode(late), lab.lab_id)  # out of order

    async def both_seen() -> bool:
        seen = await rig.fetch(
            "SELECT count(*) AS n FROM inbox WHERE event_id = ANY($1::text[])", [old.id, late.id]
        )
        return bool(seen[0]["n"] == 2)

    await wait_for(both_seen, what="access read both")
    keys = {
        r["key_id"]: r["revoked_at"]
        for r in await rig.fetch(
            "SELECT key_id, revoked_at FROM trust_keys WHERE principal_id = $1", lab.lab_id
        )
    }
    assert keys[lab.key_id] is not None and keys[second.key_id] is None
    version = await restricted(rig, lab.lab_id)
    refused_id = await acked(rig, lab.acknowledgement(version))
    accepted_id = await acked(rig, second.acknowledgement(version))
    assert await refused(rig, refused_id) is RejectionReason.AUTHENTICATION_FAILED
    await stored(rig, accepted_id)


@pytest.mark.parametrize(
    "command",
    [
        ["lab", "register", "some-lab"],
        ["lab", "remove", "some-lab", "--yes"],
        ["lab", "key", "add", "some-lab", "k9", "--public-key", "AAAA"],
        ["lab", "key", "rotate", "some-lab", "k9", "--public-key", "AAAA"],
        ["lab", "key", "revoke", "some-lab", "k9", "--yes"],
    ],
)
def test_access_has_no_command_that_changes_a_labs_keys(command: list[str]) -> None:
    """One registry, intake's: access's lab commands list what it received, nothing more."""
    result = CliRunner().invoke(access_cli.app, command)
    assert result.exit_code == 2 and "No such command" in result.output, result.output


def test_access_lists_the_labs_and_keys_it_received() -> None:
    for command in (["lab", "list", "--help"], ["lab", "key", "list", "--help"]):
        assert CliRunner().invoke(access_cli.app, command).exit_code == 0
