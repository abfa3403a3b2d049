"""Risk assessment, escalation, reviewer decisions, restriction orders and review
conclusions (topic risk.events, key submission_id).

The reviewers' signed input (ReviewerDecisionSubmitted) travels on its own topic,
reviewers.decisions (contracts.events.reviewers); what the risk service made of it
is published here: EscalationDecided for an accepted decision, and
ReviewerDecisionRejected, with a reason code, for a refused one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.envelope import Event
from contracts.events.common import (
    CountryCode,
    EvaluationMethod,
    EventId,
    ModelId,
    Part,
    PolicyVersion,
    Rejection,
    RiskDomain,
    RiskLevel,
    Sha256Hex,
    ShortText,
    Signature,
    Slug,
    Text,
)
from contracts.sensitivity import INTERNAL, OWNER, PUBLIC, RESTRICTED

MAX_FINDINGS = 1000


class FindingRole(StrEnum):
    """Why a finding is named in a domain's assessment."""

    DRIVES_LEVEL = "drives_level"  # counted, and its band is the domain's level
    EARLY_WARNING = "early_warning"  # at or above the alert threshold, below the escalation bar
    ADVISORY = "advisory"  # a manual finding the policy counts as advisory only
    UNCORROBORATED = "uncorroborated"  # a manual finding that counts once corroborated


class FindingBasis(Part):
    """One finding behind a domain's level: what it measured and where the policy put it."""

    finding_id: UUID = Field(description="The finding.", json_schema_extra=PUBLIC)
    suite_id: Slug = Field(
        description="Suite id ('external' for manual findings).", json_schema_extra=PUBLIC
    )
    suite_version: PolicyVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    capability: Slug = Field(description="Capability probed.", json_schema_extra=PUBLIC)
    metric: Slug = Field(description="What the score measures.", json_schema_extra=PUBLIC)
    score: float = Field(
        ge=0, le=1, allow_inf_nan=False, description="Score in [0, 1].", json_schema_extra=PUBLIC
    )
    method: EvaluationMethod = Field(description="automated or manual.", json_schema_extra=PUBLIC)
    band: RiskLevel = Field(
        description="The level the policy's score bands give this score.", json_schema_extra=PUBLIC
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="The lower bound of that band (or the alert threshold, for early_warning); "
        "none for the low band.",
    )
    role: FindingRole = Field(
        description="Why the finding is named: drives_level, early_warning, advisory, "
        "uncorroborated.",
        json_schema_extra=PUBLIC,
    )


class DomainAssessment(Part):
    """The level of one domain and the findings that drove it."""

    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    level: RiskLevel = Field(description="Assessed level.", json_schema_extra=PUBLIC)
    finding_ids: list[UUID] = Field(
        max_length=MAX_FINDINGS,
        description="The findings that drove the level (empty: no finding reached a threshold).",
        json_schema_extra=PUBLIC,
    )
    rationale: Text = Field(
        description="Which thresholds of the policy were met, e.g. 'cyber-ctf 0.82 >= 0.7 (high)'."
    )
    findings: list[FindingBasis] = Field(
        default_factory=list,
        max_length=MAX_FINDINGS,
        description="The findings named in the rationale, with score, band and suite version: "
        "those that drive the level, those in the early-warning band, and manual findings the "
        "policy did not count that would have raised the level.",
        json_schema_extra=PUBLIC,
    )
    early_warning: bool = Field(
        default=False,
        description="A finding reached the domain's alert threshold while the level is below "
        "the escalation bar (in the manner of an early-warning / alert threshold).",
        json_schema_extra=PUBLIC,
    )
    incomplete: bool = Field(
        default=False,
        description="A planned suite of this domain did not complete (failed, stopped by the "
        "window, cancelled), or none was run: the policy's incomplete-evaluation rule applied.",
        json_schema_extra=PUBLIC,
    )
    escalation_bar: RiskLevel | None = Field(
        default=None, description="The policy's escalation bar for this domain."
    )


