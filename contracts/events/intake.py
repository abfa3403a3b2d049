"""Intake's decisions and the review-window clock (topic intake.events, key submission_id),
and the lab registry intake owns (topic intake.registry, compacted, key lab_id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from contracts.envelope import Event
from contracts.events.common import (
    EvaluationAccess,
    EventId,
    KeyId,
    ModelId,
    ModelInfo,
    Part,
    PolicyVersion,
    Rejection,
    Sha256Hex,
    ShortText,
    Slug,
    Text,
)
from contracts.sensitivity import INTERNAL, OWNER, PUBLIC, RESTRICTED

BODY_SHA256_DESCRIPTION = (
    "SHA-256 (hex) of the RFC 8785 canonical JSON of the SubmissionFiled data as sent, "
    "without its signature member: lets a lab match a decision to the body it sent. "
    "A re-sent identical submission (same body, new signature) is a duplicate and gets "
    "no second decision; the one with this digest stands, and is re-sent to the lab "
    "(duplicate_event_id)."
)


SIGNATURE_SHA256_DESCRIPTION = (
    "SHA-256 (hex) of the signature.value string of the input this answers, exactly as sent. "
    "Set only when that input authenticated: an answer carries it only for the signed input "
    "it is bound to, so a lab matches an answer by its CloudEvent id AND this digest, and an "
    "answer to someone else's record under a copied id (which can't carry it) is never "
    "taken for the answer to the lab's own."
)


DUPLICATE_EVENT_ID_DESCRIPTION = (
    "Set only on a copy of this decision that intake re-sent, on the lab's own answers feed, "
    "in answer to a duplicate filing (the same body under the same submission id, newly "
    "signed): the CloudEvent id of that duplicate, whose signature signature_sha256 then "
    "quotes. Every other field is the original decision's. intake.events carries each "
    "decision once, never a copy."
)


class AcceptanceReason(StrEnum):
    """Which coverage criterion made the model a covered model."""

    COVERED_BY_COMPUTE = "covered_by_compute"
    COVERED_BY_CAPABILITY = "covered_by_capability"
    COVERED_BY_COMPUTE_AND_CAPABILITY = "covered_by_compute_and_capability"


class SubmissionAccepted(Event):
    """The submission is a covered model, the signature checks out: the review window opens.

    deadline = accepted_at + review_days days, review_days = min(requested, 30).
    """

    TYPE: ClassVar[str] = "frontier_review.intake.SubmissionAccepted"

    submission_id: UUID = Field(description="The accepted submission.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The submitting lab (verified).", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(
        description="Assigned model id <lab_id>/<name>@<version>.", json_schema_extra=PUBLIC
    )
    model: ModelInfo = Field(
        description="The model as the lab declared it.", json_schema_extra=PUBLIC
    )
    evaluation_access: EvaluationAccess = Field(
        description="Endpoint and credential reference for the evaluations.",
        json_schema_extra=RESTRICTED,
    )
    reason: AcceptanceReason = Field(
        description="Why the model is covered.", json_schema_extra=OWNER
    )
    detail: Text = Field(
        description="Human-readable explanation of the decision.", json_schema_extra=OWNER
    )
    criteria_version: PolicyVersion = Field(
        description="Version of the coverage criteria config that decided.", json_schema_extra=OWNER
    )
    requested_review_days: int = Field(
        ge=1, le=30, description="What the lab asked for.", json_schema_extra=OWNER
    )
    review_days: int = Field(
        ge=1, le=30, description="Granted window: min(requested, 30) days.", json_schema_extra=OWNER
    )
    accepted_at: AwareDatetime = Field(
        description="Decision time; the window opens.", json_schema_extra=PUBLIC
    )
    deadline: AwareDatetime = Field(
        description="When the window closes (accepted_at + review_days).", json_schema_extra=PUBLIC
    )
    filed_event_id: EventId = Field(
        description="CloudEvent id of the SubmissionFiled.", json_schema_extra=OWNER
    )
    body_sha256: Sha256Hex | None = Field(
        default=None, description=BODY_SHA256_DESCRIPTION, json_schema_extra=OWNER
    )
    signature_sha256: Sha256Hex | None = Field(
        default=None, description=SIGNATURE_SHA256_DESCRIPTION, json_schema_extra=OWNER
    )
    duplicate_event_id: EventId | None = Field(
        default=None, description=DUPLICATE_EVENT_ID_DESCRIPTION, json_schema_extra=OWNER
    )

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.deadline <= self.accepted_at:
            raise ValueError("deadline must be after accepted_at")
        if self.review_days > self.requested_review_days:
            raise ValueError("review_days cannot exceed requested_review_days")
        return self


class _IntakeRejection(Rejection):
    submission_id: UUID | None = Field(
        default=None,
        description="The submission concerned, when it could be read and the input may speak "
        "for it (authenticated, from the lab that filed it). Else null, and the record key is "
        "rejected_event_id: an unauthenticated input, or one about another lab's submission, "
        "is answered to its sender and leaves that submission's record alone.",
        json_schema_extra=PUBLIC,
    )
    lab_id: Slug | None = Field(
        default=None,
        description="Lab id as claimed by the input (not verified).",
        json_schema_extra=OWNER,
    )
    signature_sha256: Sha256Hex | None = Field(
        default=None, description=SIGNATURE_SHA256_DESCRIPTION, json_schema_extra=OWNER
    )

    @model_validator(mode="after")
    def _addressable(self) -> Self:
        if self.submission_id is None and self.rejected_event_id is None:
            raise ValueError("a rejection needs submission_id or rejected_event_id")
        return self


class SubmissionRejected(_IntakeRejection):
    """A SubmissionFiled was refused; reason code, text and failing field paths tell why."""

    TYPE: ClassVar[str] = "frontier_review.intake.SubmissionRejected"

    body_sha256: Sha256Hex | None = Field(
        default=None,
        description=BODY_SHA256_DESCRIPTION + " Set when the refused body could be read.",
        json_schema_extra=OWNER,
    )
    duplicate_event_id: EventId | None = Field(
        default=None, description=DUPLICATE_EVENT_ID_DESCRIPTION, json_schema_extra=OWNER
    )


class WithdrawalRejected(_IntakeRejection):
    """A WithdrawalRequested was refused (bad signature, unknown submission, already decided...)."""

    TYPE: ClassVar[str] = "frontier_review.intake.WithdrawalRejected"


class SubmissionWithdrawn(Event):
    """The lab withdrew the submission: its window clock and evaluations are cancelled."""

    TYPE: ClassVar[str] = "frontier_review.intake.SubmissionWithdrawn"

    submission_id: UUID = Field(description="The withdrawn submission.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The lab that withdrew it.", json_schema_extra=PUBLIC)
    model_id: ModelId | None = Field(
        default=None,
        description="Model id, when the submission had been accepted.",
        json_schema_extra=PUBLIC,
    )
    reason: Text | None = Field(
        default=None, description="The lab's stated reason.", json_schema_extra=OWNER
    )
    withdrawn_at: AwareDatetime = Field(
        description="When intake recorded the withdrawal.", json_schema_extra=OWNER
    )
    requested_event_id: EventId = Field(
        description="CloudEvent id of the WithdrawalRequested.", json_schema_extra=OWNER
    )
    signature_sha256: Sha256Hex | None = Field(
        default=None, description=SIGNATURE_SHA256_DESCRIPTION, json_schema_extra=OWNER
    )


class ReviewWindowClosed(Event):
    """The review window reached its deadline.

    Exactly once per accepted submission that was not withdrawn.
    """

    TYPE: ClassVar[str] = "frontier_review.intake.ReviewWindowClosed"

    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The submitting lab.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model under review.", json_schema_extra=PUBLIC)
    deadline: AwareDatetime = Field(description="The scheduled deadline.", json_schema_extra=PUBLIC)
    closed_at: AwareDatetime = Field(
        description="When the clock fired (at or shortly after the deadline).",
        json_schema_extra=OWNER,
    )


# --- intake.registry: the lab registry as the agency's other services receive it -------

Base64Ed25519PublicKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
MAX_LAB_KEYS = 1000


class LabStatus(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"


class LabKeyEntry(Part):
    """One of a lab's Ed25519 public keys as intake's registry holds it (never a secret)."""

    key_id: KeyId = Field(
        description="The key id the lab puts in signature.key_id; never reused.",
        json_schema_extra=INTERNAL,
    )
    public_key: Base64Ed25519PublicKey = Field(
        description="The raw 32-byte Ed25519 public key, base64.", json_schema_extra=INTERNAL
    )
    valid_from: AwareDatetime = Field(
        description="From when the key may sign (judged at the broker's append time).",
        json_schema_extra=INTERNAL,
    )
    valid_until: AwareDatetime | None = Field(
        default=None,
        description="When the key stops being valid (a rotation ends the old keys after its "
        "overlap); none: no end.",
        json_schema_extra=INTERNAL,
    )
    revoked_at: AwareDatetime | None = Field(
        default=None,
        description="When the key was revoked (final: nothing it signs is accepted after it); "
        "none: not revoked.",
        json_schema_extra=INTERNAL,
    )


class LabRegistryChanged(Event):
    """A lab's whole registry entry, after a change of it (compacted: latest per lab wins).

    Intake owns the lab registry (``frontier-review labs ...``) and writes this
    event to its outbox in the transaction of every change (register, remove,
    key add, rotate, revoke), so none is lost and none is announced that did not
    commit. It carries the state, not the change: the entry's status and every
    key the lab was ever given, so the latest record per lab, which compaction
    keeps, is all a reader needs, and a reader replaying the topic from the start
    (access, to verify the labs' compliance acknowledgements) rebuilds the
    registry. ``version`` grows by one with every change of the lab's entry; a
    reader applies a snapshot only if its version is higher than the one it
    applied last, so a duplicate or older record changes nothing. A removed lab
    stays on the topic (never a tombstone): its id is never registered again.
    """

    TYPE: ClassVar[str] = "frontier_review.intake.LabRegistryChanged"

    lab_id: Slug = Field(description="The lab (the record key).", json_schema_extra=INTERNAL)
    version: int = Field(
        ge=1,
        description="Per-lab version of the entry, +1 on every change of it.",
        json_schema_extra=INTERNAL,
    )
    status: LabStatus = Field(
        description="active: registered; removed: removed for good, every key revoked.",
        json_schema_extra=INTERNAL,
    )
    name: ShortText = Field(description="The lab's display name.", json_schema_extra=INTERNAL)
    registered_at: AwareDatetime = Field(
        description="When the lab was registered.", json_schema_extra=INTERNAL
    )
    removed_at: AwareDatetime | None = Field(
        default=None,
        description="When it was removed (status removed).",
        json_schema_extra=INTERNAL,
    )
    keys: list[LabKeyEntry] = Field(
        max_length=MAX_LAB_KEYS,
        description="Every key the lab was ever given, revoked ones included.",
        json_schema_extra=INTERNAL,
    )
    changed_at: AwareDatetime = Field(
        description="When the change was made.", json_schema_extra=INTERNAL
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.status is LabStatus.REMOVED) != (self.removed_at is not None):
            raise ValueError("removed_at is set exactly when the status is removed")
        if self.status is LabStatus.REMOVED and any(k.revoked_at is None for k in self.keys):
            raise ValueError("a removed lab's keys are all revoked")
        if len({k.key_id for k in self.keys}) != len(self.keys):
            raise ValueError("a key id appears once")
        return self
