"""The decision table of services/access/README.md, case by case.

Each case compiles its orders exactly as the access service would, and decides
with ``LoadedPolicy`` (the code the labs' enforcers run).
"""

from __future__ import annotations

import pytest

from contracts.events.risk import RestrictionOrdered
from contracts.policy import Action, DecisionBasis
from services.access.model import OrderRecord
from services.access.policies import enforced_orders, lift_order
from services.trust.refusal import Refusal
from tests.access.decision_cases import AT, CASES, Case
from tests.access.support import MODEL, T0, at_location, loaded, order, person, ties


def _enforced(case: Case) -> list[RestrictionOrdered]:
    """The case's orders as the model's version enforces them: its lifted orders ended by
    ``lift_order``, the rest selected by ``enforced_orders``, as the service does."""
    records = []
    for spec in case.orders:
        record = OrderRecord(order(**spec))
        if record.order_id in case.lifted:
            ended = lift_order(record, reviewer_id="reviewer-ann", reason="mitigated", now=T0)
            assert not isinstance(ended, Refusal), ended
            record = ended
        records.append(record)
    return enforced_orders(MODEL, records)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table(case: Case) -> None:
    policy = loaded(*_enforced(case))
    decision = policy.decide(case.principal, Action.INVOKE, case.request, case.at)
    assert decision.basis is DecisionBasis.POLICY
    assert decision.allowed is case.allowed, [r.text for r in decision.reasons]
    assert decision.policy_version == 1
    assert decision.decided_at == case.at
    if case.allowed:
        assert [r.policy_id for r in decision.reasons] == ["baseline"]
        return
    assert {r.criterion for r in decision.reasons} == case.criteria
    missing = {a for r in decision.reasons for a in r.missing_attributes}
    assert missing == case.missing
    for reason in decision.reasons:
        assert reason.order_id is not None
        assert str(reason.order_id) in reason.text  # the reason names its order
        assert reason.policy_id.startswith(f"order:{reason.order_id}:")
    if case.denying_orders is not None:
        assert set(decision.order_ids) == case.denying_orders


def test_the_same_principal_is_denied_by_every_action_of_a_restricted_model() -> None:
    policy = loaded(order(nationalities=["CN"]))
    for action in Action:
        decision = policy.decide(person(citizenships=ties("CN")), action, at_location(), AT)
        assert not decision.allowed


def test_a_policy_without_orders_allows_everyone() -> None:
    policy = loaded()
    decision = policy.decide(
        person(citizenships=None, us_person=None), Action.INVOKE, at_location(None), AT
    )
    assert decision.allowed