class RiskAssessed(Event):
    """The thresholds policy applied to a submission's findings.

    Published only when the result changed (levels, the findings that drive them,
    early warnings, incompleteness): a redelivered or reordered finding publishes
    nothing new.
    """

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
    sequence: int | None = Field(
        default=None,
        ge=1,
        description="1 for the submission's first published assessment, +1 for each change.",
        json_schema_extra=PUBLIC,
    )
    supersedes: UUID | None = Field(
        default=None,
        description="The previous assessment of the submission, which this one replaces.",
        json_schema_extra=PUBLIC,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        domains = [d.domain for d in self.domains]
        if len(set(domains)) != len(domains):
            raise ValueError("each domain is assessed at most once")
        if self.overall_level.rank != max(d.level.rank for d in self.domains):
            raise ValueError("overall_level must be the highest domain level")
        return self


class RecommendedAction(StrEnum):
    """What the reviewers are advised to consider (from the policy, per level)."""

    RESTRICT_FOREIGN_NATIONAL_ACCESS = "restrict_foreign_national_access"
    DELAY_RELEASE = "delay_release"
    NOTIFY_AGENCIES = "notify_agencies"


class EscalationRaised(Event):
    """A level at or above the escalation bar needs the reviewers' decision."""

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
    escalation_bar: RiskLevel = Field(
        description="The lowest escalation bar of the escalated domains."
    )
    finding_ids: list[UUID] = Field(
        max_length=MAX_FINDINGS, description="The findings behind the escalated levels."
    )
    policy_version: PolicyVersion = Field(description="Thresholds policy version.")
    interim_restriction: bool = Field(
        description="An interim restriction is in force pending the decision: ordered with "
        "this escalation (a RestrictionOrdered with interim=true follows), or carried over "
        "from the escalation it supersedes."
    )
    decide_by: AwareDatetime | None = Field(
        default=None, description="When a decision is due, if the policy sets a deadline."
    )
    raised_at: AwareDatetime = Field(description="When raised.")
    recommended_actions: list[RecommendedAction] = Field(
        default_factory=list,
        max_length=len(RecommendedAction),
        description="Actions the policy recommends at this level.",
    )
    reviewers_required: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description="Distinct reviewers who must sign the same decision for it to take effect "
        "(2 = the two-person rule).",
    )
    interim_order_id: UUID | None = Field(
        default=None, description="The interim order in force, when interim_restriction."
    )
    supersedes: UUID | None = Field(
        default=None,
        description="An open escalation of the submission this one replaces (the level rose "
        "or more domains crossed the bar); decisions on it are refused from now on.",
    )
    rationale: Text | None = Field(
        default=None, description="The assessment's rationale for the escalated domains."
    )

    @model_validator(mode="after")
    def _interim(self) -> Self:
        if self.interim_order_id is not None and not self.interim_restriction:
            raise ValueError("interim_order_id is only set when interim_restriction")
        return self


class EscalationDecision(StrEnum):
    """What a reviewer decides on an escalation."""

    RESTRICT = "restrict"  # confirm: restrict access with the signed order
    NO_RESTRICTION = "no_restriction"  # dismiss: no restriction is warranted
    MONITOR = "monitor"  # keep monitoring: no restriction now, findings stay under watch
    LIFT_INTERIM = "lift_interim"  # lift the interim order; the escalation stays open

    @property
    def concludes(self) -> bool:
        """Whether the decision, once its quorum is met, concludes the escalation."""
        return self is not EscalationDecision.LIFT_INTERIM


class ReviewerSignature(Signature):
    """Ed25519 signature of a reviewer over a decision (same rule as lab input: RFC 8785
    canonical JSON of the ReviewerDecisionSubmitted ``data`` without ``signature.value``)."""


