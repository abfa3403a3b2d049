"""The decision table of services/access/README.md as data: one ``Case`` per row.

Used by the pure table test (``test_decision_table``: compiled and decided in
process) and by the end-to-end one (``test_decision_table_end_to_end``: the
orders go through the running service and a running enforcer decides).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts.policy import IdentityVerification, Principal, RequestContext
from tests.access.support import T0, VERIFIED, at_location, org, person, ties

AT = T0 + timedelta(hours=1)
A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
B = uuid.UUID("00000000-0000-4000-8000-00000000000b")


@dataclass(frozen=True)
class Case:
    name: str
    orders: list[dict[str, Any]]
    principal: Principal
    allowed: bool
    criteria: set[str] = field(default_factory=set)  # criteria of the denying policies
    missing: set[str] = field(default_factory=set)  # attributes the reasons name
    request: RequestContext = field(default_factory=at_location)
    at: datetime = AT
    denying_orders: set[uuid.UUID] | None = None
    lifted: frozenset[uuid.UUID] = frozenset()  # orders (by order_id) lifted after all arrived

    @property
    def versions(self) -> int:
        """The model's policy version once every order arrived and every lift was applied."""
        return len(self.orders) + len(self.lifted)


def cn(**extra: Any) -> dict[str, Any]:
    return {"nationalities": ["CN"], **extra}


MOST_RECENT = {"nationality_rule": "most_recent"}
ANY = {"nationality_rule": "any"}

