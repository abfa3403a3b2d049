"""The key registry's operations: register and remove principals, add, rotate and revoke keys.

Each takes the caller's connection and runs its statements in one transaction
(the principal's row is locked first, so two operators' commands on one
principal serialise), and answers with a value or a ``Refusal``, never an
exception for a "no". The rules are in ``principals``' docstring; the tables
enforce the final ones again (sql/0001_trust_registry.sql).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from contracts.events.common import RejectionReason
from contracts.principals import TENANT_ID
from services.trust import repository
from services.trust.principals import Principal, PrincipalKey, PrincipalKind
from services.trust.public_keys import public_key_problem
from services.trust.refusal import Refusal
from services.trust.unverified import slug

if TYPE_CHECKING:
    from services.runtime.database import Connection

KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # contracts KeyId
MAX_NAME = 200


@dataclass(frozen=True)
class Rotation:
    added: PrincipalKey
    ended: list[str]  # the other keys, valid until ``until`` now
    until: datetime


def _malformed(detail: str) -> Refusal:
    return Refusal(RejectionReason.MALFORMED, detail)


def check_ids(kind: PrincipalKind, principal_id: str, key_id: str | None = None) -> Refusal | None:
    if slug(principal_id) is None:
        return _malformed(
            f"{principal_id!r} is not {kind.a_noun} id: lower-case letters, digits, '.', '_' "
            "and '-', starting with a letter or digit, at most 64 characters"
        )
    if key_id is not None and not KEY_ID.fullmatch(key_id):
        return _malformed(
            f"{key_id!r} is not a key id: letters, digits, '.', '_', ':' and '-', starting "
            "with a letter or digit, at most 128 characters"
        )
    return None


async def registered(conn: Connection, kind: PrincipalKind, principal_id: str) -> bool:
    """Whether ``principal_id`` is a registered (not removed) principal of ``kind``."""
    if check_ids(kind, principal_id) is not None:
        return False
    return await repository.is_registered(conn, kind.name, principal_id)


async def registrable(
    conn: Connection, kind: PrincipalKind, principal_id: str, name: str
) -> Refusal | None:
    """Why ``principal_id`` cannot be registered now, if it cannot (``register`` checks
    again: this is for work to do before, such as onboarding)."""
    refusal = _check_new(kind, principal_id, name)
    if refusal is not None:
        return refusal
    existing = await repository.lock_principal(conn, kind.name, principal_id)
    return None if existing is None else _taken(kind, principal_id, existing)


def _check_new(kind: PrincipalKind, principal_id: str, name: str) -> Refusal | None:
    refusal = check_ids(kind, principal_id)
    if refusal is not None:
        return refusal
    if not TENANT_ID.fullmatch(principal_id):  # stricter than a slug: it names Kafka resources
        return _malformed(
            f"{principal_id!r} cannot be a new {kind.noun} id: it names the {kind.noun}'s "
            "Kafka principal and feeds, so 1-63 characters of a-z, 0-9 and '-' (no '.' or '_')"
        )
    if not 0 < len(name) <= MAX_NAME:
        return _malformed(f"{kind.a_noun}'s name has 1 to {MAX_NAME} characters")
    return None


def _taken(kind: PrincipalKind, principal_id: str, existing: Principal | None) -> Refusal:
    if existing is not None and existing.removed_at is not None:
        return Refusal(
            RejectionReason.CONFLICT,
            f"{kind.noun} {principal_id} was removed at {existing.removed_at:%Y-%m-%d %H:%M %Z}; "
            "a removed id is never registered again: choose a new id",
        )
    return Refusal(RejectionReason.CONFLICT, f"{kind.noun} {principal_id} is registered already")


async def register(
    conn: Connection, kind: PrincipalKind, principal_id: str, name: str, now: datetime
) -> Refusal | None:
    refusal = _check_new(kind, principal_id, name)
    if refusal is not None:
        return refusal
    async with conn.transaction():
        if await repository.insert_principal(conn, kind.name, principal_id, name, now):
            return None
        existing = await repository.lock_principal(conn, kind.name, principal_id)
    return _taken(kind, principal_id, existing)


async def _live_principal(
    conn: Connection, kind: PrincipalKind, principal_id: str
) -> Principal | Refusal:
    """The principal, locked, or why it can't get keys."""
    principal = await repository.lock_principal(conn, kind.name, principal_id)
    if principal is None:
        return Refusal(kind.unknown, f"{kind.noun} {principal_id} is not registered")
    if principal.removed_at is not None:
        return Refusal(
            kind.unknown,
            f"{kind.noun} {principal_id} was removed at {principal.removed_at:%Y-%m-%d %H:%M %Z}",
        )
    return principal


