"""Compiling orders to Cedar: annotations, validation, combination, hostile strings."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events.access import policy_hash
from contracts.events.common import RejectionReason
from contracts.policy import Action, LoadedPolicy, UnusablePolicy, cedar
from services.access.compile import baseline, cedar_time, compile_policy
from services.trust.refusal import Refusal
from tests.access.support import GROUPS, MODEL, T0, at_location, order, person, ties


def _est(text: str) -> dict[str, Any]:
    policies: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    return policies


def test_every_policy_carries_an_id_a_kind_and_a_reason_naming_its_order() -> None:
    o = order(nationalities=["CN"], verification_statuses=["unverified"])
    compiled = compile_policy(MODEL, [o], GROUPS)
    assert not isinstance(compiled, Refusal)
    policies = _est(compiled.cedar_policies).values()
    assert len(policies) == 1 + 3 + 2  # baseline, nationality x3, verification x2
    for policy in policies:
        notes = policy["annotations"]
        assert notes["id"] and notes["kind"] and notes["reason"]
        if policy["effect"] == "forbid":
            assert notes["order_id"] == str(o.order_id)
            assert str(o.order_id) in notes["reason"]


def test_the_compiled_text_validates_against_the_shared_schema() -> None:
    o = order(
        nationalities=["CN"],
        residence_countries=["RU"],
        organisations=["org-x"],
        organisation_countries=["IR"],
        verification_statuses=["pending"],
        request_locations=["KP"],
        country_groups=["embargoed"],
        exemptions=[{"kind": "organisation", "id": "org-ok", "reason": "licensed"}],
    )
    compiled = compile_policy(MODEL, [o], GROUPS)
    assert not isinstance(compiled, Refusal)
    result = cedarpy.validate_policies(compiled.cedar_policies, cedar.schema())
    assert result.validation_passed, [str(e) for e in result.errors]


def test_an_order_naming_an_unknown_country_group_is_refused() -> None:
    compiled = compile_policy(MODEL, [order(country_groups=["atlantis"])], GROUPS)
    assert isinstance(compiled, Refusal)
    assert compiled.reason is RejectionReason.UNKNOWN_COUNTRY_GROUP
    assert "atlantis" in compiled.detail


def test_an_order_of_another_model_is_refused() -> None:
    other = order(model_id="example-lab/other@1", nationalities=["CN"])
    compiled = compile_policy(MODEL, [other], GROUPS)
    assert isinstance(compiled, Refusal)
    assert compiled.reason is RejectionReason.CONFLICT


def test_compiling_is_deterministic_whatever_the_order_of_the_orders() -> None:
    a, b = order(nationalities=["CN"]), order(residence_countries=["RU"])
    first = compile_policy(MODEL, [a, b], GROUPS)
    second = compile_policy(MODEL, [b, a], GROUPS)
    assert not isinstance(first, Refusal) and not isinstance(second, Refusal)
    assert first.content_hash == second.content_hash == policy_hash(first.cedar_policies)


def test_times_are_rounded_towards_the_stricter_side() -> None:
    at = T0 + timedelta(microseconds=1500)
    assert cedar_time(at) == "2026-03-01T12:00:00.001Z"
    assert cedar_time(at, round_up=True) == "2026-03-01T12:00:00.002Z"


def test_a_policy_about_another_resource_is_unusable() -> None:
    text = (
        '@id("baseline") @kind("baseline") @reason("x")\n'
        'permit (principal, action, resource == Model::"example-lab/other@1");\n'
    )
    with pytest.raises(UnusablePolicy, match="not about resource"):
        LoadedPolicy.parse(MODEL, 1, text, policy_hash(text))


def test_a_forbid_without_its_order_is_unusable() -> None:
    text = (
        f'@id("baseline") @kind("baseline") @reason("x")\npermit (principal, action, '
        f'resource == Model::"{MODEL}");\n@id("f") @kind("match") @reason("y")\n'
        f'forbid (principal, action, resource == Model::"{MODEL}");\n'
    )
    with pytest.raises(UnusablePolicy, match="names no order"):
        LoadedPolicy.parse(MODEL, 1, text, policy_hash(text))


def test_a_policy_that_does_not_validate_is_unusable_and_the_reason_names_it() -> None:
    text = (
        f'@id("baseline") @kind("baseline") @reason("x")\npermit (principal, action, '
        f'resource == Model::"{MODEL}") when {{ principal.shoe_size > 3 }};\n'
    )
    with pytest.raises(UnusablePolicy, match=r"baseline.*shoe_size"):
        LoadedPolicy.parse(MODEL, 1, text, policy_hash(text))


hostile = st.text(min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(principal_id=hostile, organisation_id=hostile)
def test_hostile_ids_in_exemptions_stay_literal_strings(
    principal_id: str, organisation_id: str
) -> None:
    o = order(
        nationalities=["CN"],
        organisations=[organisation_id],
        exemptions=[{"kind": "principal", "id": principal_id, "reason": 'a "quoted" reason'}],
    )
    compiled = compile_policy(MODEL, [o], GROUPS)
    assert not isinstance(compiled, Refusal), compiled
    policy = LoadedPolicy.parse(MODEL, 1, compiled.cedar_policies, compiled.content_hash)
    assert len(policy.infos) == 1 + 3 + 2  # nothing injected, nothing lost
    exempt = person(principal_id, citizenships=ties("CN"))
    assert policy.decide(exempt, Action.INVOKE, at_location(), T0).allowed
    member = person("someone-else\x00", organisation={"id": organisation_id})
    decision = policy.decide(member, Action.INVOKE, at_location(), T0)
    assert not decision.allowed or principal_id == "someone-else\x00"


def test_compiled_policies_allow_projected_cache_keys() -> None:
    policy = _loaded_all()
    assert policy.projectable


def test_a_text_using_other_operations_keeps_full_cache_keys() -> None:
    text = (
        f'@id("baseline") @kind("baseline") @reason("x")\npermit (principal, action, '
        f'resource == Model::"{MODEL}");\n'
        f'@id("f") @kind("match") @reason("y") @order_id("{uuid.uuid4()}")\n'
        f'forbid (principal, action, resource == Model::"{MODEL}") '
        f"when {{ principal.residences.isEmpty() }};\n"
    )
    policy = LoadedPolicy.parse(MODEL, 1, text, policy_hash(text))
    assert not policy.projectable
    stateless = person(citizenships=[], residence_country=None)
    assert not policy.decide(stateless, Action.INVOKE, at_location(), T0).allowed
    assert policy.decide(person(), Action.INVOKE, at_location(), T0).allowed


def _loaded_all() -> LoadedPolicy:
    o = order(
        nationalities=["CN"],
        residence_countries=["RU"],
        organisations=["org-x"],
        organisation_countries=["IR"],
        verification_statuses=["pending"],
        request_locations=["KP"],
        expires_at=T0 + timedelta(days=1),
        exemptions=[{"kind": "principal", "id": "p-9", "reason": "licensed"}],
    )
    compiled = compile_policy(MODEL, [o], GROUPS)
    assert not isinstance(compiled, Refusal)
    return LoadedPolicy.parse(MODEL, 1, compiled.cedar_policies, compiled.content_hash)


def test_an_order_that_cannot_be_compiled_locks_the_model_down_in_its_window() -> None:
    from services.access.compile import lockdown_order

    o = order(nationalities=["CN"])
    refusal = Refusal(RejectionReason.INVALID_POLICY, "a compiler defect")
    text = "\n".join([baseline(MODEL), *lockdown_order(o, refusal)])
    policy = LoadedPolicy.parse(MODEL, 1, text, policy_hash(text))
    american = person(citizenships=ties("US"), us_person="citizen")
    decision = policy.decide(american, Action.INVOKE, at_location(), T0 + timedelta(hours=1))
    assert not decision.allowed and decision.reasons[0].criterion == "lockdown"
    assert "a compiler defect" in decision.reasons[0].text
    assert policy.decide(american, Action.INVOKE, at_location(), T0 - timedelta(hours=1)).allowed
