"""Property: the enforcer denies exactly when some active order's scope matches and that
order does not exempt the principal, judged by a reference reading of the semantics
written here independently of the compiler and of Cedar."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.events.risk import ExemptionKind, NationalityRule, RestrictionOrdered
from contracts.policy import Action, Attribute, DerivedAttributes, Principal, RequestContext, derive
from contracts.policy.principal import Organisation
from services.labclient.enforcer import Enforcer
from tests.access.generate import COUNTRIES, ORGS, random_row
from tests.access.support import GROUPS, LAB, MODEL, T0, loaded, order, published

countries = st.lists(st.sampled_from(COUNTRIES), max_size=2, unique=True)


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "nationality_rule": draw(st.sampled_from(list(NationalityRule))),
        "nationalities": draw(countries),
        "residence_countries": draw(countries),
        "country_groups": draw(st.lists(st.sampled_from(["embargoed", "tier3"]), max_size=1)),
        "organisations": draw(st.lists(st.sampled_from(ORGS), max_size=1)),
        "organisation_countries": draw(countries),
        "verification_statuses": draw(
            st.lists(st.sampled_from(["unverified", "pending"]), max_size=1)
        ),
        "request_locations": draw(countries),
        "exemptions": [
            {"kind": kind, "id": value, "reason": "exempt"}
            for kind, value in draw(
                st.lists(
                    st.one_of(
                        st.tuples(st.just("principal"), st.sampled_from(["p-0", "p-1", "p-2"])),
                        st.tuples(st.just("organisation"), st.sampled_from(ORGS)),
                    ),
                    max_size=2,
                    unique=True,
                )
            )
        ],
    }
    criteria = [k for k, v in scope.items() if v and k not in ("nationality_rule", "exemptions")]
    if not criteria:
        scope["nationalities"] = ["CN"]
    start = draw(st.integers(min_value=-3, max_value=3))
    length = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
    return {
        "effective_at": T0 + timedelta(hours=start),
        "expires_at": None if length is None else T0 + timedelta(hours=start + length),
        **scope,
    }


def _exempt(o: RestrictionOrdered, principal: Principal) -> bool:
    org = principal.organisation
    for exemption in o.scope.exemptions:
        if exemption.kind is ExemptionKind.PRINCIPAL and exemption.id == principal.id:
            return True
        if (
            exemption.kind is ExemptionKind.ORGANISATION
            and isinstance(org, Organisation)
            and org.id == exemption.id
        ):
            return True
    return False


def _foreign_match(
    d: DerivedAttributes, values: set[str], held: frozenset[str], needs: set[Attribute]
) -> bool:
    if not values or d.us_person is True:
        return False
    if needs & d.unknown:
        return True
    return bool(held & values)


def reference_denies(o: RestrictionOrdered, p: Principal, r: RequestContext, at: datetime) -> bool:
    if at < o.effective_at or (o.expires_at is not None and at >= o.expires_at):
        return False
    if _exempt(o, p):
        return False
    d = derive(p, r, at)
    s = o.scope
    groups = set().union(
        *(
            GROUPS.groups[g].countries
            for g in [*s.country_groups, *(t.value for t in s.country_tiers)]
        )
    )
    held = (
        d.nationalities_most_recent
        if s.nationality_rule is NationalityRule.MOST_RECENT
        else d.nationalities_any
    )
    nat_needs = {Attribute.CITIZENSHIPS, Attribute.PERMANENT_RESIDENCIES}
    res_needs = {Attribute.RESIDENCE_COUNTRY, Attribute.PERMANENT_RESIDENCIES}
    org_needs = {
        Attribute.ORGANISATION,
        Attribute.ORGANISATION_HEADQUARTERS,
        Attribute.ORGANISATION_PARENT,
    }
    return any(
        [
            _foreign_match(d, set(s.nationalities) | groups, held, nat_needs),
            _foreign_match(d, set(s.residence_countries) | groups, d.residences, res_needs),
            bool(s.organisations)
            and (Attribute.ORGANISATION in d.unknown or d.organisation_id in s.organisations),
            bool(s.organisation_countries)
            and (
                bool(d.organisation_countries & set(s.organisation_countries))
                or bool(org_needs & d.unknown)
            ),
            bool(s.verification_statuses)
            and (
                Attribute.VERIFICATION in d.unknown
                or d.verification_status in {v.value for v in s.verification_statuses}
            ),
            bool(s.request_locations)
            and (
                Attribute.REQUEST_LOCATION in d.unknown or d.location_country in s.request_locations
            ),
        ]
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(orders(), min_size=1, max_size=3),
    seed=st.integers(min_value=0, max_value=2**32),
    hour=st.integers(min_value=-4, max_value=8),
)
def test_the_enforcer_denies_exactly_whom_some_active_unexempting_order_matches(
    specs: list[dict[str, Any]], seed: int, hour: int
) -> None:
    the_orders = [order(**spec) for spec in specs]
    at = T0 + timedelta(hours=hour, minutes=30)
    enforcer = Enforcer(lab_id=LAB, clock=lambda: at)
    enforcer.apply(published(*the_orders))
    enforcer.mark_caught_up()
    uncached = loaded(*the_orders)
    rng = random.Random(seed)
    for index in range(25):
        principal, request = random_row(rng, index % 4)
        expected = any(reference_denies(o, principal, request, at) for o in the_orders)
        decision = enforcer.check(principal, MODEL, Action.INVOKE, request)
        assert decision.allowed is not expected, (principal, request, decision.reasons)
        fresh = uncached.decide(principal, Action.INVOKE, request, at, use_cache=False)
        assert (fresh.allowed, fresh.reasons) == (decision.allowed, decision.reasons)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_the_any_rule_denies_everyone_the_most_recent_rule_denies(seed: int) -> None:
    strict = loaded(order(nationalities=["CN", "RU"], nationality_rule="any"))
    lenient = loaded(order(nationalities=["CN", "RU"], nationality_rule="most_recent"))
    rng = random.Random(seed)
    for index in range(20):
        principal, request = random_row(rng, index)
        if not lenient.decide(principal, Action.INVOKE, request, T0).allowed:
            assert not strict.decide(principal, Action.INVOKE, request, T0).allowed
