"""Risk assessment, escalation, reviewer decisions and restriction orders
(topic risk.events, key submission_id)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.envelope import Event
from contracts.events.common import (
    CountryCode,
    ModelId,
    Part,
    PolicyVersion,
    RiskDomain,
    RiskLevel,
    ShortText,
    Signature,
    SignedEvent,
    Slug,
    Text,
)
from contracts.sensitivity import INTERNAL, PUBLIC, RESTRICTED


class DomainAssessment(Part):
    """The level of one domain and the findings that drove it."""

    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    level: RiskLevel = Field(description="Assessed level.", json_schema_extra=PUBLIC)
    finding_ids: list[UUID] = Field(
        max_length=1000,
        description="The findings that drove the level (empty: no finding reached a threshold).",
        json_schema_extra=PUBLIC,
    )
    rationale: Text = Field(
        description="Which thresholds of the policy were met, e.g. 'cyber-ctf 0.82 >= 0.7 (high)'."
    )


class RiskAssessed(Event):
    """The thresholds policy applied to a submission's findings."""

    TYPE: ClassVar[str] = "frontier_review.risk.RiskAssessed"

    assessment_id: UUID = Field(description="Unique assessment id.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    policy_version: PolicyVersion = Field(
        description="Version of the thresholds policy applied.", json_schema_extra=PUBLIC
    )
    domains: list[DomainAssessment] = Field(
        min_length=1,
        max_length=len(RiskDomain) * 4,
        description="One entry per assessed domain.",
        json_schema_extra=PUBLIC,
    )
    overall_level: RiskLevel = Field(
        description="Highest level over the domains.", json_schema_extra=PUBLIC
    )
    escalation_required: bool = Field(
        description="Some national-security domain is at or above the escalation bar."
    )
    evaluation_incomplete: bool = Field(
        default=False, description="Some planned suites did not complete (window closed, failed)."
    )
    assessed_at: AwareDatetime = Field(description="When assessed.", json_schema_extra=PUBLIC)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        domains = [d.domain for d in self.domains]
        if len(set(domains)) != len(domains):
            raise ValueError("each domain is assessed at most once")
        if self.overall_level.rank != max(d.level.rank for d in self.domains):
            raise ValueError("overall_level must be the highest domain level")
        return self


class EscalationRaised(Event):
    """A level at or above the escalation bar needs a reviewer's decision."""

    TYPE: ClassVar[str] = "frontier_review.risk.EscalationRaised"

    escalation_id: UUID = Field(description="Unique escalation id.", json_schema_extra=PUBLIC)
    assessment_id: UUID = Field(
        description="The RiskAssessed that raised it.", json_schema_extra=PUBLIC
    )
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    domains: list[RiskDomain] = Field(
        min_length=1, max_length=len(RiskDomain), description="The escalated domains."
    )
    level: RiskLevel = Field(description="Highest escalated level.")
    escalation_bar: RiskLevel = Field(description="The policy's escalation bar.")
    finding_ids: list[UUID] = Field(
        max_length=1000, description="The findings behind the escalated levels."
    )
    policy_version: PolicyVersion = Field(description="Thresholds policy version.")
    interim_restriction: bool = Field(
        description="An interim RestrictionOrdered follows, pending the decision (critical level)."
    )
    decide_by: AwareDatetime | None = Field(
        default=None, description="When a decision is due, if the policy sets a deadline."
    )
    raised_at: AwareDatetime = Field(description="When raised.")


class EscalationDecision(StrEnum):
    RESTRICT = "restrict"
    NO_RESTRICTION = "no_restriction"


class ReviewerSignature(Signature):
    """Ed25519 signature of the reviewer over the decision (same rule as lab input:
    RFC 8785 canonical JSON of ``data`` without ``signature.value``)."""


