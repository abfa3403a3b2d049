"""From a principal's attributes at a time t to the Cedar request: the deemed-export rules.

This is where the semantics live that both the agency (impact preview) and the
labs (enforcer, decision API) must apply identically:

- **US persons** (citizen, lawful permanent resident, protected individual) are
  never foreign nationals: ``us_person`` is true when the lab says so, or when a
  US citizenship or US permanent residency is recorded. A record that says
  ``none`` next to a US citizenship contradicts itself: US-person status is then
  unknown.
- **Most recent rule** (EAR 15 CFR 734.13(b) in spirit): the most recent country
  of citizenship or permanent residency. When acquisition dates are missing, every
  undated tie is a candidate besides the latest dated one(s), so uncertainty can
  only widen the set that is checked, never hide a restricted country.
- **Any rule** (ITAR-style for dual nationals): every citizenship and permanent
  residency.
- **Verification** is judged at t: an expired verification is unverified.
- **Unknown** attributes are named in ``unknown``; the compiled policies deny on
  them when a criterion needs them (fail closed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.policy.cedar import MODEL, ORGANISATION, PRINCIPAL, Action
from contracts.policy.principal import (
    Attribute,
    CountryTie,
    Organisation,
    Principal,
    RequestContext,
    UsPersonStatus,
)

US = "US"
US_PERSON_STATUSES = frozenset(
    {
        UsPersonStatus.CITIZEN,
        UsPersonStatus.LAWFUL_PERMANENT_RESIDENT,
        UsPersonStatus.PROTECTED_INDIVIDUAL,
    }
)


@dataclass(frozen=True, slots=True)
class DerivedAttributes:
    """A principal's Cedar attributes at one time (hashable: part of the cache key)."""

    nationalities_any: frozenset[str]
    nationalities_most_recent: frozenset[str]
    residences: frozenset[str]
    us_person: bool | None
    verification_status: str | None
    organisation_id: str | None  # None: no organisation, or unknown (see unknown)
    organisation_countries: frozenset[str]
    location_country: str | None
    unknown: frozenset[Attribute]

    def principal_attrs(self) -> dict[str, Any]:
        return {
            "nationalities_any": sorted(self.nationalities_any),
            "nationalities_most_recent": sorted(self.nationalities_most_recent),
            "residences": sorted(self.residences),
            "us_person": bool(self.us_person),
            "verification_status": self.verification_status or "",
            "organisation_countries": sorted(self.organisation_countries),
            "unknown": sorted(a.value for a in self.unknown if a is not Attribute.REQUEST_LOCATION),
        }


def most_recent(ties: list[CountryTie]) -> frozenset[str]:
    """Candidates for the most recent tie: the latest dated one(s) and every undated one."""
    undated = {t.country for t in ties if t.acquired_on is None}
    dated = [(t.acquired_on, t.country) for t in ties if t.acquired_on is not None]
    latest = max((day for day, _ in dated), default=None)
    return frozenset(undated | {country for day, country in dated if day == latest})


def us_person_status(principal: Principal) -> bool | None:
    """True / False, or None when unknown (not stated and not implied, or contradictory)."""
    countries = {t.country for t in (principal.citizenships or [])} | {
        t.country for t in (principal.permanent_residencies or [])
    }
    implied = US in countries
    stated = principal.us_person
    if stated in US_PERSON_STATUSES:
        return True
    if stated is UsPersonStatus.NONE:
        return None if implied else False
    return True if implied else None


def derive(principal: Principal, request: RequestContext, at: datetime) -> DerivedAttributes:
    """The principal's attributes as the policies see them at ``at``."""
    unknown: set[Attribute] = set()
    citizenships = principal.citizenships
    residencies = principal.permanent_residencies
    if citizenships is None:
        unknown.add(Attribute.CITIZENSHIPS)
    if residencies is None:
        unknown.add(Attribute.PERMANENT_RESIDENCIES)
    ties = [*(citizenships or []), *(residencies or [])]

    residences = {t.country for t in residencies or []}
    if principal.residence_country is None:
        unknown.add(Attribute.RESIDENCE_COUNTRY)
    else:
        residences.add(principal.residence_country)

    us_person = us_person_status(principal)
    if us_person is None:
        unknown.add(Attribute.US_PERSON)

    verification_status: str | None = None
    if principal.verification is None:
        unknown.add(Attribute.VERIFICATION)
    else:
        verification_status = principal.verification.effective_status(at).value

    organisation_id: str | None = None
    organisation_countries: set[str] = set()
    org = principal.organisation
    if org is None:
        unknown.add(Attribute.ORGANISATION)
    elif isinstance(org, Organisation):
        organisation_id = org.id
        if org.headquarters_country is None:
            unknown.add(Attribute.ORGANISATION_HEADQUARTERS)
        else:
            organisation_countries.add(org.headquarters_country)
        if org.parent_country is None:
            unknown.add(Attribute.ORGANISATION_PARENT)
        else:
            organisation_countries.add(org.parent_country)

    if request.location_country is None:
        unknown.add(Attribute.REQUEST_LOCATION)

    return DerivedAttributes(
        nationalities_any=frozenset(t.country for t in ties),
        nationalities_most_recent=most_recent(ties),
        residences=frozenset(residences),
        us_person=us_person,
        verification_status=verification_status,
        organisation_id=organisation_id,
        organisation_countries=frozenset(organisation_countries),
        location_country=request.location_country,
        unknown=frozenset(unknown),
    )


def cedar_datetime(at: datetime) -> dict[str, Any]:
    """``at`` as a Cedar datetime extension value (UTC, millisecond precision)."""
    text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {"__extn": {"fn": "datetime", "arg": text}}


def cedar_request(
    principal_id: str, derived: DerivedAttributes, model_id: str, action: Action, at: datetime
) -> tuple[dict[str, Any], str]:
    """The cedarpy request and the entities JSON for one decision."""
    principal_uid = {"type": PRINCIPAL, "id": principal_id}
    parents = []
    entities: list[dict[str, Any]] = []
    if derived.organisation_id is not None:
        org_uid = {"type": ORGANISATION, "id": derived.organisation_id}
        parents.append(org_uid)
        entities.append({"uid": org_uid, "attrs": {}, "parents": []})
    entities.append({"uid": principal_uid, "attrs": derived.principal_attrs(), "parents": parents})
    request = {
        "principal": principal_uid,
        "action": {"type": "Action", "id": action.value},
        "resource": {"type": MODEL, "id": model_id},
        "context": {
            "now": cedar_datetime(at),
            "location_country": derived.location_country or "",
            "unknown": [Attribute.REQUEST_LOCATION.value]
            if Attribute.REQUEST_LOCATION in derived.unknown
            else [],
        },
    }
    return request, json.dumps(entities)