class EscalationDecided(Event):
    """A reviewer's signed decision, accepted by the risk service; written to the audit log.

    ``signature`` is the reviewer's signature as received on ReviewerDecisionSubmitted: it
    verifies over that event's data (kept verbatim in the audit log), not over this one.
    A decision takes effect once ``reviewers_required`` distinct reviewers signed the same
    decision (for restrict: the same order, compared by ``order_sha256``); ``quorum_met``
    says whether this signature completed it.
    """

    TYPE: ClassVar[str] = "frontier_review.risk.EscalationDecided"

    escalation_id: UUID = Field(description="The escalation decided.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    reviewer_id: Slug = Field(
        description="The deciding reviewer (key owner).", json_schema_extra=OWNER
    )
    decision: EscalationDecision = Field(
        description="restrict, no_restriction (dismiss), monitor or lift_interim.",
        json_schema_extra=OWNER,
    )
    rationale: Text = Field(
        description="The reviewer's written justification.", json_schema_extra=RESTRICTED
    )
    order_id: UUID | None = Field(
        default=None,
        description="restrict only: the id the signed order gets as a RestrictionOrdered once "
        "its quorum is met (derived from the escalation and the order's content hash).",
        json_schema_extra=OWNER,
    )
    decided_at: AwareDatetime = Field(
        description="When the risk service accepted it.", json_schema_extra=OWNER
    )
    signature: ReviewerSignature = Field(
        description="The reviewer's signature over the ReviewerDecisionSubmitted data.",
        json_schema_extra=OWNER,
    )
    decision_id: UUID | None = Field(
        default=None,
        description="The reviewer's id for the decision (its idempotency key).",
        json_schema_extra=OWNER,
    )
    order_sha256: Sha256Hex | None = Field(
        default=None,
        description="restrict only: SHA-256 of the RFC 8785 form of the canonical order; "
        "signatures count toward the same order only when these are equal.",
        json_schema_extra=OWNER,
    )
    reviewers_required: int | None = Field(
        default=None,
        ge=1,
        le=20,
        description="Distinct signatures the decision needs.",
        json_schema_extra=OWNER,
    )
    signed_by: list[Slug] = Field(
        default_factory=list,
        max_length=20,
        description="Reviewers who have signed this same decision so far, this one included.",
        json_schema_extra=OWNER,
    )
    quorum_met: bool | None = Field(
        default=None,
        description="This signature completed the quorum: the decision takes effect.",
        json_schema_extra=OWNER,
    )
    lifted_order_id: UUID | None = Field(
        default=None,
        description="The interim order this decision lifts (quorum met on lift_interim, "
        "no_restriction or monitor while an interim order is in force).",
        json_schema_extra=OWNER,
    )
    decision_event_id: EventId | None = Field(
        default=None,
        description="CloudEvent id of the ReviewerDecisionSubmitted accepted. The reviewer's "
        "CLI matches its answer by this id together with the signature (nonce and value) it "
        "made: an event id alone can be copied onto any record.",
        json_schema_extra=OWNER,
    )

    @model_validator(mode="after")
    def _order(self) -> Self:
        if (self.decision is EscalationDecision.RESTRICT) != (self.order_id is not None):
            raise ValueError("order_id is required for restrict and forbidden otherwise")
        if self.order_sha256 is not None and self.decision is not EscalationDecision.RESTRICT:
            raise ValueError("order_sha256 is for restrict only")
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
        max_length=100,
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

    def describe(self) -> str:
        """Who the scope denies, in words, for the lab, the console and the audit: every
        criterion, with the restricted parts (organisation and exemption ids) only counted."""
        rule = "most recent" if self.nationality_rule is NationalityRule.MOST_RECENT else "any"
        named = [
            (f"nationals ({rule} citizenship) of", self.nationalities),
            (
                f"principals whose nationality ({rule}) or residence is in group",
                [*self.country_groups, *(tier.value for tier in self.country_tiers)],
            ),
            ("permanent residents of", self.residence_countries),
            (
                "principals whose identity verification is",
                [status.value for status in self.verification_statuses],
            ),
            ("principals of organisations headquartered or owned in", self.organisation_countries),
            ("requests made from", self.request_locations),
        ]
        parts = [f"{label} {', '.join(sorted(values))}" for label, values in named if values]
        if self.organisations:
            parts.append(f"members of {len(self.organisations)} named organisation(s)")
        text = "; ".join(parts)
        if self.exemptions:
            text += f" (with {len(self.exemptions)} exemption(s))"
        return text


class RestrictionOrderSpec(Part):
    """The order a reviewer signs: scope and times. Two signatures are for the same order
    when the SHA-256 of the order's canonical form is equal (sets sorted, times in UTC)."""

    scope: RestrictionScope = Field(description="Who is denied.")
    effective_at: AwareDatetime = Field(
        description="From when it must be enforced (never earlier than the quorum)."
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When it lapses by itself (none: until lifted)."
    )
    compliance_deadline: AwareDatetime = Field(
        description="By when the lab must acknowledge that it enforces the order."
    )

    @model_validator(mode="after")
    def _times(self) -> Self:
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValueError("expires_at must be after effective_at")
        return self


