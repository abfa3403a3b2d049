"""The answer to "may this principal do this with this model now?", as both sides return it."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.policy.cedar import Action


class DecisionBasis(StrEnum):
    """What the decision rests on."""

    POLICY = "policy"  # the model's published Cedar policy was evaluated
    UNRESTRICTED = "unrestricted"  # no policy was ever published for the model: allowed
    NOT_READY = "not_ready"  # the enforcer has not caught up with the policy feed: denied
    UNUSABLE_POLICY = "unusable_policy"  # the model's latest policy cannot be used: denied
    EVALUATION_ERROR = "evaluation_error"  # Cedar reported an error: denied (fail closed)


class DecisionReason(BaseModel):
    """One reason: a Cedar policy that determined the decision, or the enforcer's own."""

    model_config = ConfigDict(frozen=True)

    policy_id: str = Field(description='The policy\'s @id, e.g. "order:<uuid>:nationality".')
    order_id: UUID | None = Field(default=None, description="The order the policy enforces.")
    criterion: str | None = Field(default=None, description="The scope criterion, if any.")
    kind: str | None = Field(default=None, description="baseline, match or unknown.")
    text: str = Field(description="Human-readable reason (the policy's @reason annotation).")
    missing_attributes: list[str] = Field(
        default_factory=list, description="Attributes whose absence made the policy deny."
    )


class Decision(BaseModel):
    """Allow or deny, why, under which policy version, when."""

    model_config = ConfigDict(frozen=True)

    allowed: bool = Field(description="True: allowed; false: denied.")
    model_id: str = Field(description="The model asked about.")
    action: Action = Field(description="The action asked about.")
    basis: DecisionBasis = Field(description="What the decision rests on.")
    policy_version: int | None = Field(
        default=None, description="The model's policy version applied (none: no policy)."
    )
    content_hash: str | None = Field(default=None, description="That version's content hash.")
    decided_at: AwareDatetime = Field(description="The decision time (orders' windows use it).")
    reasons: list[DecisionReason] = Field(
        default_factory=list, description="The determining policies (deny: every matching one)."
    )

    @property
    def order_ids(self) -> list[UUID]:
        """The orders that denied (empty for an allow)."""
        found = {r.order_id for r in self.reasons if r.order_id is not None and not self.allowed}
        return sorted(found)
