"""Intake's decisions: accept or refuse a filing, withdraw, close a window.

Plain functions over contract models: the handlers feed them what the
repository found and publish what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from contracts import ContractViolation
from contracts.events.common import RejectionReason, make_model_id
from contracts.events.intake import (
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.events.lab import SubmissionFiled, WithdrawalRequested
from services.intake.criteria import CoverageCriteria, assess_coverage
from services.intake.model import FiledSubmission, SubmissionState
from services.trust.credentials import check_credential_ref
from services.trust.refusal import Refusal, answer_fields, shape_refusal
from services.trust.verifier import Authenticated

MAX_TEXT = 4000
MAX_REVIEW_DAYS = 30
# The durable timer (runtime) that closes a submission's review window at its deadline.
REVIEW_WINDOW = "review-window"


def review_days(requested: int) -> int:
    """The window the agency grants: what the lab asked for, at most 30 days."""
    return min(requested, MAX_REVIEW_DAYS)


def window_length(days: int, seconds_per_day: float) -> timedelta:
    return timedelta(seconds=days * seconds_per_day)


def text(value: str) -> str:
    """Fit a human-readable text into the contract's Text (1..4000 characters)."""
    return (value or "-")[:MAX_TEXT]


def invalid_input_refusal(violation: ContractViolation) -> Refusal:
    """What to tell the sender of bytes that are not a valid lab event (a shape error)."""
    return shape_refusal(
        violation, "lab.submissions carries SubmissionFiled and WithdrawalRequested only"
    )


def decide_filing(
    filed: SubmissionFiled,
    *,
    event_id: str,
    body_sha256: str,
    signature_sha256: str,
    criteria: CoverageCriteria,
    now: datetime,
    seconds_per_day: float,
    endpoint_refusal: Refusal | None,
) -> SubmissionAccepted | Refusal:
    """Accept a covered model with the lab's own credential and an allowed endpoint.

    ``endpoint_refusal`` is the endpoint policy's verdict (it resolves the host, so
    the handler asks it). The window opens now.
    """
    refusal = (
        check_credential_ref(filed.evaluation_access.credential_ref, filed.lab_id)
        or endpoint_refusal
    )
    if refusal is not None:
        return refusal
    coverage = assess_coverage(filed.model, criteria)
    if coverage.reason is None:
        return Refusal(RejectionReason.NOT_COVERED_MODEL, coverage.detail)
    days = review_days(filed.requested_review_days)
    deadline = now + window_length(days, seconds_per_day)
    return SubmissionAccepted(
        submission_id=filed.submission_id,
        lab_id=filed.lab_id,
        model_id=make_model_id(filed.lab_id, filed.model.name, filed.model.version),
        model=filed.model,
        evaluation_access=filed.evaluation_access,
        reason=coverage.reason,
        detail=text(
            f"{coverage.detail}; review window of {days} days until {deadline:%Y-%m-%d %H:%M:%S %Z}"
        ),
        criteria_version=criteria.version,
        requested_review_days=filed.requested_review_days,
        review_days=days,
        accepted_at=now,
        deadline=deadline,
        filed_event_id=event_id,
        body_sha256=body_sha256,
        signature_sha256=signature_sha256,
    )


def filed_by(existing: FiledSubmission | None, lab_id: str) -> bool:
    """Only the lab that filed a submission adds to its record and hears under its id."""
    return existing is not None and existing.lab_id == lab_id


@dataclass(frozen=True)
class Duplicate:
    """The same body again: no second decision; a history entry, and the original
    decision re-sent to the lab (``reanswer``), within the hourly limit."""

    detail: str


def reanswer(
    original: SubmissionAccepted | SubmissionRejected, *, event_id: str, signature_sha256: str
) -> SubmissionAccepted | SubmissionRejected:
    """The original decision as the answer to a duplicate of its filing: bound to the
    duplicate's signature and naming it (``duplicate_event_id``), all else unchanged."""
    return original.model_copy(
        update={"duplicate_event_id": event_id, "signature_sha256": signature_sha256}
    )


