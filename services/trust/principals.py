"""Principals (labs, evaluators, reviewers, ...) and their keys, and when a key may sign.

A principal is registered under a *kind* and an id (the id its signed input
claims, e.g. ``lab_id``). The kind is data: a service keeps the principals of
the kinds it verifies, whether it owns their registry (intake: labs) or receives
it from elsewhere later (access: labs' keys too).

Key rules, the same for every kind:
- a key id belongs to one principal of its kind, for ever: adding a key id that
  exists (for this principal or another, revoked or not) is refused, and so is a
  public key that is registered already (re-adding a revoked key under a new id
  would undo its revocation);
- revocation and removal are final; a removed principal's keys are revoked;
- a key is valid from ``valid_from`` until ``valid_until`` (rotation ends the
  old keys after an overlap). The window is a schedule, so it is judged at the
  broker's append time of the record (see ``freshness``): a backlog never turns
  input signed in time invalid. Revocation says the key can't be trusted, so it
  applies to everything processed after it, however old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts.events.common import RejectionReason
from services.trust.refusal import Refusal


@dataclass(frozen=True)
class PrincipalKind:
    """A kind of signer: ``name`` is stored in the tables, ``noun`` used in texts."""

    name: str
    noun: str
    unknown: RejectionReason = RejectionReason.UNKNOWN_PRINCIPAL

    def __str__(self) -> str:
        return self.name

    @property
    def a_noun(self) -> str:
        """The noun with its indefinite article: "a lab", "an evaluator"."""
        return f"{'an' if self.noun[:1] in tuple('aeiou') else 'a'} {self.noun}"


LAB = PrincipalKind("lab", "lab", RejectionReason.UNKNOWN_LAB)
EVALUATOR = PrincipalKind("evaluator", "evaluator", RejectionReason.UNKNOWN_EVALUATOR)
REVIEWER = PrincipalKind("reviewer", "reviewer")


@dataclass(frozen=True)
class Principal:
    kind: str
    principal_id: str
    name: str
    registered_at: datetime
    removed_at: datetime | None
    keys: int  # how many keys were ever added (revoked ones too)


@dataclass(frozen=True)
class PrincipalKey:
    kind: str
    principal_id: str
    key_id: str
    public_key: bytes  # the raw 32-byte Ed25519 public key
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None = None


@dataclass(frozen=True)
class KeyLookup:
    """What the verifier needs, read in one round trip.

    ``key`` is the key with the claimed id, whoever it belongs to (key ids are
    unique per kind), or None.
    """

    registered: bool
    removed_at: datetime | None
    key: PrincipalKey | None


class KeyState(StrEnum):
    VALID = "valid"
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


def key_state(key: PrincipalKey, at: datetime) -> KeyState:
    if key.revoked_at is not None:
        return KeyState.REVOKED
    if key.valid_from > at:
        return KeyState.NOT_YET_VALID
    if key.valid_until is not None and key.valid_until <= at:
        return KeyState.EXPIRED
    return KeyState.VALID


def check_key(
    found: KeyLookup,
    *,
    kind: PrincipalKind,
    principal_id: str,
    key_id: str,
    signed_at: datetime,
) -> Refusal | None:
    """May ``key_id`` of ``principal_id`` sign input appended at ``signed_at``?

    The precise reasons are for the operator and the principal's own view;
    ``refusal.public_refusal`` conceals them from an unauthenticated sender.
    """
    noun = f"{kind.noun} {principal_id!r}"
    if not found.registered:
        return Refusal(kind.unknown, f"{noun} is not registered")
    if found.removed_at is not None:
        return Refusal(kind.unknown, f"{noun} was removed at {found.removed_at.isoformat()}")
    key = found.key
    if key is None or key.principal_id != principal_id:
        return Refusal(RejectionReason.UNKNOWN_KEY, f"{noun} has no registered key {key_id!r}")
    state = key_state(key, signed_at)
    if state is KeyState.REVOKED:
        assert key.revoked_at is not None
        return Refusal(
            RejectionReason.REVOKED_KEY,
            f"key {key_id!r} of {noun} was revoked at {key.revoked_at.isoformat()}",
        )
    if state is KeyState.NOT_YET_VALID:
        return Refusal(
            RejectionReason.EXPIRED_KEY,
            f"key {key_id!r} of {noun} is not valid before {key.valid_from.isoformat()}",
        )
    if state is KeyState.EXPIRED:
        assert key.valid_until is not None
        return Refusal(
            RejectionReason.EXPIRED_KEY,
            f"key {key_id!r} of {noun} expired at {key.valid_until.isoformat()}",
        )
    return None
