"""Helpers for the access-control tests: orders, principals, published policies."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts.events.access import AccessPolicyPublished
from contracts.events.risk import RestrictionOrdered
from contracts.policy import (
    CountryTie,
    IdentityVerification,
    LoadedPolicy,
    Organisation,
    Principal,
    RequestContext,
)
from services.access.compile import compile_policy
from services.access.country_groups import CountryGroups, load_country_groups
from services.access.model import ModelPolicy
from services.trust.refusal import Refusal

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LAB = "example-lab"
MODEL = f"{LAB}/frontier-1@2026-02-01"
GROUPS: CountryGroups = load_country_groups()


def order(
    *,
    model_id: str = MODEL,
    effective_at: datetime = T0,
    expires_at: datetime | None = None,
    order_id: UUID | None = None,
    supersedes: UUID | None = None,
    **scope: Any,
) -> RestrictionOrdered:
    return RestrictionOrdered(
        order_id=order_id or uuid.uuid4(),
        submission_id=uuid.uuid4(),
        model_id=model_id,
        escalation_id=uuid.uuid4(),
        interim=False,
        reviewer_id="reviewer-jane",
        scope=scope,
        supersedes=supersedes,
        ordered_at=effective_at - timedelta(minutes=5),
        effective_at=effective_at,
        expires_at=expires_at,
    )


def ties(*specs: str) -> list[CountryTie]:
    """``"CN"`` or ``"CN@2010-05-01"``."""
    out = []
    for spec in specs:
        country, _, day = spec.partition("@")
        out.append(
            CountryTie(country=country, acquired_on=date.fromisoformat(day) if day else None)
        )
    return out


VERIFIED = IdentityVerification(
    status="verified", verified_at=T0 - timedelta(days=30), expires_at=T0 + timedelta(days=300)
)


def person(pid: str = "p-1", **attrs: Any) -> Principal:
    """A fully known, verified, foreign individual (FR citizen in FR) unless overridden."""
    fields: dict[str, Any] = {
        "id": pid,
        "citizenships": ties("FR"),
        "permanent_residencies": [],
        "residence_country": "FR",
        "us_person": "none",
        "verification": VERIFIED,
        "organisation": "none",
    }
    fields.update(attrs)
    return Principal.model_validate(fields)


def org(org_id: str = "org-1", hq: str | None = "FR", parent: str | None = "FR") -> Organisation:
    return Organisation(id=org_id, headquarters_country=hq, parent_country=parent)


def at_location(country: str | None = "FR") -> RequestContext:
    return RequestContext(location_country=country)


def loaded(*orders: RestrictionOrdered, model_id: str = MODEL, version: int = 1) -> LoadedPolicy:
    compiled = compile_policy(model_id, list(orders), GROUPS)
    assert not isinstance(compiled, Refusal), compiled
    return LoadedPolicy.parse(model_id, version, compiled.cedar_policies, compiled.content_hash)


def published(
    *orders: RestrictionOrdered,
    model_id: str = MODEL,
    version: int = 1,
    at: datetime = T0,
) -> AccessPolicyPublished:
    """The AccessPolicyPublished the access service would publish for ``orders``."""
    compiled = compile_policy(model_id, list(orders), GROUPS)
    assert not isinstance(compiled, Refusal), compiled
    return ModelPolicy(
        model_id=model_id,
        lab_id=model_id.split("/")[0],
        version=version,
        cedar_policies=compiled.cedar_policies,
        content_hash=compiled.content_hash,
        orders=compiled.orders,
        published_at=at,
        acknowledge_by=at + timedelta(hours=1),
        schema_version=compiled.schema_version,
        country_groups_version=compiled.country_groups_version,
        order_ids=tuple(o.order_id for o in compiled.orders),
    ).published()
