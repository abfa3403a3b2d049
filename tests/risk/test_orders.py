"""The canonical form of a restriction order: what two signatures are compared on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.events.risk import RestrictionOrderSpec
from services.risk.orders import canonical_order, order_sha256
from tests.risk.support import NOW, order

FULL_SCOPE: dict[str, Any] = {
    "nationalities": ["RU", "CN"],
    "nationality_rule": "any",
    "residence_countries": ["IR"],
    "country_tiers": ["tier3"],
    "country_groups": ["arms-embargoed"],
    "verification_statuses": ["unverified"],
    "organisations": ["org-1"],
    "exemptions": [{"kind": "principal", "id": "user-42", "reason": "licensed partner"}],
}


def spec(**changes: Any) -> RestrictionOrderSpec:
    document = order(**FULL_SCOPE)
    scope = document["scope"] | changes.pop("scope", {})
    return RestrictionOrderSpec.model_validate(document | {"scope": scope} | changes)


def test_set_valued_criteria_compare_as_sets() -> None:
    shuffled = spec(
        scope={
            "nationalities": ["CN", "RU", "RU"],
            "country_groups": ["arms-embargoed", "arms-embargoed"],
        }
    )
    assert order_sha256(shuffled) == order_sha256(spec())
    assert canonical_order(shuffled)["scope"]["nationalities"] == ["CN", "RU"]


def test_times_compare_in_utc() -> None:
    tokyo = spec(effective_at=(NOW + timedelta(hours=1)).astimezone(ZoneInfo("Asia/Tokyo")))
    assert order_sha256(tokyo) == order_sha256(spec())
    assert canonical_order(tokyo)["effective_at"] == "2026-01-15T13:00:00.000000Z"


@pytest.mark.parametrize(
    "change",
    [
        {"scope": {"nationalities": ["RU"]}},
        {"scope": {"nationality_rule": "most_recent"}},
        {"scope": {"residence_countries": []}},
        {"scope": {"country_tiers": ["tier2"]}},
        {"scope": {"country_groups": ["arms-embargoed", "embargoed"]}},
        {"scope": {"verification_statuses": ["pending"]}},
        {"scope": {"organisations": ["org-2"]}},
        {"scope": {"exemptions": []}},
        {"scope": {"exemptions": [{"kind": "principal", "id": "user-42", "reason": "other"}]}},
        {"effective_at": NOW + timedelta(hours=2)},
        {"expires_at": None},
        {"compliance_deadline": NOW + timedelta(days=2)},
    ],
    ids=lambda change: ",".join(f"{k}:{v}" for k, v in change.items())[:60],
)
def test_every_part_of_an_order_is_in_its_hash(change: dict[str, Any]) -> None:
    assert order_sha256(spec(**change)) != order_sha256(spec())


def test_a_scope_is_described_without_its_restricted_parts() -> None:
    text = spec().scope.describe()
    assert "CN, RU" in text and "group arms-embargoed" in text and "1 named organisation" in text
    assert "org-1" not in text and "user-42" not in text and "licensed partner" not in text
