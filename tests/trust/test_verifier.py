"""``authenticate`` on the real PostgreSQL: nonces spent once, only by authentic fresh input."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TypeAlias

import asyncpg
import pytest

from contracts.events.common import RejectionReason
from services.runtime.errors import PermanentError
from services.trust import registry
from services.trust.freshness import FreshnessPolicy, Receipt
from services.trust.nonces import NoncePurge
from services.trust.principals import EVALUATOR, LAB, PrincipalKey
from services.trust.refusal import Refusal, answer_fields
from services.trust.unverified import SignedInput, read_signed
from services.trust.verifier import Authenticated, authenticate
from tests.trust.support import T0, Signer, envelope, submission_body

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
H = timedelta(hours=1)
POLICY = FreshnessPolicy()
SIGNER = Signer("k1")


@pytest.fixture(autouse=True)
async def lab_a(conn: Conn) -> None:
    assert await registry.register(conn, LAB, "lab-a", "Lab A", T0 - 48 * H) is None
    key = PrincipalKey("lab", "lab-a", SIGNER.key_id, SIGNER.public, T0 - 48 * H, None, None)
    assert await registry.add_key(conn, LAB, key, T0 - 48 * H) is None


def signed_input(signer: Signer = SIGNER, lab_id: str = "lab-a", **sign: object) -> SignedInput:
    data = signer.sign(submission_body(lab_id), **sign)  # type: ignore[arg-type]
    signed = read_signed(envelope(data), principal_field="lab_id")
    assert isinstance(signed, SignedInput)
    return signed


def at(appended: datetime | None, now: datetime | None = None, event_id: str = "e1") -> Receipt:
    return Receipt(event_id=event_id, now=now or appended or T0, appended_at=appended)


async def nonces(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM trust_nonces"))


async def verify(conn: Conn, signed: SignedInput, received: Receipt) -> Authenticated | Refusal:
    return await authenticate(conn, signed, kind=LAB, received=received, policy=POLICY)


async def test_an_authentic_fresh_input_is_authenticated_and_spends_its_nonce(conn: Conn) -> None:
    signed = signed_input()
    outcome = await verify(conn, signed, at(T0))
    digest = hashlib.sha256(signed.signature.value.encode()).hexdigest()
    assert outcome == Authenticated("lab", "lab-a", "k1", signed.signature.nonce, T0, digest)
    row = await conn.fetchrow("SELECT principal_id, key_id, event_id FROM trust_nonces")
    assert row is not None and tuple(row) == ("lab-a", "k1", "e1")


async def test_a_replay_is_refused_and_the_nonce_stays_spent_by_the_first(conn: Conn) -> None:
    signed = signed_input()
    assert isinstance(await verify(conn, signed, at(T0)), Authenticated)
    replay = await verify(conn, signed, at(T0 + timedelta(seconds=5), event_id="e2"))
    assert isinstance(replay, Refusal) and replay.reason is RejectionReason.REPLAYED_NONCE
    assert await conn.fetchval("SELECT event_id FROM trust_nonces") == "e1"


async def test_the_same_nonce_under_another_key_is_not_a_replay(conn: Conn) -> None:
    other = Signer("k2")
    key = PrincipalKey("lab", "lab-a", "k2", other.public, T0 - H, None, None)
    assert await registry.add_key(conn, LAB, key, T0) is None
    nonce = "N" * 24
    assert isinstance(await verify(conn, signed_input(nonce=nonce), at(T0)), Authenticated)
    assert isinstance(await verify(conn, signed_input(other, nonce=nonce), at(T0)), Authenticated)


@pytest.mark.parametrize(
    ("case", "make", "reason"),
    [
        ("unknown lab", lambda: signed_input(lab_id="lab-z"), RejectionReason.UNKNOWN_LAB),
        ("unknown key", lambda: signed_input(Signer("k9")), RejectionReason.UNKNOWN_KEY),
        ("forged", lambda: signed_input(Signer("k1")), RejectionReason.BAD_SIGNATURE),
        ("stale", lambda: signed_input(issued_at=T0 - H), RejectionReason.STALE_ISSUED_AT),
        ("future", lambda: signed_input(issued_at=T0 + H), RejectionReason.FUTURE_ISSUED_AT),
    ],
)
async def test_input_that_is_not_authentic_and_fresh_spends_no_nonce(
    conn: Conn, case: str, make: object, reason: RejectionReason
) -> None:
    outcome = await verify(conn, make(), at(T0))  # type: ignore[operator]
    assert isinstance(outcome, Refusal) and outcome.reason is reason
    assert answer_fields(outcome)["reason"] is RejectionReason.AUTHENTICATION_FAILED
    assert await nonces(conn) == 0


async def test_a_forgery_under_a_spent_nonce_does_not_learn_it_was_spent(conn: Conn) -> None:
    signed = signed_input()
    assert isinstance(await verify(conn, signed, at(T0)), Authenticated)
    forged = signed_input(Signer("k1"), nonce=signed.signature.nonce)
    outcome = await verify(conn, forged, at(T0))
    assert isinstance(outcome, Refusal) and outcome.reason is RejectionReason.BAD_SIGNATURE


async def test_input_queued_for_ten_days_behind_an_outage_is_still_fresh(conn: Conn) -> None:
    signed = signed_input(issued_at=T0)
    outcome = await verify(conn, signed, at(T0 + timedelta(seconds=1), now=T0 + 240 * H))
    assert isinstance(outcome, Authenticated)


async def test_a_key_rotated_out_while_input_was_queued_still_verifies_it(conn: Conn) -> None:
    next_key = Signer("k-next")
    rotation = await registry.rotate_key(conn, LAB, "lab-a", "k-next", next_key.public, T0, H)
    assert not isinstance(rotation, Refusal)
    queued = signed_input(issued_at=T0 + H / 2)
    assert isinstance(await verify(conn, queued, at(T0 + H / 2, now=T0 + 5 * H)), Authenticated)
    late = signed_input(issued_at=T0 + 2 * H)
    outcome = await verify(conn, late, at(T0 + 2 * H))
    assert isinstance(outcome, Refusal) and outcome.reason is RejectionReason.EXPIRED_KEY


async def test_a_revocation_refuses_even_input_appended_before_it(conn: Conn) -> None:
    queued = signed_input(issued_at=T0)
    assert await registry.revoke_key(conn, LAB, "lab-a", "k1", T0 + H, "compromised") is None
    outcome = await verify(conn, queued, at(T0, now=T0 + 2 * H))
    assert isinstance(outcome, Refusal) and outcome.reason is RejectionReason.REVOKED_KEY


async def test_an_implausible_broker_time_dead_letters_the_record(conn: Conn) -> None:
    signed = signed_input(issued_at=T0)
    with pytest.raises(PermanentError) as dead:
        await verify(conn, signed, at(T0, now=T0 - H))
    assert dead.value.reason == "implausible_append_time"
    with pytest.raises(PermanentError):
        await verify(conn, signed, at(T0, now=T0 + POLICY.max_record_age + H))
    assert await nonces(conn) == 0


async def test_a_lab_key_does_not_authenticate_an_evaluator_of_the_same_id(conn: Conn) -> None:
    signed = read_signed(
        envelope(SIGNER.sign({"evaluator_id": "lab-a"})), principal_field="evaluator_id"
    )
    assert isinstance(signed, SignedInput)
    outcome = await authenticate(conn, signed, kind=EVALUATOR, received=at(T0), policy=POLICY)
    assert isinstance(outcome, Refusal) and outcome.reason is RejectionReason.UNKNOWN_EVALUATOR


async def test_a_hostile_event_id_is_stored_escaped(conn: Conn) -> None:
    outcome = await verify(conn, signed_input(), at(T0, event_id="e\x00\ud800"))
    assert isinstance(outcome, Authenticated)
    assert await conn.fetchval("SELECT event_id FROM trust_nonces") == "e\\x00\\ud800"


async def test_the_purge_forgets_nonces_only_after_their_retention(
    conn: Conn, pool: asyncpg.Pool[asyncpg.Record]
) -> None:
    old, recent = signed_input(issued_at=T0), signed_input(issued_at=T0 + H)
    assert isinstance(await verify(conn, old, at(T0)), Authenticated)
    assert isinstance(await verify(conn, recent, at(T0 + H, event_id="e2")), Authenticated)
    clock = [T0 + POLICY.nonce_retention]
    purge = NoncePurge(lambda: pool, lambda: clock[0], POLICY, batch=1)
    assert await purge.purge_once() == 0
    clock[0] += timedelta(seconds=1)
    assert await purge.purge_once() == 1
    assert await conn.fetchval("SELECT event_id FROM trust_nonces") == "e2"
    clock[0] += H
    assert await purge.purge_once() == 1
    assert await nonces(conn) == 0


async def test_a_copy_of_a_record_whose_nonce_was_purged_is_never_accepted(conn: Conn) -> None:
    signed = signed_input(issued_at=T0)
    assert isinstance(await verify(conn, signed, at(T0)), Authenticated)
    await conn.execute("DELETE FROM trust_nonces")  # what the purge does after the retention
    now = T0 + POLICY.nonce_retention + timedelta(seconds=1)
    appended_now = await verify(conn, signed, at(now))
    assert isinstance(appended_now, Refusal)
    assert appended_now.reason is RejectionReason.STALE_ISSUED_AT
    with pytest.raises(PermanentError):  # appended in time, longer ago than a topic keeps it
        await verify(conn, signed, at(T0 + POLICY.max_age, now=now))
    assert await nonces(conn) == 0