CASES = [
    # nationality
    Case(
        "a national of a restricted country is denied",
        [cn()],
        person(citizenships=ties("CN")),
        False,
        {"nationality"},
    ),
    Case("a national of an unrestricted country is allowed", [cn()], person(), True),
    Case(
        "a dual national with a restricted citizenship is denied under the any rule",
        [cn(**ANY)],
        person(citizenships=ties("CN@1990-01-01", "FR@2010-01-01")),
        False,
        {"nationality"},
    ),
    Case(
        "a dual national whose most recent citizenship is unrestricted is allowed under the "
        "most-recent rule",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("CN@1990-01-01", "FR@2010-01-01")),
        True,
    ),
    Case(
        "a dual national whose most recent citizenship is restricted is denied under the "
        "most-recent rule",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("FR@1990-01-01", "CN@2010-01-01")),
        False,
        {"nationality"},
    ),
    Case(
        "undated dual citizenships make every undated one a candidate under the most-recent rule",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("FR", "CN")),
        False,
        {"nationality"},
    ),
    Case(
        "a naturalised US citizen with a restricted former citizenship is allowed (any rule)",
        [cn(**ANY)],
        person(citizenships=ties("CN@1990-01-01", "US@2015-06-01"), us_person="citizen"),
        True,
    ),
    Case(
        "a naturalised US citizen with a restricted former citizenship is allowed "
        "(most-recent rule)",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("US@2015-06-01", "CN@2020-01-01"), us_person="citizen"),
        True,
    ),
    Case(
        "a recorded US citizenship makes a US person even without a stated status",
        [cn()],
        person(citizenships=ties("US", "CN"), us_person=None),
        True,
    ),
    Case(
        "a lawful permanent resident of the US with a restricted citizenship is allowed",
        [cn()],
        person(
            citizenships=ties("CN"),
            permanent_residencies=ties("US@2019-01-01"),
            us_person="lawful_permanent_resident",
            residence_country="US",
        ),
        True,
    ),
    Case(
        "a protected individual with a restricted citizenship is allowed",
        [cn()],
        person(citizenships=ties("CN"), us_person="protected_individual"),
        True,
    ),
    Case(
        "a restricted permanent residency that is the most recent tie denies under the "
        "most-recent rule",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("FR@1990-01-01"), permanent_residencies=ties("CN@2015-01-01")),
        False,
        {"nationality"},
    ),
    Case(
        "an older restricted permanent residency does not deny under the most-recent rule",
        [cn(**MOST_RECENT)],
        person(citizenships=ties("FR@2016-01-01"), permanent_residencies=ties("CN@2015-01-01")),
        True,
    ),
    Case(
        "a restricted permanent residency counts under the any rule",
        [cn(**ANY)],
        person(citizenships=ties("FR@2016-01-01"), permanent_residencies=ties("CN@2015-01-01")),
        False,
        {"nationality"},
    ),
    Case(
        "'not a US person' next to a US citizenship makes the status unknown: a restricted "
        "second nationality denies",
        [cn()],
        person(citizenships=ties("US", "CN"), us_person="none"),
        False,
        {"nationality.us_person"},
        {"us_person"},
    ),
    Case(
        "unknown citizenships deny under a nationality order, naming the attribute",
        [cn()],
        person(citizenships=None),
        False,
        {"nationality"},
        {"citizenships"},
    ),
    Case(
        "unknown permanent residencies deny under a nationality order, naming the attribute",
        [cn()],
        person(permanent_residencies=None),
        False,
        {"nationality"},
        {"permanent_residencies"},
    ),
    Case(
        "unknown US-person status with a restricted nationality denies, naming us_person",
        [cn()],
        person(citizenships=ties("CN"), us_person=None),
        False,
        {"nationality.us_person"},
        {"us_person"},
    ),
    Case(
        "unknown US-person status with an unrestricted nationality is allowed",
        [cn()],
        person(us_person=None),
        True,
    ),
    Case(
        "a known US person with unknown citizenships is allowed under a nationality order",
        [cn()],
        person(citizenships=None, us_person="citizen"),
        True,
    ),
    Case(
        "a national of a country in a restricted country group is denied",
        [{"country_groups": ["embargoed"]}],
        person(citizenships=ties("IR")),
        False,
        {"nationality"},
    ),
    Case(
        "a resident of a country in a restricted country group is denied",
        [{"country_groups": ["embargoed"]}],
        person(residence_country="IR"),
        False,
        {"residence"},
    ),
    Case(
        "a US person resident in a country of a restricted group is allowed",
        [{"country_groups": ["embargoed"]}],
        person(citizenships=ties("US"), us_person="citizen", residence_country="IR"),
        True,
    ),
    Case(
        "a country tier (older spelling) is the group of that name",
        [{"country_tiers": ["tier3"]}],
        person(citizenships=ties("RU")),
        False,
        {"nationality"},
    ),
    # residence
    Case(
        "a foreign person resident in a restricted country is denied",
        [{"residence_countries": ["RU"]}],
        person(residence_country="RU"),
        False,
        {"residence"},
    ),
    Case(
        "a US citizen resident in a restricted country is allowed by a residence order",
        [{"residence_countries": ["RU"]}],
        person(citizenships=ties("US"), us_person="citizen", residence_country="RU"),
        True,
    ),
    Case(
        "unknown residence denies under a residence order, naming it",
        [{"residence_countries": ["RU"]}],
        person(residence_country=None),
        False,
        {"residence"},
        {"residence_country"},
    ),
    # organisations
    Case(
        "a member of a restricted organisation is denied, even a US person",
        [{"organisations": ["org-x"]}],
        person(citizenships=ties("US"), us_person="citizen", organisation=org("org-x")),
        False,
        {"organisation"},
    ),
    Case(
        "an individual customer is allowed by an organisation order",
        [{"organisations": ["org-x"]}],
        person(organisation="none"),
        True,
    ),
    Case(
        "unknown organisation denies under an organisation order, naming it",
        [{"organisations": ["org-x"]}],
        person(organisation=None),
        False,
        {"organisation"},
        {"organisation"},
    ),
    Case(
        "an organisation headquartered in a restricted country denies its members",
        [{"organisation_countries": ["CN"]}],
        person(organisation=org(hq="CN", parent="CN")),
        False,
        {"organisation_country"},
    ),
    Case(
        "an organisation whose ultimate parent is in a restricted country denies its members",
        [{"organisation_countries": ["CN"]}],
        person(organisation=org(hq="FR", parent="CN")),
        False,
        {"organisation_country"},
    ),
    Case(
        "an organisation with an unknown parent country denies, naming it",
        [{"organisation_countries": ["CN"]}],
        person(organisation=org(hq="FR", parent=None)),
        False,
        {"organisation_country"},
        {"organisation.parent_country"},
    ),
    Case(
        "a restricted headquarters denies on its own when the parent is unknown",
        [{"organisation_countries": ["CN"]}],
        person(organisation=org(hq="CN", parent=None)),
        False,
        {"organisation_country"},
    ),
    Case(
        "an organisation in unrestricted countries is allowed",
        [{"organisation_countries": ["CN"]}],
        person(organisation=org()),
        True,
    ),
    # verification
    Case(
        "an unverified principal is denied under a verification order",
        [{"verification_statuses": ["unverified"]}],
        person(verification=IdentityVerification(status="unverified")),
        False,
        {"verification"},
    ),
    Case(
        "an expired verification counts as unverified",
        [{"verification_statuses": ["unverified"]}],
        person(
            verification=IdentityVerification(
                status="verified",
                verified_at=T0 - timedelta(days=400),
                expires_at=T0 - timedelta(days=1),
            )
        ),
        False,
        {"verification"},
    ),
    Case(
        "a current verification is allowed",
        [{"verification_statuses": ["unverified"]}],
        person(verification=VERIFIED),
        True,
    ),
    Case(
        "a pending verification is allowed when only unverified is restricted",
        [{"verification_statuses": ["unverified"]}],
        person(verification=IdentityVerification(status="pending")),
        True,
    ),
    Case(
        "unknown verification denies, naming it",
        [{"verification_statuses": ["unverified"]}],
        person(verification=None),
        False,
        {"verification"},
        {"verification"},
    ),
    # request location
    Case(
        "a request from a restricted location is denied, even for a US person",
        [{"request_locations": ["RU"]}],
        person(citizenships=ties("US"), us_person="citizen"),
        False,
        {"request_location"},
        request=at_location("RU"),
    ),
    Case(
        "a request from an unrestricted location is allowed",
        [{"request_locations": ["RU"]}],
        person(),
        True,
    ),
    Case(
        "a request of unknown location is denied under a location order, naming it",
        [{"request_locations": ["RU"]}],
        person(),
        False,
        {"request_location"},
        {"request.location_country"},
        request=at_location(None),
    ),
    Case(
        "a request of unknown location is allowed when no order needs the location",
        [cn()],
        person(),
        True,
        request=at_location(None),
    ),
    # exemptions
    Case(
        "an exempt principal is not denied by the order that exempts it",
        [cn(exemptions=[{"kind": "principal", "id": "p-1", "reason": "licensed partner"}])],
        person(citizenships=ties("CN")),
        True,
    ),
    Case(
        "members of an exempt organisation are not denied",
        [cn(exemptions=[{"kind": "organisation", "id": "org-1", "reason": "licensed"}])],
        person(citizenships=ties("CN"), organisation=org("org-1")),
        True,
    ),
    Case(
        "an organisation exemption does not cover a principal whose organisation is unknown",
        [cn(exemptions=[{"kind": "organisation", "id": "org-1", "reason": "licensed"}])],
        person(citizenships=ties("CN"), organisation=None),
        False,
        {"nationality"},
    ),
    Case(
        "a principal exempt from one order is still denied by another",
        [
            cn(order_id=A, exemptions=[{"kind": "principal", "id": "p-1", "reason": "partner"}]),
            cn(order_id=B),
        ],
        person(citizenships=ties("CN")),
        False,
        {"nationality"},
        denying_orders={B},
    ),
    # time
    Case(
        "an order effective in the future does not deny yet",
        [cn(effective_at=T0 + timedelta(days=1))],
        person(citizenships=ties("CN")),
        True,
    ),
    Case(
        "an order published ahead denies from its effective time",
        [cn(effective_at=T0 + timedelta(days=1))],
        person(citizenships=ties("CN")),
        False,
        {"nationality"},
        at=T0 + timedelta(days=1),
    ),
    Case(
        "a time-limited order denies until its expiry",
        [cn(expires_at=T0 + timedelta(days=1))],
        person(citizenships=ties("CN")),
        False,
        {"nationality"},
        at=T0 + timedelta(days=1) - timedelta(milliseconds=1),
    ),
    Case(
        "an expired order no longer denies",
        [cn(expires_at=T0 + timedelta(days=1))],
        person(citizenships=ties("CN")),
        True,
        at=T0 + timedelta(days=1),
    ),
    # two orders
    Case(
        "two orders on one model: the nationality order denies a verified national",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(citizenships=ties("CN")),
        False,
        {"nationality"},
        denying_orders={A},
    ),
    Case(
        "two orders on one model: the verification order denies an unverified foreigner",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(verification=IdentityVerification(status="unverified")),
        False,
        {"verification"},
        denying_orders={B},
    ),
    Case(
        "two orders on one model: both deny an unverified national, and both are named",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(citizenships=ties("CN"), verification=IdentityVerification(status="unverified")),
        False,
        {"nationality", "verification"},
        denying_orders={A, B},
    ),
    Case(
        "two orders on one model: a principal neither matches is allowed",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(),
        True,
    ),
    # lifted orders
    Case(
        "a national is allowed once the order was lifted",
        [cn(order_id=A)],
        person(citizenships=ties("CN")),
        True,
        lifted=frozenset({A}),
    ),
    Case(
        "after one of two orders was lifted only the other denies",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(citizenships=ties("CN"), verification=IdentityVerification(status="unverified")),
        False,
        {"verification"},
        denying_orders={B},
        lifted=frozenset({A}),
    ),
    Case(
        "a national of the lifted order's country is allowed when the other order does not match",
        [cn(order_id=A), {"order_id": B, "verification_statuses": ["unverified"]}],
        person(citizenships=ties("CN")),
        True,
        lifted=frozenset({A}),
    ),
]
