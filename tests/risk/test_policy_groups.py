"""Risk's thresholds policies against access's country-group table (pure, both services).

Risk names country groups in the interim restriction it orders at once; access expands
them from its own table when it compiles the order. The services share no code, so only
a test can hold the two together. A name access does not know is compiled fail-closed
as "no foreign person can be ruled out": every foreign national is denied, the blanket
shutdown the system exists to prevent.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.events.risk import RestrictionOrdered
from contracts.policy import Action, IdentityVerification, LoadedPolicy, Principal
from services.access.compile import compile_policy
from services.access.country_groups import load_country_groups
from services.risk.policy import (
    POLICY_DIR,
    SHIPPED_VERSION,
    ThresholdsPolicy,
    available_policies,
    load_policy,
)
from services.trust.refusal import Refusal
from tests.access.support import T0, at_location, person, ties
from tests.risk.support import critical_cyber, shipped_policy

GROUPS = load_country_groups()

# Superseded versions that name groups access lacks. They stay in policies/ because
# assessments cite them (a version names one content for ever); none may be the default,
# and the list may only shrink: a new version naming an unknown group fails below.
SUPERSEDED_WITH_UNKNOWN_GROUPS = {"thresholds-2026.1": ["d5"]}


def named_groups(policy: ThresholdsPolicy) -> set[str]:
    """Every country group or tier the policy's interim restrictions name."""
    names: set[str] = set()
    for response in policy.levels.values():
        if response.interim_restriction is not None:
            scope = response.interim_restriction.scope
            names |= set(scope.country_groups) | {t.value for t in scope.country_tiers}
    return names


def interim_order() -> RestrictionOrdered:
    """The interim order the default policy has risk publish for a critical finding."""
    order = critical_cyber(shipped_policy()).interim
    assert order is not None, "the default policy orders an interim restriction at critical"
    return order


def test_every_country_group_the_default_policy_names_is_in_access_table() -> None:
    named = named_groups(shipped_policy())
    assert named, "the default interim restriction names at least one country group"
    assert named <= set(GROUPS.groups), f"unknown to access: {sorted(named - set(GROUPS.groups))}"


def test_only_the_listed_superseded_versions_name_groups_access_lacks() -> None:
    unknown = {
        f.version: sorted(named_groups(load_policy(f.path)) - set(GROUPS.groups))
        for f in available_policies(POLICY_DIR)
    }
    assert {v: g for v, g in unknown.items() if g} == SUPERSEDED_WITH_UNKNOWN_GROUPS
    assert SHIPPED_VERSION not in SUPERSEDED_WITH_UNKNOWN_GROUPS


def test_the_default_interim_order_compiles_in_access_without_a_refusal() -> None:
    strict = compile_policy(interim_order().model_id, [interim_order()], GROUPS)
    assert not isinstance(strict, Refusal), strict
    served = compile_policy(interim_order().model_id, [interim_order()], GROUPS, fail_closed=True)
    assert not isinstance(served, Refusal) and served.problems == ()


UNVERIFIED = IdentityVerification(status="unverified")

CASES = [
    pytest.param(person(), True, id="a verified French citizen is allowed"),
    pytest.param(
        person(citizenships=ties("GB"), residence_country="GB"), True, id="a British one too"
    ),
    pytest.param(
        person(citizenships=ties("US"), residence_country="US", us_person="citizen"),
        True,
        id="a US citizen is allowed",
    ),
    pytest.param(person(citizenships=ties("CN")), False, id="a Chinese national is denied"),
    pytest.param(person(citizenships=ties("RU")), False, id="a Russian national is denied"),
    pytest.param(person(residence_country="IR"), False, id="a French resident of Iran is denied"),
    pytest.param(person(verification=UNVERIFIED), False, id="an unverified principal is denied"),
]


@pytest.mark.parametrize(("principal", "allowed"), CASES)
def test_the_default_interim_order_denies_the_groups_nationals_and_no_one_else(
    principal: Principal, allowed: bool
) -> None:
    order = interim_order()
    compiled = compile_policy(order.model_id, [order], GROUPS, fail_closed=True)
    assert not isinstance(compiled, Refusal), compiled
    policy = LoadedPolicy.parse(order.model_id, 1, compiled.cedar_policies, compiled.content_hash)
    decision = policy.decide(principal, Action.INVOKE, at_location(), T0 + timedelta(hours=1))
    assert decision.allowed is allowed, decision.reasons


def test_the_kubernetes_deployment_runs_the_default_version() -> None:
    manifest = (Path(__file__).parents[2] / "deploy" / "k8s" / "services.yaml").read_text()
    named = re.findall(r"name: FR_RISK_POLICY_VERSION\s+value: (\S+)", manifest)
    assert named == [SHIPPED_VERSION], "a superseded version must not be deployed"


def test_docker_compose_runs_the_default_version() -> None:
    compose = (Path(__file__).parents[2] / "docker-compose.yml").read_text()
    named = re.findall(r"FR_RISK_POLICY_VERSION: (\S+)", compose)
    assert named == [SHIPPED_VERSION], "a superseded version must not be deployed"
