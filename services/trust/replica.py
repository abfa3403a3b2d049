"""The lab registry as its owner publishes it and as another service receives it.

Intake owns the registry of labs and their keys. Access verifies the labs'
signed compliance acknowledgements, so it needs the same keys, and must lose a
key the moment intake revokes it. So intake publishes every change of a lab's
entry as the entry itself, a ``LabRegistryChanged`` on the compacted
``intake.registry`` (key: the lab id), and access applies it to its own trust
tables with this library's ``registry`` functions: one registry, intake's, and
a copy that follows it.

- ``lab_snapshot`` (the owner's side) runs in the transaction of the change:
  it bumps the lab's version in ``trust_registry_versions`` and reads the
  entry as the change left it; the caller writes it to its outbox in the same
  transaction, so a change that rolls back announces nothing and a change
  that commits is announced.
- ``apply_lab_snapshot`` (the receiver's side) applies a snapshot whose
  version is above the one it applied last, and nothing else: a duplicate, a
  replay or an older record is ``Stale``. Applying means: register the lab if
  it is new; add every key it does not hold; end a key's validity where the
  snapshot ends it earlier (a rotation; never extended); revoke every key the
  snapshot revokes, and every key it holds that the snapshot does not list
  (the owner's registry is the only one: a key registered only here must not
  authenticate); remove a removed lab (which revokes all of its keys).
  Revocation and removal are final in the tables, so no snapshot, however
  ordered, can bring a revoked key back.

A snapshot that contradicts what the receiver holds (a key id with another
public key, a public key under another key id) is a ``Refusal``: the caller
dead-letters it for the operator, and nothing of it is applied.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from contracts.events.common import RejectionReason
from contracts.events.intake import LabKeyEntry, LabRegistryChanged, LabStatus
from services.trust import registry, repository
from services.trust.principals import LAB, PrincipalKey
from services.trust.refusal import Refusal

if TYPE_CHECKING:
    from services.runtime.database import Connection

REMOVED_BY_OWNER = "removed in intake's registry"
REVOKED_BY_OWNER = "revoked in intake's registry"
NOT_IN_OWNER = "not in intake's registry"


def registry_event_id(lab_id: str, version: int) -> str:
    """Deterministic: one version of one lab's entry is published under one event id."""
    return f"lab-registry:{lab_id}:{version}"


async def lab_snapshot(conn: Connection, lab_id: str, changed_at: datetime) -> LabRegistryChanged:
    """The lab's entry after a change, under its next version (in the change's transaction)."""
    if not conn.is_in_transaction():
        raise RuntimeError("a registry snapshot is taken in the transaction of the change")
    principal = await repository.lock_principal(conn, LAB.name, lab_id)
    if principal is None:
        raise ValueError(f"lab {lab_id} is not registered")
    version = await repository.next_registry_version(conn, LAB.name, lab_id)
    keys = await repository.list_keys(conn, LAB.name, lab_id)
    return LabRegistryChanged(
        lab_id=lab_id,
        version=version,
        status=LabStatus.ACTIVE if principal.removed_at is None else LabStatus.REMOVED,
        name=principal.name,
        registered_at=principal.registered_at,
        removed_at=principal.removed_at,
        keys=[
            LabKeyEntry(
                key_id=k.key_id,
                public_key=base64.b64encode(k.public_key).decode(),
                valid_from=k.valid_from,
                valid_until=k.valid_until,
                revoked_at=k.revoked_at,
            )
            for k in keys
        ],
        changed_at=changed_at,
    )


@dataclass(frozen=True)
class Stale:
    """The snapshot's version is not above the one applied: nothing changed."""

    held: int


@dataclass(frozen=True)
class Applied:
    version: int
    registered: bool = False
    added: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    removed: bool = False


async def apply_lab_snapshot(
    conn: Connection, snapshot: LabRegistryChanged, now: datetime
) -> Applied | Stale | Refusal:
    """Bring this schema's entry of the lab to ``snapshot``, if it is newer (one transaction)."""
    try:
        return await _apply(conn, snapshot, now)
    except _Contradiction as contradiction:  # its savepoint rolled back: nothing applied
        return contradiction.refusal


async def _apply(conn: Connection, snapshot: LabRegistryChanged, now: datetime) -> Applied | Stale:
    lab_id = snapshot.lab_id
    async with conn.transaction():
        principal = await repository.lock_principal(conn, LAB.name, lab_id)
        registered = principal is None
        if registered:
            refusal = await registry.register(
                conn, LAB, lab_id, snapshot.name, snapshot.registered_at
            )
            if refusal is not None:
                raise _Contradiction(refusal)
        held = await repository.registry_version(conn, LAB.name, lab_id)
        if held is not None and snapshot.version <= held:
            return Stale(held)
        result = await _apply_keys(conn, snapshot, now)
        if isinstance(result, Refusal):
            raise _Contradiction(result)
        added, ended, revoked = result
        removed = False
        if snapshot.removed_at is not None:
            gone = await registry.remove(conn, LAB, lab_id, snapshot.removed_at, REMOVED_BY_OWNER)
            if not isinstance(gone, Refusal):  # a Refusal: removed here already
                removed = True
                revoked = sorted({*revoked, *gone})
        await repository.set_registry_version(conn, LAB.name, lab_id, snapshot.version)
    return Applied(snapshot.version, registered, added, ended, revoked, removed)


class _Contradiction(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


async def _apply_keys(
    conn: Connection, snapshot: LabRegistryChanged, now: datetime
) -> tuple[list[str], list[str], list[str]] | Refusal:
    lab_id = snapshot.lab_id
    held = {k.key_id: k for k in await repository.list_keys(conn, LAB.name, lab_id)}
    listed = {k.key_id for k in snapshot.keys}
    added: list[str] = []
    ended: list[str] = []
    revoked: list[str] = []
    for entry in snapshot.keys:
        public_key = base64.b64decode(entry.public_key, validate=True)
        key = held.get(entry.key_id)
        if key is None:
            new = PrincipalKey(
                LAB.name,
                lab_id,
                entry.key_id,
                public_key,
                entry.valid_from,
                entry.valid_until,
                None,
            )
            refusal = await registry.add_key(conn, LAB, new, now)
            if refusal is not None:
                return refusal
            added.append(entry.key_id)
            key = new
        elif key.public_key != public_key:
            return Refusal(
                RejectionReason.CONFLICT,
                f"key {entry.key_id} of lab {lab_id} has another public key here than in "
                "intake's registry: a key's identity never changes",
            )
        until = entry.valid_until
        if (
            until is not None
            and key.revoked_at is None
            and (key.valid_until is None or until < key.valid_until)
            and await repository.end_key(conn, LAB.name, lab_id, entry.key_id, until)
        ):
            ended.append(entry.key_id)  # a rotation ended it: never extended
        if entry.revoked_at is not None and key.revoked_at is None:
            await registry.revoke_key(
                conn, LAB, lab_id, entry.key_id, entry.revoked_at, REVOKED_BY_OWNER
            )
            revoked.append(entry.key_id)
    for key_id, key in held.items():
        if key_id not in listed and key.revoked_at is None:
            await registry.revoke_key(conn, LAB, lab_id, key_id, now, NOT_IN_OWNER)
            revoked.append(key_id)
    return added, ended, revoked
