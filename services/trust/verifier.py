"""``authenticate``: who signed a record, checked in the order that leaks least.

1. the broker timestamp must be plausible (``freshness`` rule 1), else the record
   is dead-lettered: that is about our clocks, not about the sender;
2. one round trip reads the claimed principal and key;
3. the signature is verified over the data as received, against the stand-in
   key when there is no usable key, so every claim costs the same work;
4. key state (registered, not removed, the key the principal's, not revoked,
   inside its validity window at the append time), then the signature, then
   freshness at the append time;
5. only then is the nonce spent (in the caller's transaction): input that is not
   authentic and fresh never spends one, so it can neither block a genuine
   sender's nonce nor add rows.

What comes back is an ``Authenticated`` (the only way to get one, and what
``refusal.answer_fields`` needs to tell a sender a precise reason) or the precise
``Refusal``, for the operator's log and the principal's own view; publish it
through ``answer_fields(refusal)``, which conceals it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from contracts.events.common import RejectionReason
from services.runtime.errors import PermanentError
from services.trust import repository
from services.trust.freshness import (
    IMPLAUSIBLE_APPEND_TIME,
    FreshnessPolicy,
    Receipt,
    append_time_fault,
    check_freshness,
)
from services.trust.principals import PrincipalKind, check_key
from services.trust.refusal import Refusal, storable
from services.trust.signatures import STAND_IN_KEY, signature_valid
from services.trust.unverified import SignedInput

if TYPE_CHECKING:
    from services.runtime.database import Connection


@dataclass(frozen=True)
class Authenticated:
    """A sender proven by its signature: built by ``authenticate`` only."""

    kind: str
    principal_id: str
    key_id: str
    nonce: str
    issued_at: datetime
    signature_sha256: str  # of signature.value as sent: what binds an answer to this input


async def authenticate(
    conn: Connection,
    signed: SignedInput,
    *,
    kind: PrincipalKind,
    received: Receipt,
    policy: FreshnessPolicy,
) -> Authenticated | Refusal:
    """Authenticate ``signed`` (from ``unverified.read_signed``) as a principal of ``kind``.

    Raises ``PermanentError(implausible_append_time)`` when the broker timestamp
    can't be trusted (see ``freshness``).
    """
    fault = append_time_fault(received, policy)
    if fault is not None:
        raise PermanentError(IMPLAUSIBLE_APPEND_TIME, fault)
    signature = signed.signature
    found = await repository.find_key(conn, kind.name, signed.principal_id, signature.key_id)
    refusal = check_key(
        found,
        kind=kind,
        principal_id=signed.principal_id,
        key_id=signature.key_id,
        signed_at=received.reference,
    )
    public_key = found.key.public_key if refusal is None and found.key else STAND_IN_KEY
    genuine = signature_valid(public_key, signed.data, signature.value)
    if refusal is not None:
        return refusal
    if not genuine:
        return Refusal(
            RejectionReason.BAD_SIGNATURE,
            f"the signature does not verify with key {signature.key_id!r} of {kind.noun} "
            f"{signed.principal_id!r} over the data as received",
        )
    refusal = check_freshness(signature.issued_at, received, policy)
    if refusal is not None:
        return refusal
    spent = await repository.spend_nonce(
        conn,
        kind=kind.name,
        principal_id=signed.principal_id,
        key_id=signature.key_id,
        nonce=signature.nonce,
        issued_at=signature.issued_at,
        event_id=storable(received.event_id)[:200],
        at=received.now,
    )
    if not spent:
        return Refusal(
            RejectionReason.REPLAYED_NONCE,
            f"nonce {signature.nonce!r} was spent before with key {signature.key_id!r} of "
            f"{kind.noun} {signed.principal_id!r}",
        )
    return Authenticated(
        kind=kind.name,
        principal_id=signed.principal_id,
        key_id=signature.key_id,
        nonce=signature.nonce,
        issued_at=signature.issued_at,
        signature_sha256=hashlib.sha256(signature.value.encode()).hexdigest(),
    )
