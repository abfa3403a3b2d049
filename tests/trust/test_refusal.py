"""What a sender is told about a refusal: precise only after authentication or for shape errors."""

from __future__ import annotations

import pytest

from contracts.events.common import FieldError, RejectionReason
from contracts.events.intake import SubmissionRejected
from services.trust.refusal import (
    AUTHENTICATION_FAILED_DETAIL,
    CONCEALED,
    SHAPE_REASONS,
    Refusal,
    answer_fields,
    field_error,
    public_refusal,
    storable,
)
from services.trust.verifier import Authenticated
from tests.trust.support import T0

SENDER = Authenticated("lab", "lab-a", "key-1", "n" * 24, T0, "5" * 64)

CONCEALED_REASONS = sorted(set(RejectionReason) - SHAPE_REASONS)


@pytest.mark.parametrize("reason", CONCEALED_REASONS)
def test_an_unauthenticated_sender_hears_only_authentication_failed(
    reason: RejectionReason,
) -> None:
    precise = Refusal(reason, f"lab 'lab-a' key 'k' {reason}", (field_error("data.x", "bad"),))
    assert public_refusal(precise) == CONCEALED


@pytest.mark.parametrize("reason", sorted(SHAPE_REASONS))
def test_an_unauthenticated_sender_hears_shape_errors_as_they_are(
    reason: RejectionReason,
) -> None:
    precise = Refusal(reason, "data.model.name: too long", (field_error("data.model.name", "x"),))
    assert public_refusal(precise) == precise


@pytest.mark.parametrize("reason", sorted(RejectionReason))
def test_an_authenticated_sender_hears_the_precise_reason(reason: RejectionReason) -> None:
    precise = Refusal(reason, "exactly why")
    assert public_refusal(precise, SENDER) == precise


def test_the_concealed_answer_is_the_same_text_for_every_reason_and_has_no_field_errors() -> None:
    answers = {
        (a["reason"], a["detail"], len(a["field_errors"]))
        for a in (
            answer_fields(Refusal(r, f"{r} at 12:00", (field_error("p", "m"),)))
            for r in CONCEALED_REASONS
        )
    }
    assert answers == {(RejectionReason.AUTHENTICATION_FAILED, AUTHENTICATION_FAILED_DETAIL, 0)}


def test_the_concealed_text_names_no_registration_state() -> None:
    for word in ("unknown", "revoked", "expired", "registered lab", "conflict", "owner"):
        assert word not in AUTHENTICATION_FAILED_DETAIL.lower()


def test_answer_fields_conceal_unless_given_the_authenticated_sender() -> None:
    precise = Refusal(RejectionReason.REVOKED_KEY, "key k1 of lab a was revoked at 12:00")
    assert answer_fields(precise)["reason"] is RejectionReason.AUTHENTICATION_FAILED
    assert answer_fields(precise, SENDER)["detail"] == precise.detail


def test_answer_fields_fit_the_rejection_contract_whatever_the_refusal_holds() -> None:
    hostile = Refusal(
        RejectionReason.SCHEMA_VIOLATION,
        "x" * 10_000 + "\x00\ud800",
        tuple(field_error("data." + "p" * 900 + "\x00", "m" * 2000) for _ in range(300)),
    )
    rejection = SubmissionRejected(
        **answer_fields(hostile), rejected_event_id="e1", rejected_at=T0, lab_id=None
    )
    assert len(rejection.detail) == 4000
    assert len(rejection.field_errors) == 100
    assert "\x00" not in rejection.field_errors[0].path
    rejection.model_dump_json()  # serialisable: no lone surrogate left


def test_an_empty_detail_is_replaced_by_the_reason_code() -> None:
    assert answer_fields(Refusal(RejectionReason.MALFORMED, ""))["detail"] == "malformed"


def test_storable_text_escapes_nul_and_lone_surrogates() -> None:
    assert storable("a\x00b\ud800c") == "a\\x00b\\ud800c"
    assert storable("é ✓") == "é ✓"


def test_field_errors_are_clipped_to_the_contract() -> None:
    error = field_error("p" * 600, "m" * 1200)
    assert isinstance(error, FieldError)
    assert (len(error.path), len(error.message)) == (500, 1000)
