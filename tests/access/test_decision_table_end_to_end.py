"""The decision table end to end: every case's orders are published on risk.events, the
running service compiles and publishes them, a running enforcer that follows the policy
feed decides (real Kafka + PostgreSQL). The service's clock stands at the table's T0."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from contracts.events.risk import RestrictionLiftOrdered, RestrictionOrdered
from contracts.policy import Action, DecisionBasis
from services.labclient.enforcer import Enforcer
from services.runtime import RuntimeSettings
from tests.access.decision_cases import CASES, Case
from tests.access.rig import applied, running_rig
from tests.access.support import LAB, T0, order
from tests.kit import MovableClock


@dataclass
class Table:
    enforcer: Enforcer
    models: dict[str, str]  # case name -> model id
    orders: dict[str, dict[uuid.UUID, uuid.UUID]]  # case name -> table id -> published id


def _published_orders(case: Case, model: str) -> tuple[list[RestrictionOrdered], dict]:  # type: ignore[type-arg]
    """The case's orders for its own model, each with a fresh id (ids are global)."""
    ids: dict[uuid.UUID, uuid.UUID] = {}
    built = []
    for spec in case.orders:
        fresh = uuid.uuid4()
        if "order_id" in spec:
            ids[spec["order_id"]] = fresh
        built.append(order(**{**spec, "model_id": model, "order_id": fresh}))
    return built, ids


def lift(ordered: RestrictionOrdered) -> RestrictionLiftOrdered:
    """The reviewers' lift of ``ordered``, as risk publishes it."""
    return RestrictionLiftOrdered(
        order_id=ordered.order_id,
        submission_id=ordered.submission_id,
        model_id=ordered.model_id,
        escalation_id=ordered.escalation_id,
        reviewer_ids=["reviewer-ann", "reviewer-bob"],
        reason="mitigation verified",
        lifted_at=T0,
    )


@pytest.fixture(scope="module")
async def table(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Table]:
    clock = MovableClock()
    clock.offset = T0 - datetime.now(UTC)  # the service lives at the table's time
    async with running_rig(settings, clock=clock) as rig, rig.enforcer(LAB) as enforcer:
        models: dict[str, str] = {}
        orders: dict[str, dict[uuid.UUID, uuid.UUID]] = {}
        for number, case in enumerate(CASES):
            model = f"{LAB}/case-{number}@1"
            built, ids = _published_orders(case, model)
            for each in built:
                await rig.send(each)
            for lifted in case.lifted:  # after its orders, on the same key: in order
                await rig.send(lift(next(o for o in built if o.order_id == ids[lifted])))
            models[case.name], orders[case.name] = model, ids
        for case in CASES:
            await applied(enforcer, models[case.name], case.versions, timeout=60)
        yield Table(enforcer, models, orders)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table_end_to_end(table: Table, case: Case) -> None:
    model = table.models[case.name]
    decision = table.enforcer.check(case.principal, model, Action.INVOKE, case.request, at=case.at)
    assert decision.basis is DecisionBasis.POLICY
    assert decision.allowed is case.allowed, [r.text for r in decision.reasons]
    assert decision.policy_version == case.versions  # one per order received and per lift
    if case.allowed:
        assert [r.policy_id for r in decision.reasons] == ["baseline"]
        return
    assert {r.criterion for r in decision.reasons} == case.criteria
    assert {a for r in decision.reasons for a in r.missing_attributes} == case.missing
    if case.denying_orders is not None:
        ids = table.orders[case.name]
        assert set(decision.order_ids) == {ids[o] for o in case.denying_orders}
