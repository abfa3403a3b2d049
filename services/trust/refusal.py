"""``Refusal``, the one type for every "no", and what of it a sender may be told.

A refusal is always built with the precise reason: that is what the operator's
log and the registered sender's own view keep. What is *published* to a sender
is decided by ``public_refusal``: a sender that has not been authenticated
learns the precise reason only when it describes the shape of the bytes it sent
(not JSON, not a CloudEvent, a schema violation...), which tells nothing about
who is registered. Every other reason (unknown sender or key, revoked or expired
key, bad signature, stale, future or replayed signature, and any reason about
existing state, e.g. ``conflict`` or ``not_owner``, which would confirm that an
id exists) becomes ``authentication_failed`` with one fixed text and no field
errors. It is an allowlist: a reason added later is concealed until someone
decides it is safe to show.

The safe answer is the default: ``answer_fields(refusal)`` conceals; only an
``Authenticated`` sender (returned by ``services.trust.verifier.authenticate``
and by nothing else) gets the precise reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from contracts.events.common import FieldError, RejectionReason, field_errors

if TYPE_CHECKING:
    from contracts import ContractViolation
    from services.trust.verifier import Authenticated

MAX_DETAIL = 4000  # contracts' Text
MAX_FIELD_ERRORS = 100  # Rejection.field_errors
MAX_PATH = 500  # FieldError.path
MAX_MESSAGE = 1000  # FieldError.message

AUTHENTICATION_FAILED_DETAIL = (
    "the input could not be authenticated. Check that the sender id and signature.key_id "
    "name a registered, valid key of yours, that the signature covers the data as sent "
    "(RFC 8785, without signature.value), that signature.issued_at is current and that the "
    "nonce is new. The agency's operator can tell a registered sender the precise reason."
)

SHAPE_REASONS = frozenset(
    {
        RejectionReason.MALFORMED_JSON,
        RejectionReason.INVALID_ENVELOPE,
        RejectionReason.UNKNOWN_EVENT_TYPE,
        RejectionReason.SCHEMA_VIOLATION,
        RejectionReason.OVERSIZED,
        RejectionReason.MALFORMED,
        RejectionReason.SUBJECT_MISMATCH,
    }
)
"""Reasons about the bytes alone: safe to tell anyone who sent them."""


def storable(text: str) -> str:
    """``text`` with what PostgreSQL and UTF-8 refuse (NUL, lone surrogates) escaped.

    Member names and values of hostile input end up in details and field paths.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def field_error(path: str, message: str) -> FieldError:
    """A FieldError that is storable and within the contract's limits."""
    return FieldError(path=storable(path)[:MAX_PATH], message=storable(message)[:MAX_MESSAGE])


@dataclass(frozen=True)
class Refusal:
    """Why an input or a command is refused: reason code, a human text, failing fields."""

    reason: RejectionReason
    detail: str
    field_errors: tuple[FieldError, ...] = ()

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


_SHAPE_TEXT = {
    "oversized": "the record is larger than the agency accepts",
    "invalid_envelope": "the record is not a valid CloudEvent",
    "unknown_event_type": "the topic does not carry this event type",
    "schema_violation": "the event does not match its contract",
    "malformed_json": "the record is not valid JSON",
}


def shape_refusal(violation: ContractViolation, carries: str | None = None) -> Refusal:
    """The refusal of bytes that failed decoding: a shape error, safe to tell as it is.

    A decode reason the contract has no rejection code for is ``malformed``;
    ``carries`` says what the topic carries, for an unknown event type (e.g.
    "lab.compliance carries ComplianceAcknowledged only").
    """
    try:
        reason = RejectionReason(violation.reason)
    except ValueError:
        reason = RejectionReason.MALFORMED
    what = _SHAPE_TEXT.get(violation.reason, violation.reason)
    if reason is RejectionReason.UNKNOWN_EVENT_TYPE and carries:
        what = carries
    errors = field_errors(violation)[:MAX_FIELD_ERRORS]
    return Refusal(
        reason,
        storable(f"{what}: {violation.detail}")[:MAX_DETAIL],
        tuple(field_error(e.path, e.message) for e in errors),
    )


CONCEALED = Refusal(RejectionReason.AUTHENTICATION_FAILED, AUTHENTICATION_FAILED_DETAIL)


def public_refusal(refusal: Refusal, sender: Authenticated | None = None) -> Refusal:
    """What the sender may be told: the precise refusal, or ``CONCEALED``.

    ``sender`` is the principal the input authenticated as, or None when it did not
    authenticate (then only the reasons in ``SHAPE_REASONS`` are told as they are).
    """
    if sender is not None or refusal.reason in SHAPE_REASONS:
        return refusal
    return CONCEALED


class AnswerFields(TypedDict):
    """The part every rejection event shares (``contracts.events.common.Rejection``)."""

    reason: RejectionReason
    detail: str
    field_errors: list[FieldError]


def answer_fields(refusal: Refusal, sender: Authenticated | None = None) -> AnswerFields:
    """``reason``, ``detail`` and ``field_errors`` of the published answer, within the
    contract's limits, after ``public_refusal``: ``SubmissionRejected(**answer_fields(r), ...)``.
    """
    told = public_refusal(refusal, sender)
    return AnswerFields(
        reason=told.reason,
        detail=storable(told.detail)[:MAX_DETAIL] or told.reason.value,
        field_errors=list(told.field_errors[:MAX_FIELD_ERRORS]),
    )