async def remove(
    conn: Connection, kind: PrincipalKind, principal_id: str, now: datetime, reason: str | None
) -> list[str] | Refusal:
    """Remove a principal for good and revoke its keys; returns the keys revoked now."""
    async with conn.transaction():
        principal = await _live_principal(conn, kind, principal_id)
        if isinstance(principal, Refusal):
            return principal
        return await repository.mark_removed(conn, kind.name, principal_id, now, reason)


async def add_key(
    conn: Connection,
    kind: PrincipalKind,
    key: PrincipalKey,
    now: datetime,
) -> Refusal | None:
    """Register ``key``; refused for an existing key id or public key (revoked or not)."""
    if key.kind != kind.name:
        raise ValueError(f"a {key.kind} key can't be added to the {kind.name} registry")
    refusal = check_ids(kind, key.principal_id, key.key_id) or _check_window(key)
    if refusal is not None:
        return refusal
    problem = public_key_problem(key.public_key)
    if problem is not None:
        return _malformed(problem)
    async with conn.transaction():
        principal = await _live_principal(conn, kind, key.principal_id)
        if isinstance(principal, Refusal):
            return principal
        if await repository.insert_key(conn, key, now):
            return None
        return await _why_not_added(conn, kind, key)


def _check_window(key: PrincipalKey) -> Refusal | None:
    if key.valid_until is not None and key.valid_until <= key.valid_from:
        return _malformed(
            f"valid until {key.valid_until.isoformat()} is not after valid from "
            f"{key.valid_from.isoformat()}"
        )
    return None


async def _why_not_added(conn: Connection, kind: PrincipalKind, key: PrincipalKey) -> Refusal:
    same_id = await repository.key_by_id(conn, kind.name, key.key_id)
    if same_id is not None and same_id.principal_id == key.principal_id:
        state = "revoked; revocation is final" if same_id.revoked_at else "registered"
        return Refusal(
            RejectionReason.CONFLICT,
            f"{kind.noun} {key.principal_id} has a key {key.key_id} already ({state}); "
            "a key id is never reused: choose a new key id",
        )
    if same_id is not None:
        return Refusal(
            RejectionReason.CONFLICT,
            f"key id {key.key_id} belongs to another {kind.noun}; a key id belongs to one "
            f"{kind.noun} for ever: choose a new key id",
        )
    return Refusal(
        RejectionReason.CONFLICT,
        "this public key is registered already (under another key id, possibly revoked); "
        "a key pair is registered once: generate a new key pair",
    )


async def rotate_key(
    conn: Connection,
    kind: PrincipalKind,
    principal_id: str,
    key_id: str,
    public_key: bytes,
    now: datetime,
    overlap: timedelta,
) -> Rotation | Refusal:
    """Add a key valid from now; the principal's other live keys end after ``overlap``."""
    if overlap < timedelta(0):
        return _malformed("the overlap cannot be negative")
    key = PrincipalKey(kind.name, principal_id, key_id, public_key, now, None, None)
    until = now + overlap
    async with conn.transaction():
        refusal = await add_key(conn, kind, key, now)  # a savepoint inside this transaction
        if refusal is not None:
            return refusal
        ended = await repository.end_other_keys(conn, kind.name, principal_id, key_id, until)
    return Rotation(added=key, ended=ended, until=until)


async def revoke_key(
    conn: Connection,
    kind: PrincipalKind,
    principal_id: str,
    key_id: str,
    now: datetime,
    reason: str | None,
) -> Refusal | None:
    """Revoke a key at once and for good: whatever it signs is refused from now on."""
    async with conn.transaction():
        principal = await repository.lock_principal(conn, kind.name, principal_id)
        if principal is None:
            return Refusal(kind.unknown, f"{kind.noun} {principal_id} is not registered")
        if await repository.revoke_key(conn, kind.name, principal_id, key_id, now, reason):
            return None
        key = await repository.key_by_id(conn, kind.name, key_id)
    if key is not None and key.principal_id == principal_id and key.revoked_at is not None:
        return Refusal(
            RejectionReason.REVOKED_KEY,
            f"key {key_id} of {kind.noun} {principal_id} was revoked already, at "
            f"{key.revoked_at:%Y-%m-%d %H:%M:%S %Z}",
        )
    return Refusal(RejectionReason.UNKNOWN_KEY, f"{kind.noun} {principal_id} has no key {key_id}")
