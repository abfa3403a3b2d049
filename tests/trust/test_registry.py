"""Key registries on the real PostgreSQL: rotation, final revocation, key ids owned for ever."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

import asyncpg
import pytest

from contracts.events.common import RejectionReason
from services.trust import registry, repository
from services.trust.principals import EVALUATOR, LAB, KeyState, PrincipalKey, key_state
from services.trust.refusal import Refusal
from tests.trust.support import T0, Signer

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
H = timedelta(hours=1)


def lab_key(signer: Signer, principal_id: str = "lab-a", **changes: object) -> PrincipalKey:
    key = PrincipalKey("lab", principal_id, signer.key_id, signer.public, T0, None, None)
    return PrincipalKey(**(key.__dict__ | changes))


async def registered(conn: Conn, *labs: str) -> None:
    for lab in labs:
        assert await registry.register(conn, LAB, lab, lab.title(), T0) is None


def reason(outcome: object) -> RejectionReason | None:
    return outcome.reason if isinstance(outcome, Refusal) else None


async def test_a_principal_is_registered_once(conn: Conn) -> None:
    await registered(conn, "lab-a")
    assert (
        reason(await registry.register(conn, LAB, "lab-a", "Again", T0)) is RejectionReason.CONFLICT
    )
    [lab] = await repository.list_principals(conn, "lab")
    assert (lab.principal_id, lab.name, lab.keys) == ("lab-a", "Lab-A", 0)


async def test_kinds_are_separate_registries(conn: Conn) -> None:
    signer = Signer()
    await registered(conn, "acme")
    assert await registry.register(conn, EVALUATOR, "acme", "Acme red team", T0) is None
    assert await registry.add_key(conn, LAB, lab_key(signer, "acme"), T0) is None
    other = Signer(key_id=signer.key_id)
    evaluator_key = PrincipalKey("evaluator", "acme", other.key_id, other.public, T0, None, None)
    assert await registry.add_key(conn, EVALUATOR, evaluator_key, T0) is None
    assert [k.public_key for k in await repository.list_keys(conn, "lab")] == [signer.public]
    assert [k.public_key for k in await repository.list_keys(conn, "evaluator")] == [other.public]


async def test_ids_that_are_not_slugs_are_refused(conn: Conn) -> None:
    assert reason(await registry.register(conn, LAB, "Lab A", "x", T0)) is RejectionReason.MALFORMED
    await registered(conn, "lab-a")
    bad = lab_key(Signer(key_id="key one"))
    assert reason(await registry.add_key(conn, LAB, bad, T0)) is RejectionReason.MALFORMED


async def test_a_key_for_an_unknown_principal_is_refused(conn: Conn) -> None:
    refusal = await registry.add_key(conn, LAB, lab_key(Signer(), "nobody"), T0)
    assert reason(refusal) is RejectionReason.UNKNOWN_LAB


async def test_adding_an_existing_key_id_is_refused_even_with_a_new_key(conn: Conn) -> None:
    await registered(conn, "lab-a")
    first = Signer()
    assert await registry.add_key(conn, LAB, lab_key(first), T0) is None
    again = await registry.add_key(conn, LAB, lab_key(Signer(key_id=first.key_id)), T0 + H)
    assert reason(again) is RejectionReason.CONFLICT
    [kept] = await repository.list_keys(conn, "lab", "lab-a")
    assert kept.public_key == first.public


async def test_another_principal_cannot_take_a_key_id(conn: Conn) -> None:
    await registered(conn, "lab-a", "lab-b")
    signer = Signer(key_id="shared-name")
    assert await registry.add_key(conn, LAB, lab_key(signer, "lab-a"), T0) is None
    taken = await registry.add_key(conn, LAB, lab_key(Signer(key_id="shared-name"), "lab-b"), T0)
    assert reason(taken) is RejectionReason.CONFLICT
    assert isinstance(taken, Refusal) and "belongs to another lab" in taken.detail
    found = await repository.find_key(conn, "lab", "lab-b", "shared-name")
    assert found.key is not None and found.key.principal_id == "lab-a"


async def test_a_revoked_key_cannot_come_back_under_its_id_or_another(conn: Conn) -> None:
    await registered(conn, "lab-a")
    signer = Signer()
    assert await registry.add_key(conn, LAB, lab_key(signer), T0) is None
    assert await registry.revoke_key(conn, LAB, "lab-a", signer.key_id, T0 + H, "leaked") is None
    same_id = await registry.add_key(conn, LAB, lab_key(signer), T0 + 2 * H)
    assert reason(same_id) is RejectionReason.CONFLICT
    assert isinstance(same_id, Refusal) and "revocation is final" in same_id.detail
    new_id = await registry.add_key(
        conn, LAB, lab_key(Signer(signer.key_id + "b", signer.private)), T0
    )
    assert reason(new_id) is RejectionReason.CONFLICT
    [key] = await repository.list_keys(conn, "lab", "lab-a")
    assert key_state(key, T0 + 3 * H) is KeyState.REVOKED


async def test_revoking_twice_says_it_was_revoked_already(conn: Conn) -> None:
    await registered(conn, "lab-a")
    signer = Signer()
    await registry.add_key(conn, LAB, lab_key(signer), T0)
    assert await registry.revoke_key(conn, LAB, "lab-a", signer.key_id, T0 + H, None) is None
    twice = await registry.revoke_key(conn, LAB, "lab-a", signer.key_id, T0 + 2 * H, None)
    assert reason(twice) is RejectionReason.REVOKED_KEY
    [key] = await repository.list_keys(conn, "lab", "lab-a")
    assert key.revoked_at == T0 + H


async def test_a_principal_cannot_revoke_another_principals_key(conn: Conn) -> None:
    await registered(conn, "lab-a", "lab-b")
    signer = Signer()
    await registry.add_key(conn, LAB, lab_key(signer, "lab-a"), T0)
    refusal = await registry.revoke_key(conn, LAB, "lab-b", signer.key_id, T0, None)
    assert reason(refusal) is RejectionReason.UNKNOWN_KEY
    [key] = await repository.list_keys(conn, "lab", "lab-a")
    assert key.revoked_at is None


async def test_the_database_refuses_to_lift_a_revocation_or_delete_a_key(conn: Conn) -> None:
    await registered(conn, "lab-a")
    signer = Signer()
    await registry.add_key(conn, LAB, lab_key(signer), T0)
    await registry.revoke_key(conn, LAB, "lab-a", signer.key_id, T0 + H, None)
    with pytest.raises(asyncpg.RaiseError, match="revocation is final"):
        await conn.execute("UPDATE trust_keys SET revoked_at = NULL")
    with pytest.raises(asyncpg.RaiseError, match="identity never changes"):
        await conn.execute(
            "UPDATE trust_keys SET principal_id = 'lab-a', public_key = $1", bytes(32)
        )
    with pytest.raises(asyncpg.RaiseError, match="never deleted"):
        await conn.execute("DELETE FROM trust_keys")
    with pytest.raises(asyncpg.RaiseError, match="never deleted"):
        await conn.execute("DELETE FROM trust_principals")


async def test_rotation_keeps_the_old_key_valid_for_the_overlap_only(conn: Conn) -> None:
    await registered(conn, "lab-a")
    old, new = Signer("k-old"), Signer("k-new")
    await registry.add_key(conn, LAB, lab_key(old, valid_from=T0 - 24 * H), T0 - 24 * H)
    rotation = await registry.rotate_key(conn, LAB, "lab-a", "k-new", new.public, T0, 72 * H)
    assert not isinstance(rotation, Refusal)
    assert (rotation.ended, rotation.until) == (["k-old"], T0 + 72 * H)
    keys = {k.key_id: k for k in await repository.list_keys(conn, "lab", "lab-a")}
    assert key_state(keys["k-old"], T0 + 71 * H) is KeyState.VALID
    assert key_state(keys["k-old"], T0 + 72 * H) is KeyState.EXPIRED
    assert key_state(keys["k-new"], T0) is KeyState.VALID
    assert key_state(keys["k-new"], T0 - H) is KeyState.NOT_YET_VALID


async def test_rotation_never_extends_an_earlier_end(conn: Conn) -> None:
    await registered(conn, "lab-a")
    short = Signer("k-short")
    await registry.add_key(conn, LAB, lab_key(short, valid_until=T0 + H), T0)
    rotation = await registry.rotate_key(conn, LAB, "lab-a", "k-next", Signer().public, T0, 72 * H)
    assert not isinstance(rotation, Refusal) and rotation.ended == []
    found = await repository.find_key(conn, "lab", "lab-a", "k-short")
    assert found.key is not None and found.key.valid_until == T0 + H


async def test_a_refused_rotation_changes_nothing(conn: Conn) -> None:
    await registered(conn, "lab-a")
    old = Signer("k-old")
    await registry.add_key(conn, LAB, lab_key(old), T0)
    refused = await registry.rotate_key(conn, LAB, "lab-a", "k-old", Signer().public, T0, H)
    assert reason(refused) is RejectionReason.CONFLICT
    [key] = await repository.list_keys(conn, "lab", "lab-a")
    assert key.valid_until is None


async def test_removing_a_principal_revokes_its_keys_and_retires_its_id(conn: Conn) -> None:
    await registered(conn, "lab-a")
    first, second = Signer("k1"), Signer("k2")
    await registry.add_key(conn, LAB, lab_key(first), T0)
    await registry.add_key(conn, LAB, lab_key(second), T0)
    await registry.revoke_key(conn, LAB, "lab-a", "k1", T0, "old")
    assert await registry.remove(conn, LAB, "lab-a", T0 + H, "left") == ["k2"]
    assert (
        reason(await registry.remove(conn, LAB, "lab-a", T0 + H, None))
        is RejectionReason.UNKNOWN_LAB
    )
    again = await registry.register(conn, LAB, "lab-a", "Lab A", T0 + 2 * H)
    assert isinstance(again, Refusal) and "never registered again" in again.detail
    assert (
        reason(await registry.add_key(conn, LAB, lab_key(Signer("k3")), T0))
        is RejectionReason.UNKNOWN_LAB
    )
    found = await repository.find_key(conn, "lab", "lab-a", "k2")
    assert (found.removed_at, found.key and found.key.revoked_reason) == (
        T0 + H,
        "principal removed: left",
    )
    assert await repository.list_principals(conn, "lab") == []
    assert len(await repository.list_principals(conn, "lab", include_removed=True)) == 1


async def test_the_lookup_tells_every_state_apart(conn: Conn) -> None:
    await registered(conn, "lab-a", "lab-b")
    signer = Signer("k1")
    await registry.add_key(conn, LAB, lab_key(signer), T0)
    unknown = await repository.find_key(conn, "lab", "nobody", "k1")
    assert (unknown.registered, unknown.key is not None) == (False, True)
    no_key = await repository.find_key(conn, "lab", "lab-a", "k9")
    assert (no_key.registered, no_key.key) == (True, None)
    foreign = await repository.find_key(conn, "lab", "lab-b", "k1")
    assert foreign.key is not None and foreign.key.principal_id == "lab-a"
    own = await repository.find_key(conn, "lab", "lab-a", "k1")
    assert own.key is not None and own.key.public_key == signer.public
    other_kind = await repository.find_key(conn, "evaluator", "lab-a", "k1")
    assert (other_kind.registered, other_kind.key) == (False, None)


async def test_a_validity_window_that_ends_before_it_starts_is_refused(conn: Conn) -> None:
    await registered(conn, "lab-a")
    refusal = await registry.add_key(conn, LAB, lab_key(Signer(), valid_until=T0), T0)
    assert reason(refusal) is RejectionReason.MALFORMED


async def test_a_small_order_key_is_refused(conn: Conn) -> None:
    await registered(conn, "lab-a")
    weak = lab_key(Signer(), public_key=bytes([1]) + bytes(31))
    refusal = await registry.add_key(conn, LAB, weak, T0)
    assert isinstance(refusal, Refusal) and "small-order" in refusal.detail
