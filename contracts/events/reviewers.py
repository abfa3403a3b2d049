"""Signed decisions of the agency's reviewers (topic reviewers.decisions, key submission_id).

A reviewer decides on an escalation with the reviewer CLI, which signs the decision
with the reviewer's registered Ed25519 key under the same rule as lab input: the
RFC 8785 canonical JSON of ``data`` as sent, without ``signature.value``. Like lab
input, these models forbid unknown fields at every level, so a typo in an order
file is a ``schema_violation`` the reviewer is told about, never a criterion
silently dropped from a restriction.

The risk service answers each decision on risk.events: EscalationDecided when it
accepts it, ReviewerDecisionRejected (with a reason code) when it refuses it.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import ConfigDict, Field, model_validator

from contracts.events.common import CanonicalUuid, Slug, Text
from contracts.events.lab import LabInput, LabSignature
from contracts.events.risk import (
    EscalationDecision,
    Exemption,
    RestrictionOrderSpec,
    RestrictionScope,
    ReviewerSignature,
)
from contracts.sensitivity import PUBLIC, RESTRICTED

FORBID = ConfigDict(extra="forbid")


class ReviewerExemption(Exemption):
    """An exemption in a reviewer's order (reviewer input: unknown fields forbidden)."""

    model_config = FORBID


class ReviewerScope(RestrictionScope):
    """The scope of a reviewer's order (reviewer input: unknown fields forbidden)."""

    model_config = FORBID

    exemptions: list[ReviewerExemption] = Field(  # type: ignore[assignment]
        default_factory=list,
        max_length=1000,
        description="Principals/organisations never denied by this order.",
        json_schema_extra=RESTRICTED,
    )


class ReviewerOrder(RestrictionOrderSpec):
    """The restriction order a reviewer signs (reviewer input: unknown fields forbidden)."""

    model_config = FORBID

    scope: ReviewerScope = Field(description="Who is denied.")


class ReviewerSignatureInput(LabSignature, ReviewerSignature):
    """The reviewer's signature (reviewer input: unknown fields forbidden)."""

    model_config = FORBID


class ReviewerDecisionSubmitted(LabInput):
    """A reviewer's signed decision on an escalation.

    - ``restrict`` (confirm) carries the ``order`` to issue; it takes effect when the
      policy's number of distinct reviewers have signed the same order.
    - ``no_restriction`` (dismiss) and ``monitor`` (keep monitoring) conclude the
      escalation without an order, once enough reviewers signed the same decision.
    - ``lift_interim`` names the interim order to lift (``interim_order_id``); the
      escalation stays open.

    ``decision_id`` is the idempotency key: the identical decision re-sent is a
    duplicate; the same id with a different body is refused as ``conflict``.
    """

    TYPE: ClassVar[str] = "frontier_review.reviewers.ReviewerDecisionSubmitted"

    decision_id: CanonicalUuid = Field(
        description="Reviewer-chosen UUID; the idempotency key.", json_schema_extra=PUBLIC
    )
    escalation_id: CanonicalUuid = Field(
        description="The escalation decided.", json_schema_extra=PUBLIC
    )
    submission_id: CanonicalUuid = Field(
        description="The escalation's submission (the record key).", json_schema_extra=PUBLIC
    )
    reviewer_id: Slug = Field(description="The reviewer's registered id.")
    decision: EscalationDecision = Field(
        description="restrict, no_restriction (dismiss), monitor or lift_interim."
    )
    order: ReviewerOrder | None = Field(
        default=None, description="restrict only: the order to issue (scope and times)."
    )
    interim_order_id: CanonicalUuid | None = Field(
        default=None, description="lift_interim only: the interim order to lift."
    )
    justification: Text = Field(
        description="The reviewer's written justification.", json_schema_extra=RESTRICTED
    )
    signature: ReviewerSignatureInput = Field(
        description="Ed25519 signature over the canonical data (see the module doc)."
    )

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if (self.decision is EscalationDecision.RESTRICT) != (self.order is not None):
            raise ValueError("order is required for restrict and forbidden otherwise")
        if (self.decision is EscalationDecision.LIFT_INTERIM) != (
            self.interim_order_id is not None
        ):
            raise ValueError(
                "interim_order_id is required for lift_interim and forbidden otherwise"
            )
        return self
