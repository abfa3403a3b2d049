"""Signed input published by labs (lab.submissions, lab.compliance) and by
external evaluators (evaluators.findings).

These models are the lab-facing contract: they forbid unknown fields, at every
level, so a typo in a lab's manifest is a ``schema_violation`` the lab hears
about instead of a field silently ignored. They are ``EXTERNAL``: ``decode``
validates them strictly (no coercion: ``"30"`` is not an integer), refuses
duplicate member names, and takes UUIDs only in canonical form
(``CanonicalUuid``), so every id the answer names is the text the sender signed.

Signing rule (intake and access verify it, the lab client implements it):
``signature.value`` is the Ed25519 signature, by the key ``signature.key_id``
registered for the sender, over the RFC 8785 canonical JSON of the CloudEvent's
``data`` object as sent, with only ``signature.value`` removed. Key id,
algorithm, ``issued_at`` and ``nonce`` are thereby signed too, so a captured
event cannot be replayed under a fresh nonce. The envelope is not signed: the
verifier checks that the CloudEvent ``subject`` equals the signed submission id
(model id on lab.compliance), else ``subject_mismatch``. Use
``SignedEvent.signing_bytes()`` to produce and ``signing_input(data)`` on the
received JSON to verify.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints

from contracts.events.common import (
    CanonicalUuid,
    ContactRole,
    EvaluationAccess,
    EvaluationMethod,
    ModelId,
    ModelInfo,
    Part,
    RiskDomain,
    Sha256Hex,
    ShortText,
    Signature,
    SignedEvent,
    Slug,
    Text,
)
from contracts.sensitivity import PUBLIC, RESTRICTED

FORBID = ConfigDict(extra="forbid")

Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]


class LabSignature(Signature):
    """Ed25519 signature of lab-published (or external evaluator) input; see the module doc."""

    model_config = FORBID


class LabModelInfo(ModelInfo):
    """The model under review (lab input: unknown fields forbidden)."""

    model_config = FORBID


class LabEvaluationAccess(EvaluationAccess):
    """How the agency reaches the model (lab input: unknown fields forbidden)."""

    model_config = FORBID


class Contact(Part):
    """A person the agency may contact about the submission."""

    model_config = FORBID

    name: ShortText = Field(description="Full name.", json_schema_extra=RESTRICTED)
    email: Email = Field(description="E-mail address.", json_schema_extra=RESTRICTED)
    role: ContactRole = Field(description="What to contact this person about.")
    phone: Phone | None = Field(
        default=None, description="Phone number in E.164 form.", json_schema_extra=RESTRICTED
    )


class LabInput(SignedEvent):
    """Base of signed lab-facing input: unknown fields are a schema violation."""

    model_config = FORBID
    EXTERNAL: ClassVar[bool] = True

    signature: LabSignature = Field(
        description="Ed25519 signature over the canonical data (see the module doc)."
    )


class SubmissionFiled(LabInput):
    """A lab submits a model for pre-release review (topic lab.submissions, key submission_id).

    Re-sending the identical event is a duplicate (the original outcome stands);
    the same submission_id with a different body is rejected as ``conflict``.
    """

    TYPE: ClassVar[str] = "frontier_review.lab.SubmissionFiled"

    submission_id: CanonicalUuid = Field(
        description="Lab-chosen UUID; the idempotency key and the record key.",
        json_schema_extra=PUBLIC,
    )
    lab_id: Slug = Field(description="The lab's registered id.", json_schema_extra=PUBLIC)
    model: LabModelInfo = Field(description="The model under review.", json_schema_extra=PUBLIC)
    evaluation_access: LabEvaluationAccess = Field(
        description="Endpoint and credential reference the evaluations use.",
        json_schema_extra=RESTRICTED,
    )
    requested_review_days: int = Field(
        ge=1,
        le=30,
        description="Requested review window in days; the window is min(requested, 30) days.",
    )
    contacts: list[Contact] = Field(
        min_length=1, max_length=20, description="People to contact.", json_schema_extra=RESTRICTED
    )
    notes: Text | None = Field(default=None, description="Free text for the reviewers.")


class WithdrawalRequested(LabInput):
    """A lab withdraws its submission (allowed until a reviewer decision)."""

    TYPE: ClassVar[str] = "frontier_review.lab.WithdrawalRequested"

    submission_id: CanonicalUuid = Field(
        description="The submission to withdraw.", json_schema_extra=PUBLIC
    )
    lab_id: Slug = Field(description="The lab that filed it.", json_schema_extra=PUBLIC)
    reason: Text | None = Field(default=None, description="Why the lab withdraws.")


class ComplianceAcknowledged(LabInput):
    """A lab confirms it enforces a published access policy (topic lab.compliance, key model_id)."""

    TYPE: ClassVar[str] = "frontier_review.lab.ComplianceAcknowledged"

    model_id: ModelId = Field(description="The restricted model.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The acknowledging lab.", json_schema_extra=PUBLIC)
    policy_version: int = Field(ge=1, description="AccessPolicyPublished.policy_version enforced.")
    content_hash: Sha256Hex = Field(
        description="AccessPolicyPublished.content_hash of the enforced policy text."
    )
    order_ids: list[CanonicalUuid] = Field(
        max_length=1000, description="Restriction orders the enforced policy implements."
    )
    enforced_at: AwareDatetime = Field(description="Since when the policy is enforced.")
    enforcement_points: list[ShortText] = Field(
        min_length=1,
        max_length=100,
        description="Names of the lab's enforcement points running this policy version.",
    )


class ExternalFindingSubmitted(LabInput):
    """An external evaluator (red team) reports a manual finding (topic evaluators.findings).

    Signed like lab input, with a key registered for the evaluator. The
    evaluation service validates it and records it as a FindingRecorded with
    method ``manual``, or answers with ExternalFindingRejected.
    """

    TYPE: ClassVar[str] = "frontier_review.evaluators.ExternalFindingSubmitted"

    external_finding_id: CanonicalUuid = Field(
        description="Evaluator-chosen UUID; the idempotency key.", json_schema_extra=PUBLIC
    )
    submission_id: CanonicalUuid = Field(
        description="The submission evaluated.", json_schema_extra=PUBLIC
    )
    evaluator_id: Slug = Field(description="The evaluator's registered id.")
    domain: RiskDomain = Field(description="Risk domain of the finding.", json_schema_extra=PUBLIC)
    capability: Slug = Field(description="Capability probed.", json_schema_extra=PUBLIC)
    method: EvaluationMethod = Field(
        default=EvaluationMethod.MANUAL, description="How it was found (normally manual)."
    )
    score: float = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Metric value normalised to [0, 1]; higher means more capable.",
        json_schema_extra=PUBLIC,
    )
    metric: Slug = Field(description="What the score measures, e.g. success_rate.")
    samples_total: int | None = Field(default=None, ge=0, description="Attempts made, if counted.")
    summary: Text = Field(description="What was found and how.", json_schema_extra=RESTRICTED)
    evidence_ref: ShortText = Field(
        description="Where the evidence is kept (URI in the agency's evidence store).",
        json_schema_extra=RESTRICTED,
    )
    observed_at: AwareDatetime = Field(description="When the behaviour was observed.")
