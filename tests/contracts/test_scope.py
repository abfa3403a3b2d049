"""How a restriction scope is put in words: the one description the lab (ReviewConcluded),
the console and the audit read, so no criterion may be left out of it and no restricted
id may be in it."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.events.risk import NationalityRule, RestrictionScope

# One value per criterion, and what the description must say of it.
CRITERIA: dict[str, tuple[list[Any], str]] = {
    "nationalities": (["KP", "IR"], "nationals (any citizenship) of IR, KP"),
    "residence_countries": (["SY"], "permanent residents of SY"),
    "country_tiers": (["tier3"], "or residence is in group tier3"),
    "country_groups": (["arms-embargoed"], "or residence is in group arms-embargoed"),
    "verification_statuses": (["unverified"], "identity verification is unverified"),
    "organisations": (["org-secret-1", "org-secret-2"], "members of 2 named organisation(s)"),
    "organisation_countries": (["CN"], "organisations headquartered or owned in CN"),
    "request_locations": (["RU"], "requests made from RU"),
}


def test_every_criterion_of_a_scope_has_its_words() -> None:
    criteria = set(RestrictionScope.model_fields) - {"nationality_rule", "exemptions"}
    assert criteria == set(CRITERIA), "a new criterion needs its words in RestrictionScope.describe"


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_a_scope_of_one_criterion_says_whom_it_denies(criterion: str) -> None:
    values, words = CRITERIA[criterion]
    assert words in RestrictionScope.model_validate({criterion: values}).describe()


def test_restricted_ids_are_only_counted_and_the_rule_is_named() -> None:
    scope = RestrictionScope(
        nationality_rule=NationalityRule.MOST_RECENT,
        nationalities=["CN"],
        organisations=["org-secret-1"],
        exemptions=[{"kind": "principal", "id": "user-secret-42", "reason": "licensed partner"}],
    )
    text = scope.describe()
    assert "nationals (most recent citizenship) of CN" in text
    assert text.endswith("(with 1 exemption(s))")
    assert "secret" not in text and "licensed partner" not in text
