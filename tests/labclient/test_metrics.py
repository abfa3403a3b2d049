"""The enforcer's metrics: what it answered, what it applied, on its own registry."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from contracts.policy import Action
from services.labclient.enforcer import Enforcer
from tests.access.support import LAB, MODEL, T0, order, person, published, ties

CN = person(citizenships=ties("CN"))
FR = person()
DECISIONS = "frontier_review_enforcer_decisions_total"


def enforcer() -> Enforcer:
    return Enforcer(lab_id=LAB, clock=lambda: T0)


def decisions(e: Enforcer, outcome: str, basis: str) -> float | None:
    return e.metrics.registry.get_sample_value(DECISIONS, {"outcome": outcome, "basis": basis})


def test_every_decision_is_counted_by_outcome_and_by_what_it_rests_on() -> None:
    e = enforcer()
    e.apply(published(order(nationalities=["CN"])))
    e.check(CN, MODEL)  # before catching up
    e.mark_caught_up()
    e.check(CN, MODEL)
    e.check(FR, MODEL)
    e.check_batch([(FR, MODEL, Action.INVOKE, None), (FR, MODEL, Action.INVOKE, None)])
    e.check(CN, f"{LAB}/never-restricted@1")
    assert decisions(e, "deny", "not_ready") == 1
    assert decisions(e, "deny", "policy") == 1
    assert decisions(e, "allow", "policy") == 3  # one check and two batch items
    assert decisions(e, "allow", "unrestricted") == 1
    assert decisions(e, "deny", "unusable_policy") == 0  # there from the start, at 0


def test_the_applied_version_of_each_model_and_whether_it_is_usable_are_shown() -> None:
    e = enforcer()
    e.apply(published(order(nationalities=["CN"]), version=1))
    e.apply(published(order(nationalities=["CN"]), version=2))
    e.unreadable(f"{LAB}/broken@1", "a tombstone")
    registry = e.metrics.registry
    version = "frontier_review_enforcer_policy_version"
    assert registry.get_sample_value(version, {"model": MODEL}) == 2
    usable = "frontier_review_enforcer_policy_usable"
    assert registry.get_sample_value(usable, {"model": MODEL}) == 1
    assert registry.get_sample_value(usable, {"model": f"{LAB}/broken@1"}) == 0
    assert registry.get_sample_value("frontier_review_enforcer_ready") == 0
    e.mark_caught_up()
    assert registry.get_sample_value("frontier_review_enforcer_ready") == 1


def test_two_enforcers_keep_their_numbers_apart_and_expose_the_text_format() -> None:
    first, second = enforcer(), enforcer()
    first.mark_caught_up()
    first.check(FR, MODEL)
    body, content_type = first.metrics.exposition()
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "frontier_review_enforcer_decisions" in names
    assert decisions(first, "allow", "unrestricted") == 1
    assert decisions(second, "allow", "unrestricted") == 0
