"""The principal attribute model: what a lab knows about the person behind a request.

Labs fill it from their customer records (know-your-customer data) and pass it
to the enforcer, the decision API and the impact preview. Every attribute a
restriction can depend on is here, and every one of them may be **unknown**:

- ``None`` (or an absent field) means *unknown*; a restricted model's policy that
  needs it fails closed, naming the attribute;
- an empty list means *known to be none* (no permanent residency; a stateless
  person has no citizenship);
- ``organisation="none"`` means the principal acts for no organisation (an
  individual customer), as opposed to ``None``: the lab does not know.

The models forbid unknown fields: a misspelt attribute is an error the caller
hears about, never an attribute silently treated as unknown.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.events.common import CountryCode
from contracts.events.risk import VerificationStatus
from contracts.sensitivity import RESTRICTED

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A lab-side principal or organisation id (any characters; escaped when it reaches Cedar)."""

MAX_COUNTRIES = 20


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UsPersonStatus(StrEnum):
    """US-person status (in the sense of the export rules). ``none``: not a US person."""

    CITIZEN = "citizen"
    LAWFUL_PERMANENT_RESIDENT = "lawful_permanent_resident"
    PROTECTED_INDIVIDUAL = "protected_individual"
    NONE = "none"


class CountryTie(Strict):
    """A citizenship or permanent residency, with when it was acquired (if known)."""

    country: CountryCode = Field(description="ISO 3166-1 alpha-2 code.")
    acquired_on: date | None = Field(
        default=None,
        description="When acquired; unknown dates make every undated tie a candidate for "
        "the most recent one.",
    )


class IdentityVerification(Strict):
    """The lab's identity verification of the principal."""

    status: VerificationStatus = Field(description="Status as recorded by the lab.")
    verified_at: AwareDatetime | None = Field(default=None, description="When verified.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the verification lapses (none: it does not)."
    )

    def effective_status(self, at: datetime) -> VerificationStatus:
        """The status at ``at``: an expired (or not yet valid) verification is unverified."""
        if self.status is not VerificationStatus.VERIFIED:
            return self.status
        if self.verified_at is None or self.verified_at > at:
            return VerificationStatus.UNVERIFIED
        if self.expires_at is not None and self.expires_at <= at:
            return VerificationStatus.UNVERIFIED
        return VerificationStatus.VERIFIED


class Organisation(Strict):
    """The organisation the principal acts for."""

    id: EntityId = Field(description="Lab-side organisation id.", json_schema_extra=RESTRICTED)
    headquarters_country: CountryCode | None = Field(
        default=None, description="Country of the headquarters (none: unknown)."
    )
    parent_country: CountryCode | None = Field(
        default=None,
        description="Country of the ultimate parent; the headquarters country when the "
        "organisation has no parent (none: unknown).",
    )


class Principal(Strict):
    """What the lab knows about one principal. ``None`` = unknown (see the module doc)."""

    id: EntityId = Field(description="Lab-side principal id.", json_schema_extra=RESTRICTED)
    citizenships: list[CountryTie] | None = Field(
        default=None, max_length=MAX_COUNTRIES, description="Every citizenship held."
    )
    permanent_residencies: list[CountryTie] | None = Field(
        default=None, max_length=MAX_COUNTRIES, description="Every permanent residency held."
    )
    residence_country: CountryCode | None = Field(
        default=None, description="Country of current residence."
    )
    us_person: UsPersonStatus | None = Field(default=None, description="US-person status.")
    verification: IdentityVerification | None = Field(
        default=None, description="Identity verification."
    )
    organisation: Organisation | Literal["none"] | None = Field(
        default=None, description='The organisation; "none" for an individual customer.'
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        for name in ("citizenships", "permanent_residencies"):
            ties = getattr(self, name)
            if ties is not None and len({t.country for t in ties}) != len(ties):
                raise ValueError(f"{name}: each country at most once")
        return self


class RequestContext(Strict):
    """What the gateway knows about the request itself."""

    location_country: CountryCode | None = Field(
        default=None, description="Country the request comes from (e.g. by IP); none: unknown."
    )


class Attribute(StrEnum):
    """Names of the attributes a decision may be missing (reasons name them)."""

    CITIZENSHIPS = "citizenships"
    PERMANENT_RESIDENCIES = "permanent_residencies"
    RESIDENCE_COUNTRY = "residence_country"
    US_PERSON = "us_person"
    VERIFICATION = "verification"
    ORGANISATION = "organisation"
    ORGANISATION_HEADQUARTERS = "organisation.headquarters_country"
    ORGANISATION_PARENT = "organisation.parent_country"
    REQUEST_LOCATION = "request.location_country"
