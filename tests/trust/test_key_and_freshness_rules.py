"""Decision tables: when a key may sign, when a signature is fresh, how long a nonce lives."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.events.common import RejectionReason
from services.trust.freshness import (
    FreshnessPolicy,
    Receipt,
    append_time_fault,
    check_freshness,
    receipt,
)
from services.trust.principals import EVALUATOR, LAB, REVIEWER, KeyLookup, PrincipalKey, check_key
from tests.trust.support import T0

H = timedelta(hours=1)
POLICY = FreshnessPolicy()


def key(**changes: object) -> PrincipalKey:
    fields: dict[str, object] = {
        "kind": "lab",
        "principal_id": "lab-a",
        "key_id": "k1",
        "public_key": b"\x01" * 32,
        "valid_from": T0 - 10 * H,
        "valid_until": None,
        "revoked_at": None,
    }
    return PrincipalKey(**(fields | changes))  # type: ignore[arg-type]


REGISTERED = KeyLookup(registered=True, removed_at=None, key=key())

R = RejectionReason
KEY_TABLE = [
    ("lab unknown", KeyLookup(False, None, None), R.UNKNOWN_LAB),
    ("lab removed", KeyLookup(True, T0 - H, key(revoked_at=T0 - H)), R.UNKNOWN_LAB),
    ("no such key id", KeyLookup(True, None, None), R.UNKNOWN_KEY),
    ("key of another lab", KeyLookup(True, None, key(principal_id="lab-b")), R.UNKNOWN_KEY),
    ("revoked", KeyLookup(True, None, key(revoked_at=T0 - H)), R.REVOKED_KEY),
    ("revoked after it signed", KeyLookup(True, None, key(revoked_at=T0 + H)), R.REVOKED_KEY),
    ("not yet valid", KeyLookup(True, None, key(valid_from=T0 + H)), R.EXPIRED_KEY),
    ("expired", KeyLookup(True, None, key(valid_until=T0)), R.EXPIRED_KEY),
    ("valid", REGISTERED, None),
    ("valid until later", KeyLookup(True, None, key(valid_until=T0 + H)), None),
]


@pytest.mark.parametrize(("case", "found", "reason"), KEY_TABLE, ids=[c[0] for c in KEY_TABLE])
def test_key_decision_table(case: str, found: KeyLookup, reason: RejectionReason | None) -> None:
    refusal = check_key(found, kind=LAB, principal_id="lab-a", key_id="k1", signed_at=T0)
    assert (refusal.reason if refusal else None) is reason


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (LAB, RejectionReason.UNKNOWN_LAB),
        (EVALUATOR, RejectionReason.UNKNOWN_EVALUATOR),
        (REVIEWER, RejectionReason.UNKNOWN_PRINCIPAL),
    ],
)
def test_an_unknown_principal_is_refused_with_its_kinds_reason(
    kind: object, reason: RejectionReason
) -> None:
    refusal = check_key(
        KeyLookup(False, None, None),
        kind=kind,  # type: ignore[arg-type]
        principal_id="x",
        key_id="k1",
        signed_at=T0,
    )
    assert refusal is not None and refusal.reason is reason


def test_a_key_that_expired_after_the_record_was_appended_still_verifies_it() -> None:
    """Rotation is a schedule: a backlog must not turn input signed in time invalid."""
    expired_since = KeyLookup(True, None, key(valid_until=T0 + H))
    assert (
        check_key(expired_since, kind=LAB, principal_id="lab-a", key_id="k1", signed_at=T0) is None
    )


# --- freshness -------------------------------------------------------------------------


def at(appended: datetime | None, now: datetime) -> Receipt:
    return Receipt(event_id="e1", now=now, appended_at=appended)


S = timedelta(seconds=1)
A, F = POLICY.max_age, POLICY.max_future
FRESHNESS_TABLE = [
    ("signed just before it was appended", T0 - S, at(T0, T0), None),
    ("signed max_age before", T0 - A, at(T0, T0), None),
    ("signed past max_age before", T0 - A - S, at(T0, T0), R.STALE_ISSUED_AT),
    ("signed max_future after", T0 + F, at(T0, T0), None),
    ("signed past max_future after", T0 + F + S, at(T0, T0), R.FUTURE_ISSUED_AT),
    ("queued for 10 days", T0, at(T0, T0 + 240 * H), None),
    ("no broker time: judged now", T0, at(None, T0 + H), R.STALE_ISSUED_AT),
    ("no broker time, fresh now", T0, at(None, T0 + 30 * S), None),
]


@pytest.mark.parametrize(
    ("case", "issued_at", "received", "reason"),
    FRESHNESS_TABLE,
    ids=[c[0] for c in FRESHNESS_TABLE],
)
def test_freshness_decision_table(
    case: str, issued_at: datetime, received: Receipt, reason: RejectionReason | None
) -> None:
    refusal = check_freshness(issued_at, received, POLICY)
    assert (refusal.reason if refusal else None) is reason


TOLERANCE, MAX_AGE = POLICY.clock_tolerance, POLICY.max_record_age
APPEND_TABLE = [
    ("appended a moment ago", at(T0 - 2 * S, T0), False),
    ("appended 21 days ago", at(T0 - timedelta(days=21), T0), False),
    ("appended as long ago as a record can stay", at(T0 - MAX_AGE - TOLERANCE, T0), False),
    ("appended longer ago than a record can stay", at(T0 - MAX_AGE - TOLERANCE - S, T0), True),
    ("appended slightly in our future", at(T0 + TOLERANCE, T0), False),
    ("appended far in our future", at(T0 + TOLERANCE + S, T0), True),
    ("no broker time", at(None, T0), False),
]


@pytest.mark.parametrize(
    ("case", "received", "implausible"), APPEND_TABLE, ids=[c[0] for c in APPEND_TABLE]
)
def test_broker_time_plausibility_table(case: str, received: Receipt, implausible: bool) -> None:
    assert (append_time_fault(received, POLICY) is not None) is implausible


def test_only_a_log_append_time_timestamp_is_taken_as_the_broker_time() -> None:
    ms = int(T0.timestamp() * 1000)
    assert receipt("e", T0, timestamp_ms=ms, log_append_time=True).appended_at == T0
    assert receipt("e", T0, timestamp_ms=ms, log_append_time=False).appended_at is None
    assert receipt("e", T0, timestamp_ms=None, log_append_time=True).appended_at is None


def test_nonce_retention_with_the_defaults_outlives_the_input_topics() -> None:
    assert POLICY.nonce_retention == timedelta(days=21, minutes=20)


def seconds(low: timedelta, high: timedelta) -> st.SearchStrategy[timedelta]:
    """Whole seconds in [low, high]: hypothesis tries the bounds themselves first."""
    return st.integers(int(low.total_seconds()), int(high.total_seconds())).map(
        lambda s: timedelta(seconds=s)
    )


T, L = POLICY.clock_tolerance, POLICY.max_record_age
MINUTE = timedelta(minutes=1)


@given(
    lag=seconds(-T - MINUTE, L + T + MINUTE),  # processed this long after it was appended
    signed=seconds(-POLICY.max_age - MINUTE, POLICY.max_future + MINUTE),  # issued_at - appended
    purger_ahead=seconds(timedelta(0), T),  # the purging replica's clock is this far ahead
)
@example(lag=L + T, signed=-POLICY.max_age, purger_ahead=T)  # the worst case, always tried
def test_no_acceptable_record_carries_a_nonce_the_purge_may_have_deleted(
    lag: timedelta, signed: timedelta, purger_ahead: timedelta
) -> None:
    """Replay protection: what is accepted was issued within the retention window of
    every purge clock up to clock_tolerance ahead of the verifier's."""
    appended = T0
    now = appended + lag
    issued_at = appended + signed
    received = Receipt("e", now=now, appended_at=appended)
    accepted = (
        append_time_fault(received, POLICY) is None
        and check_freshness(issued_at, received, POLICY) is None
    )
    if accepted:
        assert issued_at >= now + purger_ahead - POLICY.nonce_retention


@given(
    signed=seconds(-POLICY.max_age - MINUTE, POLICY.max_future + MINUTE),
    purger_ahead=seconds(timedelta(0), T),
)
@example(signed=-POLICY.max_age, purger_ahead=T)
def test_without_a_broker_time_the_same_retention_holds(
    signed: timedelta, purger_ahead: timedelta
) -> None:
    now = T0
    issued_at = now + signed
    if check_freshness(issued_at, Receipt("e", now=now), POLICY) is None:
        assert issued_at >= now + purger_ahead - POLICY.nonce_retention


def test_a_record_queued_for_as_long_as_a_topic_can_keep_it_is_still_judged_fresh() -> None:
    received = Receipt("e", now=T0 + L, appended_at=T0)
    assert append_time_fault(received, POLICY) is None
    assert check_freshness(T0 - POLICY.max_age, received, POLICY) is None