class EscalationDecided(SignedEvent):
    """A reviewer's signed decision on an escalation; also written to the hash-chained audit log."""

    TYPE: ClassVar[str] = "frontier_review.risk.EscalationDecided"

    escalation_id: UUID = Field(description="The escalation decided.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    reviewer_id: Slug = Field(description="The deciding reviewer (key owner).")
    decision: EscalationDecision = Field(description="restrict or no_restriction.")
    rationale: Text = Field(description="The reviewer's reasons.", json_schema_extra=RESTRICTED)
    order_id: UUID | None = Field(
        default=None, description="Id of the RestrictionOrdered that follows (restrict only)."
    )
    decided_at: AwareDatetime = Field(description="When decided.")
    signature: ReviewerSignature = Field(description="The reviewer's signature over the decision.")

    @model_validator(mode="after")
    def _order(self) -> Self:
        if (self.decision is EscalationDecision.RESTRICT) != (self.order_id is not None):
            raise ValueError("order_id is required for restrict and forbidden otherwise")
        return self


class CountryTier(StrEnum):
    """Country tiers (in the style of export-control tiers). Kept for older orders: a tier is
    the country group of the same name in the agency's country-group table."""

    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"


class VerificationStatus(StrEnum):
    """Identity verification status of a principal at the lab."""

    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"


class NationalityRule(StrEnum):
    """How a foreign person's nationality is judged under an order.

    - ``most_recent``: in the spirit of the EAR deemed-export rule (15 CFR 734.13(b)), by
      the most recent country of citizenship or permanent residency;
    - ``any``: every citizenship and permanent residency counts (as ITAR treats dual
      nationals). ``any`` denies everyone ``most_recent`` denies, and possibly more.

    US persons (citizens, lawful permanent residents, protected individuals) are never
    foreign nationals under either rule.
    """

    MOST_RECENT = "most_recent"
    ANY = "any"


class ExemptionKind(StrEnum):
    PRINCIPAL = "principal"
    ORGANISATION = "organisation"


class Exemption(Part):
    """A principal or organisation the order does not apply to."""

    kind: ExemptionKind = Field(description="What the id names.")
    id: ShortText = Field(
        description="Principal or organisation id at the lab.", json_schema_extra=RESTRICTED
    )
    reason: Text = Field(
        description="Why exempt (e.g. licensed research partner).", json_schema_extra=RESTRICTED
    )


class RestrictionScope(Part):
    """Who is denied access: a principal matching ANY criterion is denied, unless exempt.

    Foreign-national criteria (nationalities, country groups, residence) never match US
    persons; organisation, verification and request-location criteria match anyone. A
    criterion whose attribute is unknown for a principal denies (fails closed) unless the
    known attributes already rule it out. Exemptions apply to this order only. Empty lists
    match nobody; at least one criterion must be non-empty.
    """

    nationality_rule: NationalityRule = Field(
        default=NationalityRule.ANY,
        description="How nationality is judged: most_recent (EAR-style) or any (every "
        "citizenship counts). Default any, the stricter rule.",
        json_schema_extra=INTERNAL,
    )
    nationalities: list[CountryCode] = Field(
        default_factory=list,
        max_length=250,
        description="Deny foreign nationals of these countries (under the nationality rule).",
        json_schema_extra=INTERNAL,
    )
    residence_countries: list[CountryCode] = Field(
        default_factory=list,
        max_length=250,
        description="Deny foreign persons resident (or permanently resident) in these countries.",
        json_schema_extra=INTERNAL,
    )
    country_tiers: list[CountryTier] = Field(
        default_factory=list,
        max_length=len(CountryTier),
        description="Older spelling of country_groups for the groups tier1..tier3: deny "
        "foreign persons whose nationality or residence is in these tiers.",
        json_schema_extra=INTERNAL,
    )
    country_groups: list[Slug] = Field(
        default_factory=list,
        max_length=50,
        description="Deny foreign persons whose nationality or residence is in these groups "
        "of the agency's versioned country-group table (expanded when the order is compiled).",
        json_schema_extra=INTERNAL,
    )
    verification_statuses: list[VerificationStatus] = Field(
        default_factory=list,
        max_length=len(VerificationStatus),
        description="Deny principals with these identity verification statuses (an expired "
        "verification counts as unverified).",
        json_schema_extra=INTERNAL,
    )
    organisations: list[ShortText] = Field(
        default_factory=list,
        max_length=1000,
        description="Deny principals of these organisations (lab-side organisation ids).",
        json_schema_extra=RESTRICTED,
    )
    organisation_countries: list[CountryCode] = Field(
        default_factory=list,
        max_length=250,
        description="Deny principals whose organisation is headquartered in, or whose "
        "organisation's ultimate parent is in, these countries.",
        json_schema_extra=INTERNAL,
    )
    request_locations: list[CountryCode] = Field(
        default_factory=list,
        max_length=250,
        description="Deny requests made from these countries (the request's location).",
        json_schema_extra=INTERNAL,
    )
    exemptions: list[Exemption] = Field(
        default_factory=list,
        max_length=1000,
        description="Principals/organisations never denied by this order.",
        json_schema_extra=RESTRICTED,
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not (
            self.nationalities
            or self.residence_countries
            or self.country_tiers
            or self.country_groups
            or self.verification_statuses
            or self.organisations
            or self.organisation_countries
            or self.request_locations
        ):
            raise ValueError("a restriction scope needs at least one criterion")
        return self


class RestrictionOrdered(Event):
    """An access restriction on a model: after a reviewer's decision, or interim (critical)."""

    TYPE: ClassVar[str] = "frontier_review.risk.RestrictionOrdered"

    order_id: UUID = Field(description="Unique order id.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The restricted model.", json_schema_extra=PUBLIC)
    escalation_id: UUID = Field(description="The escalation behind the order.")
    interim: bool = Field(
        description="Interim order pending a reviewer decision (no reviewer yet)."
    )
    reviewer_id: Slug | None = Field(
        default=None, description="The deciding reviewer; required unless interim."
    )
    scope: RestrictionScope = Field(description="Who is denied.")
    supersedes: UUID | None = Field(
        default=None, description="An earlier order (e.g. the interim one) this order replaces."
    )
    ordered_at: AwareDatetime = Field(description="When ordered.")
    effective_at: AwareDatetime = Field(description="From when it must be enforced.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="When it lapses by itself (none: until lifted)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.interim and self.reviewer_id is None:
            raise ValueError("a non-interim order needs reviewer_id")
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValueError("expires_at must be after effective_at")
        return self
