"""Random principals and samples for property tests, the preview tests and the benchmark."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta

from contracts.policy import Principal, RequestContext
from services.access.sample import COLUMNS, csv_line
from tests.access.support import T0

COUNTRIES = ["US", "CN", "RU", "FR", "DE", "IN", "IR", "GB", "BR", "KP"]
ORGS = ["org-1", "org-2", "org-x", "org-y"]


def _maybe(rng: random.Random, value: object, unknown: float = 0.1) -> object:
    return None if rng.random() < unknown else value


def _ties(rng: random.Random, most: int) -> list[dict[str, object]]:
    countries = rng.sample(COUNTRIES, rng.randint(0, most))
    return [
        {
            "country": c,
            "acquired_on": None
            if rng.random() < 0.3
            else (date(1980, 1, 1) + timedelta(days=rng.randint(0, 15000))).isoformat(),
        }
        for c in countries
    ]


def random_row(rng: random.Random, index: int) -> tuple[Principal, RequestContext]:
    org: object = rng.choice(["none", None, *ORGS])
    if isinstance(org, str) and org != "none":
        org = {
            "id": org,
            "headquarters_country": _maybe(rng, rng.choice(COUNTRIES)),
            "parent_country": _maybe(rng, rng.choice(COUNTRIES)),
        }
    verification = _maybe(
        rng,
        {
            "status": rng.choice(["verified", "pending", "unverified"]),
            "verified_at": (T0 - timedelta(days=rng.randint(1, 400))).isoformat(),
            "expires_at": (T0 + timedelta(days=rng.randint(-100, 300))).isoformat(),
        },
    )
    principal = Principal.model_validate(
        {
            "id": f"p-{index}",
            "citizenships": _maybe(rng, _ties(rng, 3), 0.05),
            "permanent_residencies": _maybe(rng, _ties(rng, 1), 0.1),
            "residence_country": _maybe(rng, rng.choice(COUNTRIES)),
            "us_person": _maybe(
                rng,
                rng.choice(["citizen", "none", "none", "none", "lawful_permanent_resident"]),
                0.1,
            ),
            "verification": verification,
            "organisation": org,
        }
    )
    return principal, RequestContext(location_country=_maybe(rng, rng.choice(COUNTRIES)))


def csv_sample(rows: int, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    yield (",".join(COLUMNS) + "\n").encode()
    for index in range(rows):
        yield csv_line(*random_row(rng, index)).encode()


def jsonl_sample(rows: int, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    for index in range(rows):
        principal, request = random_row(rng, index)
        row = {
            "principal": principal.model_dump(mode="json"),
            "request": request.model_dump(mode="json"),
        }
        yield (json.dumps(row) + "\n").encode()


CUSTOMER_COUNTRIES = ["US", "GB", "FR", "DE", "IN", "CN", "BR", "JP", "RU", "IR", "CA", "KP"]
CUSTOMER_WEIGHTS = [50, 8, 7, 7, 8, 6, 5, 4, 3, 0.5, 1.4, 0.1]


def customer_row(rng: random.Random, index: int) -> tuple[Principal, RequestContext]:
    """A plausible customer: mostly known attributes, skewed towards a few countries."""
    country = rng.choices(CUSTOMER_COUNTRIES, CUSTOMER_WEIGHTS)[0]
    citizenships = [{"country": country, "acquired_on": None}]
    if rng.random() < 0.05:  # dual nationals
        second = rng.choices(CUSTOMER_COUNTRIES, CUSTOMER_WEIGHTS)[0]
        if second != country:
            citizenships.append({"country": second, "acquired_on": "2015-01-01"})
    is_us = any(c["country"] == "US" for c in citizenships)
    organisation: object = "none"
    if rng.random() < 0.4:
        hq = rng.choices(CUSTOMER_COUNTRIES, CUSTOMER_WEIGHTS)[0]
        organisation = {
            "id": f"org-{rng.randint(1, 300)}",
            "headquarters_country": hq,
            "parent_country": hq,
        }
    principal = Principal.model_validate(
        {
            "id": f"c-{index}",
            "citizenships": None if rng.random() < 0.01 else citizenships,
            "permanent_residencies": [],
            "residence_country": country,
            "us_person": "citizen" if is_us else "none",
            "verification": {
                "status": "verified" if rng.random() < 0.9 else "unverified",
                "verified_at": (T0 - timedelta(days=rng.randint(1, 700))).isoformat(),
                "expires_at": (T0 + timedelta(days=rng.randint(-60, 700))).isoformat(),
            },
            "organisation": organisation,
        }
    )
    return principal, RequestContext(location_country=country)


def customer_csv(rows: int, seed: int = 5) -> Iterator[bytes]:
    rng = random.Random(seed)
    yield (",".join(COLUMNS) + "\n").encode()
    for index in range(rows):
        yield csv_line(*customer_row(rng, index)).encode()
