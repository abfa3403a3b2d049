"""Access policies and compliance (topics access.policies, compacted, and
access.events; key model_id)."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.envelope import Event
from contracts.events.common import ModelId, Part, PolicyVersion, Rejection, Sha256Hex, Slug, Text
from contracts.events.risk import NationalityRule
from contracts.sensitivity import OWNER, PUBLIC

MAX_POLICY_CHARS = 500_000


def policy_hash(cedar_policies: str) -> str:
    """content_hash of a policy text: SHA-256 of its UTF-8 bytes, lowercase hex."""
    return hashlib.sha256(cedar_policies.encode()).hexdigest()


class EnforcedOrder(Part):
    """One restriction order a policy version implements, with its time window.

    The window is also in the Cedar text (a ``context.now`` guard on each of the
    order's policies), so an order published ahead takes effect, and a time-limited
    one lapses, at the enforcer's clock without another publication.
    """

    order_id: UUID = Field(description="The order.", json_schema_extra=PUBLIC)
    effective_at: AwareDatetime = Field(
        description="From when the order denies.", json_schema_extra=PUBLIC
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the order lapses by itself (none: until lifted).",
        json_schema_extra=PUBLIC,
    )
    nationality_rule: NationalityRule = Field(
        description="The order's nationality rule (most_recent or any).", json_schema_extra=OWNER
    )
    interim: bool = Field(default=False, description="An interim order pending a decision.")


class AccessPolicyPublished(Event):
    """The current Cedar policy set of a model (compacted topic: latest per model wins).

    An enforcement point that reads access.policies from the start ends with the
    current policy of every model. Lifting the last order publishes a policy
    without restrictions (order_ids empty), never a tombstone. Orders effective in
    the future are in the text already, guarded by ``context.now``: enforcers apply
    them on time, and compaction never hides the version that is current now.
    """

    TYPE: ClassVar[str] = "frontier_review.access.AccessPolicyPublished"

    model_id: ModelId = Field(description="The model the policy governs.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The lab that must enforce it.", json_schema_extra=PUBLIC)
    policy_version: int = Field(
        ge=1, description="Per-model version, +1 on every publication.", json_schema_extra=PUBLIC
    )
    cedar_policies: str = Field(
        max_length=MAX_POLICY_CHARS,
        description="The Cedar policy set (text) to enforce.",
        json_schema_extra=OWNER,
    )
    order_ids: list[UUID] = Field(
        max_length=1000,
        description="The active restriction orders the policy implements.",
        json_schema_extra=PUBLIC,
    )
    content_hash: Sha256Hex = Field(
        description="SHA-256 (hex) of cedar_policies' UTF-8 bytes; acknowledgements quote it.",
        json_schema_extra=PUBLIC,
    )
    published_at: AwareDatetime = Field(description="When published.", json_schema_extra=PUBLIC)
    acknowledge_by: AwareDatetime = Field(
        description="Deadline for the lab's ComplianceAcknowledged; ComplianceOverdue after it.",
        json_schema_extra=OWNER,
    )
    orders: list[EnforcedOrder] = Field(
        default_factory=list,
        max_length=1000,
        description="The orders of order_ids with their time windows (empty in versions "
        "published before this field existed).",
        json_schema_extra=PUBLIC,
    )
    effective_at: AwareDatetime | None = Field(
        default=None,
        description="When the earliest of the orders takes effect (none: no orders).",
        json_schema_extra=PUBLIC,
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the last of the orders lapses (none: no orders, or some order "
        "lasts until lifted).",
        json_schema_extra=PUBLIC,
    )
    cedar_schema_version: Slug | None = Field(
        default=None,
        description="Version of the Cedar schema (principals, models, actions) the policy "
        "was validated against; an enforcer refuses a version it does not know.",
        json_schema_extra=PUBLIC,
    )
    country_groups_version: PolicyVersion | None = Field(
        default=None,
        description="Version of the agency's country-group table the orders were expanded with.",
        json_schema_extra=PUBLIC,
    )

    @model_validator(mode="after")
    def _hash(self) -> Self:
        if self.content_hash != policy_hash(self.cedar_policies):
            raise ValueError("content_hash does not match cedar_policies")
        if self.orders and sorted(o.order_id for o in self.orders) != sorted(self.order_ids):
            raise ValueError("orders must describe exactly the orders of order_ids")
        return self


class RestrictionLifted(Event):
    """A restriction order no longer applies (a reviewer lifted it, or it expired)."""

    TYPE: ClassVar[str] = "frontier_review.access.RestrictionLifted"

    order_id: UUID = Field(description="The lifted order.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(
        description="The submission of the order.", json_schema_extra=PUBLIC
    )
    reviewer_id: Slug | None = Field(
        default=None, description="Who lifted it (none when it expired by itself)."
    )
    reason: Text = Field(description="Why it was lifted.")
    policy_version: int | None = Field(
        default=None, ge=1, description="The policy version published without the order."
    )
    lifted_at: AwareDatetime = Field(description="When lifted.")


class ComplianceOverdue(Event):
    """A lab did not acknowledge a published policy by its deadline."""

    TYPE: ClassVar[str] = "frontier_review.access.ComplianceOverdue"

    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The lab that must enforce.", json_schema_extra=PUBLIC)
    policy_version: int = Field(ge=1, description="The unacknowledged policy version.")
    content_hash: Sha256Hex = Field(description="Its content hash.")
    order_ids: list[UUID] = Field(max_length=1000, description="The orders it implements.")
    published_at: AwareDatetime = Field(description="When the policy was published.")
    acknowledge_by: AwareDatetime = Field(description="The missed deadline.")
    detected_at: AwareDatetime = Field(description="When the access service noticed.")


class ComplianceRejected(Rejection):
    """A ComplianceAcknowledged was refused (bad signature, unknown or mismatching policy...)."""

    TYPE: ClassVar[str] = "frontier_review.access.ComplianceRejected"

    model_id: ModelId | None = Field(
        default=None,
        description="The model named, when readable; else the key is rejected_event_id.",
        json_schema_extra=PUBLIC,
    )
    lab_id: Slug | None = Field(
        default=None, description="Lab id as claimed (not verified).", json_schema_extra=OWNER
    )
    policy_version: int | None = Field(
        default=None, ge=1, description="Version acknowledged.", json_schema_extra=OWNER
    )
    signature_sha256: Sha256Hex | None = Field(
        default=None,
        description="SHA-256 (hex) of the signature.value string of the acknowledgement this "
        "answers, exactly as sent; set only when it authenticated, so the lab takes as its "
        "answer only one bound to what it signed.",
        json_schema_extra=OWNER,
    )

    @model_validator(mode="after")
    def _addressable(self) -> Self:
        if self.model_id is None and self.rejected_event_id is None:
            raise ValueError("a rejection needs model_id or rejected_event_id")
        return self