class RestrictionOrdered(Event):
    """An access restriction on a model: after the reviewers' quorum, or interim (pending it)."""

    TYPE: ClassVar[str] = "frontier_review.risk.RestrictionOrdered"

    order_id: UUID = Field(description="Unique order id.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The restricted model.", json_schema_extra=PUBLIC)
    escalation_id: UUID = Field(description="The escalation behind the order.")
    interim: bool = Field(
        description="Interim order pending the reviewers' decision (no reviewer yet)."
    )
    reviewer_id: Slug | None = Field(
        default=None,
        description="The reviewer whose signature completed the quorum; required unless interim.",
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
    compliance_deadline: AwareDatetime | None = Field(
        default=None, description="By when the lab must acknowledge that it enforces the order."
    )
    reviewer_ids: list[Slug] = Field(
        default_factory=list,
        max_length=20,
        description="Every reviewer who signed the order (the quorum); empty for interim orders.",
    )
    order_sha256: Sha256Hex | None = Field(
        default=None, description="Content hash of the order the reviewers signed."
    )
    level: RiskLevel | None = Field(default=None, description="The escalated level.")
    domains: list[RiskDomain] = Field(
        default_factory=list, max_length=len(RiskDomain), description="The escalated domains."
    )
    policy_version: PolicyVersion | None = Field(
        default=None, description="Thresholds policy of the escalation (interim scope source)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.interim and self.reviewer_id is None:
            raise ValueError("a non-interim order needs reviewer_id")
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValueError("expires_at must be after effective_at")
        return self


class RestrictionLiftOrdered(Event):
    """The reviewers' quorum lifted an order (an interim one, or an order a later decision
    ended): the access service removes it from the model's policy, publishes the new
    version and answers with RestrictionLifted. Expiry needs no such event: the access
    service lets an order with ``expires_at`` lapse by itself."""

    TYPE: ClassVar[str] = "frontier_review.risk.RestrictionLiftOrdered"

    order_id: UUID = Field(description="The order lifted.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    escalation_id: UUID = Field(description="The escalation the order belonged to.")
    reviewer_ids: list[Slug] = Field(
        min_length=1, max_length=20, description="The reviewers whose quorum lifted it."
    )
    reason: Text = Field(description="Why it was lifted (the decision's justification).")
    lifted_at: AwareDatetime = Field(description="When the quorum was reached.")


class ReviewerDecisionRejected(Rejection):
    """A ReviewerDecisionSubmitted was refused; the reviewer's CLI shows reason and detail.

    Reasons: the trust checks (unknown_reviewer, unknown_key, revoked_key, bad_signature,
    stale_issued_at, future_issued_at, replayed_nonce, schema_violation...) and the
    decision rules (unknown_escalation, escalation_mismatch, already_signed,
    escalation_concluded, escalation_superseded, no_interim_order, order_outdated,
    conflict: the decision id was used for another decision).
    """

    TYPE: ClassVar[str] = "frontier_review.risk.ReviewerDecisionRejected"

    submission_id: UUID | None = Field(
        default=None,
        description="The submission, when the decision could be read and authenticated; else "
        "the key is rejected_event_id.",
        json_schema_extra=PUBLIC,
    )
    escalation_id: UUID | None = Field(
        default=None, description="The escalation named.", json_schema_extra=OWNER
    )
    reviewer_id: Slug | None = Field(
        default=None, description="Reviewer id as claimed.", json_schema_extra=OWNER
    )
    decision_id: UUID | None = Field(
        default=None, description="The decision id, when readable.", json_schema_extra=OWNER
    )
    received_sha256: Sha256Hex | None = Field(
        default=None,
        description="SHA-256 (hex) of the RFC 8785 form of the refused record's CloudEvent "
        "data as received, signature included, when it could be read. With "
        "rejected_event_id it ties the answer to what the sender signed: an event id can be "
        "copied onto a forged record by anyone, the signed data only by replaying it.",
        json_schema_extra=OWNER,
    )

    @model_validator(mode="after")
    def _addressable(self) -> Self:
        if self.submission_id is None and self.rejected_event_id is None:
            raise ValueError("a rejection needs submission_id or rejected_event_id")
        return self


class DecisionTally(Part):
    """The signatures collected for one candidate decision of an escalation."""

    decision: EscalationDecision = Field(description="What was signed.")
    order_sha256: Sha256Hex | None = Field(
        default=None, description="For restrict: which order (content hash)."
    )
    signed_by: list[Slug] = Field(max_length=20, description="The reviewers who signed it.")


class EscalationOverdue(Event):
    """The reminder: an escalation passed its decision deadline without a decision in
    effect. Raised once per escalation; any interim restriction stays in force."""

    TYPE: ClassVar[str] = "frontier_review.risk.EscalationOverdue"

    escalation_id: UUID = Field(description="The overdue escalation.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    level: RiskLevel = Field(description="The escalated level.")
    domains: list[RiskDomain] = Field(
        min_length=1, max_length=len(RiskDomain), description="The escalated domains."
    )
    decide_by: AwareDatetime = Field(description="The missed decision deadline.")
    reviewers_required: int = Field(ge=1, le=20, description="Signatures a decision needs.")
    tallies: list[DecisionTally] = Field(
        default_factory=list,
        max_length=40,
        description="What has been signed so far (several entries: the reviewers disagree).",
    )
    interim_order_id: UUID | None = Field(
        default=None, description="The interim order still in force, if any."
    )
    detail: Text = Field(description="What is missing, in words.")
    reminded_at: AwareDatetime = Field(description="When the reminder was raised.")


class ReviewOutcome(StrEnum):
    """How a submission's review ended when its window closed."""

    CLEARED = "cleared"  # no objection: nothing escalated, or escalations decided without one
    RESTRICTIONS_ORDERED = "restrictions_ordered"  # the reviewers ordered restrictions
    PENDING_REVIEW = "pending_review"  # an escalation is still awaiting its decision


class ReviewConcluded(Event):
    """The one conclusion of a submission's review, sent to the lab when the window closes.

    The framework is voluntary: no outcome holds a release. ``may`` and ``may_not`` say in
    words what the lab may do and what the agency's orders ask it not to do.
    """

    TYPE: ClassVar[str] = "frontier_review.risk.ReviewConcluded"

    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    lab_id: Slug = Field(description="The submitting lab.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model.", json_schema_extra=PUBLIC)
    outcome: ReviewOutcome = Field(
        description="cleared, restrictions_ordered or pending_review.", json_schema_extra=PUBLIC
    )
    overall_level: RiskLevel | None = Field(
        default=None,
        description="The last assessed overall level (none: no finding was assessed).",
        json_schema_extra=PUBLIC,
    )
    policy_version: PolicyVersion | None = Field(
        default=None, description="Thresholds policy of that assessment.", json_schema_extra=PUBLIC
    )
    evaluation_incomplete: bool = Field(
        default=False,
        description="Some planned suites did not complete before the window closed.",
        json_schema_extra=PUBLIC,
    )
    order_ids: list[UUID] = Field(
        default_factory=list,
        max_length=100,
        description="Restriction orders in force (interim ones included).",
        json_schema_extra=PUBLIC,
    )
    pending_escalation_ids: list[UUID] = Field(
        default_factory=list,
        max_length=100,
        description="Escalations still awaiting the reviewers' decision.",
        json_schema_extra=PUBLIC,
    )
    decision_due: AwareDatetime | None = Field(
        default=None,
        description="When the pending decisions are due (the earliest deadline).",
        json_schema_extra=PUBLIC,
    )
    monitoring: bool = Field(
        default=False,
        description="The reviewers decided to keep the model's findings under watch.",
        json_schema_extra=PUBLIC,
    )
    may: list[Text] = Field(
        min_length=1, max_length=20, description="What the lab may do.", json_schema_extra=PUBLIC
    )
    may_not: list[Text] = Field(
        default_factory=list,
        max_length=20,
        description="What the agency's orders ask the lab not to do.",
        json_schema_extra=PUBLIC,
    )
    window_deadline: AwareDatetime = Field(
        description="The review window's deadline.", json_schema_extra=PUBLIC
    )
    concluded_at: AwareDatetime = Field(description="When concluded.", json_schema_extra=PUBLIC)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.outcome is ReviewOutcome.PENDING_REVIEW) != bool(self.pending_escalation_ids):
            raise ValueError("pending_escalation_ids are listed exactly when pending_review")
        if self.outcome is ReviewOutcome.RESTRICTIONS_ORDERED and not self.order_ids:
            raise ValueError("restrictions_ordered names the orders in force")
        return self
