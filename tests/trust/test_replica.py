"""A copy of the lab registry following its owner's entries (services/trust/replica.py), on
the real PostgreSQL: what an entry adds, ends, revokes and removes, and what it never can."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import pytest

from contracts.events.common import RejectionReason
from contracts.events.intake import LabKeyEntry, LabRegistryChanged, LabStatus
from services.trust import registry, repository
from services.trust.principals import LAB, PrincipalKey
from services.trust.refusal import Refusal
from services.trust.replica import Applied, Stale, apply_lab_snapshot, lab_snapshot
from tests.trust.support import T0, Signer

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
H = timedelta(hours=1)
LAB_ID = "lab-a"


def key(signer: Signer, **changes: Any) -> LabKeyEntry:
    return LabKeyEntry(
        key_id=signer.key_id, public_key=signer.public_base64, valid_from=T0
    ).model_copy(update=changes)


def entry(
    version: int, *keys: LabKeyEntry, removed_at: datetime | None = None
) -> LabRegistryChanged:
    return LabRegistryChanged(
        lab_id=LAB_ID,
        version=version,
        status=LabStatus.REMOVED if removed_at else LabStatus.ACTIVE,
        name="Lab A",
        registered_at=T0,
        removed_at=removed_at,
        keys=list(keys),
        changed_at=T0 + version * H,
    )


async def keys(conn: Conn) -> dict[str, PrincipalKey]:
    return {k.key_id: k for k in await repository.list_keys(conn, "lab", LAB_ID)}


async def test_an_entry_registers_the_lab_and_adds_its_keys(conn: Conn) -> None:
    one = Signer("k1")
    applied = await apply_lab_snapshot(conn, entry(2, key(one)), T0)
    assert applied == Applied(2, registered=True, added=["k1"])
    assert (await keys(conn))["k1"].public_key == one.public
    assert await registry.registered(conn, LAB, LAB_ID)


async def test_a_rotation_ends_a_key_earlier_and_nothing_extends_it(conn: Conn) -> None:
    one = Signer("k1")
    await apply_lab_snapshot(conn, entry(1, key(one)), T0)
    rotated = await apply_lab_snapshot(conn, entry(2, key(one, valid_until=T0 + 3 * H)), T0)
    assert isinstance(rotated, Applied) and rotated.ended == ["k1"]
    longer = await apply_lab_snapshot(conn, entry(3, key(one, valid_until=T0 + 9 * H)), T0)
    assert isinstance(longer, Applied) and longer.ended == []
    assert (await keys(conn))["k1"].valid_until == T0 + 3 * H


async def test_a_key_the_owner_does_not_list_is_revoked(conn: Conn) -> None:
    """One registry: a key registered only in the copy (the old access-side command)
    stops authenticating once the owner's entry arrives."""
    one, stray = Signer("k1"), Signer("stray")
    assert await registry.register(conn, LAB, LAB_ID, "Lab A", T0) is None
    local = PrincipalKey("lab", LAB_ID, "stray", stray.public, T0, None, None)
    assert await registry.add_key(conn, LAB, local, T0) is None
    applied = await apply_lab_snapshot(conn, entry(1, key(one)), T0 + H)
    assert isinstance(applied, Applied) and applied.revoked == ["stray"]
    assert (await keys(conn))["stray"].revoked_at == T0 + H


async def test_an_older_entry_changes_nothing(conn: Conn) -> None:
    one, two = Signer("k1"), Signer("k2")
    await apply_lab_snapshot(conn, entry(3, key(one, revoked_at=T0 + H), key(two)), T0)
    assert await apply_lab_snapshot(conn, entry(2, key(one)), T0) == Stale(3)
    assert await apply_lab_snapshot(conn, entry(3, key(one)), T0) == Stale(3)
    held = await keys(conn)
    assert held["k1"].revoked_at == T0 + H and held["k2"].revoked_at is None


async def test_a_removed_lab_is_removed_and_its_keys_revoked(conn: Conn) -> None:
    one = Signer("k1")
    await apply_lab_snapshot(conn, entry(1, key(one)), T0)
    gone = entry(2, key(one, revoked_at=T0 + H), removed_at=T0 + H)
    applied = await apply_lab_snapshot(conn, gone, T0 + H)
    assert isinstance(applied, Applied) and applied.removed and applied.revoked == ["k1"]
    assert not await registry.registered(conn, LAB, LAB_ID)


async def test_a_contradicting_entry_applies_nothing(conn: Conn) -> None:
    one, two, impostor = Signer("k1"), Signer("k2"), Signer("k1")
    await apply_lab_snapshot(conn, entry(1, key(one)), T0)
    refused = await apply_lab_snapshot(conn, entry(2, key(two), key(impostor)), T0)
    assert isinstance(refused, Refusal) and refused.reason is RejectionReason.CONFLICT
    assert set(await keys(conn)) == {"k1"}  # k2, added before the contradiction, rolled back
    assert await repository.registry_version(conn, "lab", LAB_ID) == 1


async def test_the_owners_snapshot_is_the_entry_under_its_next_version(conn: Conn) -> None:
    one = Signer("k1")
    assert await registry.register(conn, LAB, LAB_ID, "Lab A", T0) is None
    with pytest.raises(RuntimeError):
        await lab_snapshot(conn, LAB_ID, T0)  # outside the change's transaction
    async with conn.transaction():
        first = await lab_snapshot(conn, LAB_ID, T0)
    local = PrincipalKey("lab", LAB_ID, "k1", one.public, T0, None, None)
    assert await registry.add_key(conn, LAB, local, T0) is None
    async with conn.transaction():
        second = await lab_snapshot(conn, LAB_ID, T0 + H)
    assert (first.version, first.keys) == (1, [])
    assert second.version == 2 and second.keys == [key(one)]
