"""A sample of the demo lab's customers for the impact preview, and three of them asked
about at the lab's enforcer.

Made up, deterministic (a fixed seed), in the CSV format the access service reads
(services/access/sample.py): mostly US persons and allies' nationals, some nationals
of arms-embargoed countries, dual nationals (some of them US citizens), customers
whose identity is not verified yet, and a research partner's staff that an order may
exempt.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from typing import Any

PARTNER = "northbridge-university"
VERIFIED_AT = "2025-11-03T09:00:00+00:00"
ALLIES = ("GB", "DE", "FR", "JP", "CA", "AU", "NL", "KR")
EMBARGOED = ("CN", "RU", "IR", "VE", "BY")
COLUMNS = (
    "principal_id",
    "citizenships",
    "permanent_residencies",
    "residence_country",
    "us_person",
    "verification_status",
    "verified_at",
    "organisation_id",
)

Row = dict[str, str]


def _row(
    n: int,
    citizenships: str,
    residence: str,
    us_person: str = "none",
    *,
    residencies: str = "-",
    verification: str = "verified",
    organisation: str = "-",
) -> Row:
    return {
        "principal_id": f"cust-{n:05d}",
        "citizenships": citizenships,
        "permanent_residencies": residencies,
        "residence_country": residence,
        "us_person": us_person,
        "verification_status": verification,
        "verified_at": VERIFIED_AT if verification == "verified" else "",
        "organisation_id": organisation,
    }


def _us_citizen(n: int, pick: random.Random) -> Row:
    return _row(n, "US", "US", "citizen")


def _permanent_resident(n: int, pick: random.Random) -> Row:
    country = pick.choice(("IN", "MX", "PH", "CN", "BR"))
    return _row(n, country, "US", "lawful_permanent_resident", residencies="US")


def _ally(n: int, pick: random.Random) -> Row:
    country = pick.choice(ALLIES)
    return _row(n, country, country)


def _embargoed(n: int, pick: random.Random) -> Row:
    country = pick.choice(EMBARGOED)
    return _row(n, country, country)


def _dual_national(n: int, pick: random.Random) -> Row:
    """Born in an arms-embargoed country, naturalised in an allied one since: the most
    recent citizenship is the ally's, but under the 'any' rule both count."""
    ally = pick.choice(ALLIES)
    return _row(n, f"{pick.choice(EMBARGOED)}@1990-01-01;{ally}@2015-06-01", ally)


def _dual_us_citizen(n: int, pick: random.Random) -> Row:
    return _row(n, f"{pick.choice(EMBARGOED)};US", "US", "citizen")


def _unverified(n: int, pick: random.Random) -> Row:
    country = pick.choice((*ALLIES, "US"))
    us_person = "citizen" if country == "US" else "none"
    return _row(n, country, country, us_person, verification=pick.choice(("pending", "unverified")))


def _partner_staff(n: int, pick: random.Random) -> Row:
    return _row(n, pick.choice(EMBARGOED), "GB", organisation=PARTNER)


MIX: tuple[tuple[float, Callable[[int, random.Random], Row]], ...] = (
    (0.50, _us_citizen),
    (0.08, _permanent_resident),
    (0.20, _ally),
    (0.07, _embargoed),
    (0.05, _dual_national),
    (0.03, _dual_us_citizen),
    (0.05, _unverified),
    (0.02, _partner_staff),
)


def sample_csv(size: int = 2000, seed: int = 2026) -> str:
    """``size`` customers as CSV with its header."""
    pick = random.Random(seed)
    kinds = [kind for _, kind in MIX]
    weights = [weight for weight, _ in MIX]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for n in range(1, size + 1):
        writer.writerow(pick.choices(kinds, weights)[0](n, pick))
    return out.getvalue()


def _principal(pid: str, citizenships: list[str], residence: str, us_person: str) -> dict[str, Any]:
    return {
        "id": pid,
        "citizenships": [{"country": c} for c in citizenships],
        "permanent_residencies": [],
        "residence_country": residence,
        "us_person": us_person,
        "verification": {"status": "verified", "verified_at": VERIFIED_AT},
        "organisation": "none",
    }


ASKED = {
    "a foreign national (CN)": _principal("cust-cn-0001", ["CN"], "CN", "none"),
    "a US person": _principal("cust-us-0001", ["US"], "US", "citizen"),
    "a dual national, US citizen (CN+US)": _principal(
        "cust-dual-0001", ["CN", "US"], "US", "citizen"
    ),
}
"""Who the lab's gateway asks its enforcer about, and whether each must be allowed."""
EXPECTED = {
    "a foreign national (CN)": False,
    "a US person": True,
    "a dual national, US citizen (CN+US)": True,
}