def decide_refiling(
    filed: SubmissionFiled, existing: FiledSubmission, body_sha256: str
) -> Duplicate | Refusal:
    """Same id again: a duplicate for an identical body, else a conflict.

    Another lab learns only that the id is taken: not the filing's event id nor its state.
    """
    if not filed_by(existing, filed.lab_id):
        return Refusal(
            RejectionReason.CONFLICT,
            f"submission id {filed.submission_id} is already taken; "
            "file your submission under a new submission_id",
        )
    if existing.body_sha256 == body_sha256:
        return Duplicate(
            text(
                f"identical to event {existing.filed_event_id}; the original "
                f"outcome ({existing.state}: {existing.reason}) stands"
            )
        )
    return Refusal(
        RejectionReason.CONFLICT,
        f"submission {existing.submission_id} was already filed (event {existing.filed_event_id}) "
        f"with a different body; its outcome ({existing.state}) stands. "
        "File a different submission under a new submission_id.",
    )


def decide_withdrawal(
    request: WithdrawalRequested, existing: FiledSubmission | None, now: datetime
) -> Refusal | None:
    """A lab may withdraw its own accepted submission while the review window is open.

    The window is closed from its deadline on, whether or not the clock has run yet.
    """
    if existing is None:
        return Refusal(
            RejectionReason.UNKNOWN_SUBMISSION,
            f"no filed submission {request.submission_id} (rejected inputs do not file one)",
        )
    if not filed_by(existing, request.lab_id):
        return Refusal(
            RejectionReason.NOT_OWNER,
            f"submission {request.submission_id} was not filed by lab {request.lab_id!r}",
        )
    if existing.state is not SubmissionState.ACCEPTED:
        return Refusal(
            RejectionReason.INVALID_STATE,
            f"submission {request.submission_id} is {existing.state}; only an accepted "
            "submission whose review window is open can be withdrawn",
        )
    if existing.deadline is not None and existing.deadline <= now:
        return Refusal(
            RejectionReason.INVALID_STATE,
            f"submission {request.submission_id} can no longer be withdrawn: its review "
            f"window closed at {existing.deadline.isoformat()}",
        )
    return None


def withdrawn_detail(request: WithdrawalRequested) -> str:
    return text(
        f"withdrawn by lab {request.lab_id}; review window cancelled"
        + (f": {request.reason}" if request.reason else "")
    )


def rejection(
    kind: type[SubmissionRejected] | type[WithdrawalRejected],
    refusal: Refusal,
    *,
    sender: Authenticated | None,
    submission_id: UUID | None,
    lab_id: str | None,
    event_id: str | None,
    now: datetime,
    body_sha256: str | None = None,
    trusted: bool = True,
) -> SubmissionRejected | WithdrawalRejected:
    """The answer to a refused input, as much of ``refusal`` as the sender may be told.

    A sender that did not authenticate (``sender`` None) learns only shape errors;
    anything else is ``authentication_failed`` (services.trust.refusal). ``trusted``
    is False when the input may not speak for the submission it names (not
    authenticated, or about another lab's submission): the answer then names only
    the refused event, so it is keyed by that id, not the submission's. Only an
    authenticated answer is bound to the signature it answers (``signature_sha256``).
    """
    speaks = trusted and sender is not None
    answer = kind(
        **answer_fields(refusal, sender),
        rejected_event_id=event_id,
        rejected_at=now,
        submission_id=submission_id if speaks or event_id is None else None,
        lab_id=lab_id,
        signature_sha256=sender.signature_sha256 if sender is not None else None,
    )
    if isinstance(answer, SubmissionRejected) and body_sha256 is not None:
        answer = answer.model_copy(update={"body_sha256": body_sha256})
    return answer


def withdrawn(
    request: WithdrawalRequested,
    existing: FiledSubmission,
    *,
    event_id: str,
    signature_sha256: str,
    now: datetime,
) -> SubmissionWithdrawn:
    return SubmissionWithdrawn(
        submission_id=request.submission_id,
        lab_id=request.lab_id,
        model_id=existing.model_id,
        reason=request.reason,
        withdrawn_at=now,
        requested_event_id=event_id,
        signature_sha256=signature_sha256,
    )


def window_closed(
    submission_id: UUID, lab_id: str, model_id: str, deadline: datetime, now: datetime
) -> ReviewWindowClosed:
    return ReviewWindowClosed(
        submission_id=submission_id,
        lab_id=lab_id,
        model_id=model_id,
        deadline=deadline,
        closed_at=now,
    )
